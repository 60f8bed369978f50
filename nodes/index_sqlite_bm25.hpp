// index.sqlite's bm25 postings: for an index past ~100k chunks, a file beside it (`<db>.bm25`)
// holding each term's postings (chunk, term frequency) and each chunk's length, written from the
// chunks' text with FTS5's own tokenizer. A query then adds up its terms' postings in an array of
// scores (term at a time) instead of FTS5 ranking every matching row through SQL: the same BM25
// (k1 1.2, b 0.75, FTS5's idf), the same order. Not a public interface: the sink
// (index_sqlite.cpp), `sluice build-search` and `sluice search` use it.
//
// Kept exact: the sink bumps `content_gen` in sluice_meta in every transaction that changes a
// chunk; a postings file records the generation it was written from, and search uses it only
// while they are equal (else FTS5). A settled run's end rewrites it.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/state/sqlite_db.hpp"
#include "nodes/index_sqlite_ann.hpp"

namespace sluice::sqlite_index {

inline std::string bm25_path(const std::string& db_path) { return db_path + ".bm25"; }

// Below this many chunks (bm25_index: "auto") FTS5 ranks every match in well under 100 ms.
constexpr int64_t kBm25MinChunks = 100000;

// FTS5's unicode61 tokenizer (chunks_fts's), through the fts5_api of connection `db`.
class Fts5Tokens {
 public:
  explicit Fts5Tokens(sqlite3* db);
  ~Fts5Tokens();
  Fts5Tokens(const Fts5Tokens&) = delete;
  Fts5Tokens& operator=(const Fts5Tokens&) = delete;
  // Calls `fn` with each token of `text` (as a document, or as a query's word).
  void each(std::string_view text, bool query, const std::function<void(std::string_view)>& fn);

 private:
  struct Impl;
  std::unique_ptr<Impl> _impl;
};

// A postings file, read in place (pread); its chunks' lengths are read once.
class Bm25Postings {
 public:
  // Throws std::runtime_error naming the file when it cannot be read or is damaged.
  explicit Bm25Postings(const std::string& path);
  ~Bm25Postings();
  Bm25Postings(const Bm25Postings&) = delete;
  Bm25Postings& operator=(const Bm25Postings&) = delete;

  uint64_t generation() const { return _gen; }
  uint64_t fingerprint() const { return _fingerprint; }
  // Top `k` (score, rowid), best first, for rows holding any of `terms` (distinct, tokenized).
  std::vector<std::pair<double, int64_t>> search(const std::vector<std::string>& terms,
                                                 size_t k) const;

 private:
  void read(void* to, size_t bytes, uint64_t at) const { _file.read(to, bytes, at); }
  // The postings of `term`: their offset and count; count 0 when the file has no such term.
  std::pair<uint64_t, uint32_t> find(std::string_view term) const;

  SideFile _file;
  uint64_t _bytes = 0, _gen = 0, _docs = 0, _terms = 0;
  uint64_t _rowids_at = 0, _dict_at = 0, _dict_bytes = 0, _post_at = 0, _post_bytes = 0;
  double _avgdl = 0;
  std::vector<float> _norm;          // per chunk: k1 * (1 - b + b * length / avgdl)
  std::vector<unsigned char> _dict;  // the dictionary section
  std::vector<uint64_t> _entry;      // per term: its entry's offset in _dict
  uint64_t _fingerprint = 0;
};

// The index's postings when they are current (written from the index as it is now), else
// nullptr: `why`, when given, says why existing postings are not used.
std::shared_ptr<const Bm25Postings> open_bm25(sqlite::Db& db, const std::string& db_path,
                                              std::string* why);

struct Bm25Upkeep {
  bool built = false;
  size_t docs = 0, terms = 0;
  double seconds = 0;
};

// Writes the postings when the index has changed since they were written (or has none, past
// kBm25MinChunks for `automatic`, whatever its size for `always`); `rebuild` writes them anyway.
// One process at a time (the graph's lock file).
Bm25Upkeep keep_bm25(sqlite::Db& db, const std::string& db_path, AnnPolicy policy, bool rebuild,
                     const std::function<void(const std::string&)>& progress = {});

}  // namespace sluice::sqlite_index
