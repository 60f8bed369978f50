// The bm25 postings beside an index.sqlite file (nodes/index_sqlite_bm25.hpp).
//
// File (little-endian): a 96-byte header ("SLBM25v1", the content generation it was written
// from, chunks, terms, average length, then each section's offset and size); each chunk's rowid
// (i64) and length in tokens (u32); the dictionary, terms in byte order, each as u16 length,
// bytes, u32 document frequency, u64 offset of its postings; the postings, per term (u32 chunk,
// u16 term frequency) in chunk order.
#include "nodes/index_sqlite_bm25.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <unordered_map>

#include "nodes/index_sqlite_db.hpp"

namespace sluice::sqlite_index {

namespace {

constexpr char kMagic[8] = {'S', 'L', 'B', 'M', '2', '5', 'v', '1'};
constexpr size_t kHeaderBytes = 96;
constexpr size_t kPostingBytes = 6;
constexpr size_t kMaxTermBytes = 4096;
// FTS5's bm25() constants.
constexpr double kK1 = 1.2, kB = 0.75;

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// FTS5's idf: never below a millionth, so a term in over half the rows still counts a little.
double idf(uint64_t rows, uint64_t hits) {
  const double v = std::log((static_cast<double>(rows) - static_cast<double>(hits) + 0.5) /
                            (static_cast<double>(hits) + 0.5));
  return v <= 0 ? 1e-6 : v;
}

uint64_t content_gen(Db& db) {
  const std::string v = meta(db, "content_gen");
  return v.empty() ? 0 : std::strtoull(v.c_str(), nullptr, 10);
}

}  // namespace

struct Fts5Tokens::Impl {
  fts5_tokenizer api{};
  Fts5Tokenizer* tok = nullptr;
};

Fts5Tokens::Fts5Tokens(sqlite3* db) : _impl(std::make_unique<Impl>()) {
  fts5_api* fts = nullptr;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &s, nullptr) == SQLITE_OK) {
    sqlite3_bind_pointer(s, 1, static_cast<void*>(&fts), "fts5_api_ptr", nullptr);
    sqlite3_step(s);
  }
  sqlite3_finalize(s);
  void* user = nullptr;
  if (!fts || fts->xFindTokenizer(fts, "unicode61", &user, &_impl->api) != SQLITE_OK ||
      _impl->api.xCreate(user, nullptr, 0, &_impl->tok) != SQLITE_OK)
    throw std::runtime_error("SQLite's FTS5 tokenizer unicode61 is not available");
}

Fts5Tokens::~Fts5Tokens() {
  if (_impl->tok) _impl->api.xDelete(_impl->tok);
}

void Fts5Tokens::each(std::string_view text, bool query,
                      const std::function<void(std::string_view)>& fn) {
  // An exception must not unwind through SQLite's C frames: the callback keeps it for after.
  struct Ctx {
    const std::function<void(std::string_view)>* fn;
    std::exception_ptr error;
  } ctx{&fn, nullptr};
  auto cb = [](void* p, int, const char* token, int n, int, int) {
    auto* c = static_cast<Ctx*>(p);
    try {
      (*c->fn)(std::string_view(token, static_cast<size_t>(n)));
      return SQLITE_OK;
    } catch (...) {
      c->error = std::current_exception();
      return SQLITE_ABORT;
    }
  };
  const int rc = _impl->api.xTokenize(
      _impl->tok, &ctx, query ? FTS5_TOKENIZE_QUERY : FTS5_TOKENIZE_DOCUMENT, text.data(),
      static_cast<int>(std::min<size_t>(text.size(), INT32_MAX)), cb);
  if (ctx.error) std::rethrow_exception(ctx.error);
  if (rc != SQLITE_OK) throw std::runtime_error("FTS5's tokenizer failed");
}

Bm25Postings::Bm25Postings(const std::string& path)
    : _file(path, "bm25 postings"), _bytes(_file.size()) {
  auto damaged = [&](const std::string& why) {
    return std::runtime_error("the bm25 postings \"" + path + "\" are damaged (" + why +
                              "): delete the file, then `sluice build-search` writes it again");
  };
  try {
    if (_bytes < kHeaderBytes) throw damaged("shorter than its header");
    unsigned char h[kHeaderBytes];
    read(h, sizeof h, 0);
    if (std::memcmp(h, kMagic, sizeof kMagic) != 0) throw damaged("not a sluice postings file");
    _gen = read_at<uint64_t>(h + 8);
    _docs = read_at<uint64_t>(h + 16);
    _terms = read_at<uint64_t>(h + 24);
    _avgdl = read_at<double>(h + 32);
    _rowids_at = read_at<uint64_t>(h + 40);
    const uint64_t lens_at = read_at<uint64_t>(h + 48);
    _dict_at = read_at<uint64_t>(h + 56);
    _dict_bytes = read_at<uint64_t>(h + 64);
    _post_at = read_at<uint64_t>(h + 72);
    _post_bytes = read_at<uint64_t>(h + 80);
    if (_docs >= (1ull << 32) || _rowids_at != kHeaderBytes || lens_at != _rowids_at + 8 * _docs ||
        _dict_at != lens_at + 4 * _docs || _post_at < _dict_at ||
        _post_at - _dict_at != _dict_bytes || _post_at > _bytes ||
        _bytes - _post_at != _post_bytes || _terms > _dict_bytes / 7)
      throw damaged("its sections do not add up to its size");
    if (_docs > 0 && !(std::isfinite(_avgdl) && _avgdl > 0)) throw damaged("bad average length");
    std::vector<uint32_t> lens(static_cast<size_t>(_docs));
    read(lens.data(), lens.size() * 4, lens_at);
    _norm.resize(lens.size());
    for (size_t i = 0; i < lens.size(); ++i)
      _norm[i] = static_cast<float>(kK1 * (1 - kB + kB * lens[i] / _avgdl));
    // The dictionary: each entry checked to lie in it and point into the postings.
    std::vector<unsigned char> dict(static_cast<size_t>(_dict_bytes));
    read(dict.data(), dict.size(), _dict_at);
    _entry.reserve(static_cast<size_t>(_terms));
    uint64_t pos = 0;
    std::string_view prev;
    for (uint64_t t = 0; t < _terms; ++t) {
      if (_dict_bytes - pos < 2) throw damaged("truncated dictionary");
      const uint16_t len = read_at<uint16_t>(dict.data() + pos);
      if (_dict_bytes - pos - 2 < len + 12u) throw damaged("truncated dictionary");
      std::string_view term(reinterpret_cast<const char*>(dict.data() + pos + 2), len);
      const uint32_t df = read_at<uint32_t>(dict.data() + pos + 2 + len);
      const uint64_t off = read_at<uint64_t>(dict.data() + pos + 6 + len);
      if (df == 0 || df > _docs || off > _post_bytes || (_post_bytes - off) / kPostingBytes < df)
        throw damaged("a term's postings lie outside the file");
      if (t > 0 && !(prev < term)) throw damaged("terms out of order");
      prev = term;
      _entry.push_back(pos);
      pos += 14u + len;
    }
    if (pos != _dict_bytes) throw damaged("trailing bytes in the dictionary");
    _dict = std::move(dict);
    _fingerprint = _file.fingerprint();
  } catch (const std::bad_alloc&) {
    throw damaged("its sizes ask for more memory than there is");
  }
}

Bm25Postings::~Bm25Postings() = default;

std::pair<uint64_t, uint32_t> Bm25Postings::find(std::string_view term) const {
  auto term_at = [&](uint64_t e) {
    return std::string_view(reinterpret_cast<const char*>(_dict.data() + e + 2),
                            read_at<uint16_t>(_dict.data() + e));
  };
  auto it = std::lower_bound(_entry.begin(), _entry.end(), term,
                             [&](uint64_t e, std::string_view t) { return term_at(e) < t; });
  if (it == _entry.end() || term_at(*it) != term) return {0, 0};
  const uint64_t e = *it;
  const uint16_t len = read_at<uint16_t>(_dict.data() + e);
  return {read_at<uint64_t>(_dict.data() + e + 6 + len),
          read_at<uint32_t>(_dict.data() + e + 2 + len)};
}

std::vector<std::pair<double, int64_t>> Bm25Postings::search(const std::vector<std::string>& terms,
                                                             size_t k) const {
  // Scores of the chunks the terms touch; kept by the thread for its next query (zeroed where
  // touched), so a query costs its postings, not the index's size.
  thread_local std::vector<double> score;
  thread_local std::vector<uint32_t> touched;
  if (score.size() < _docs) score.assign(static_cast<size_t>(_docs), 0.0);
  touched.clear();
  std::vector<unsigned char> buf;
  struct Clear {  // a failed read leaves no score behind for the thread's next query
    ~Clear() {
      for (uint32_t doc : touched) score[doc] = 0;
    }
  } clear_on_exit;
  for (const auto& t : terms) {
    auto [off, df] = find(t);
    if (df == 0) continue;
    buf.resize(size_t{df} * kPostingBytes);
    read(buf.data(), buf.size(), _post_at + off);
    const double w = idf(_docs, df) * (kK1 + 1);
    for (uint32_t i = 0; i < df; ++i) {
      const uint32_t doc = read_at<uint32_t>(buf.data() + i * kPostingBytes);
      const uint16_t tf = read_at<uint16_t>(buf.data() + i * kPostingBytes + 4);
      if (doc >= _docs || tf == 0) continue;  // a damaged posting adds nothing
      const double add = w * tf / (tf + _norm[doc]);
      if (!(add > 0) || !std::isfinite(add)) continue;  // nor does one a crafted length zeroes
      double& s = score[doc];
      if (s == 0) touched.push_back(doc);
      s += add;
    }
  }
  using Item = std::pair<double, uint32_t>;
  auto worse = [](const Item& a, const Item& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  std::vector<Item> top;  // a heap whose front is the worst kept
  for (uint32_t doc : touched) {
    const Item it{score[doc], doc};
    if (top.size() < k) {
      top.push_back(it);
      std::push_heap(top.begin(), top.end(), worse);
    } else if (worse(it, top.front())) {
      std::pop_heap(top.begin(), top.end(), worse);
      top.back() = it;
      std::push_heap(top.begin(), top.end(), worse);
    }
  }
  std::sort(top.begin(), top.end(), worse);
  std::vector<std::pair<double, int64_t>> out;
  for (const auto& [s, doc] : top) {
    int64_t rowid = 0;
    read(&rowid, sizeof rowid, _rowids_at + uint64_t{doc} * 8);
    out.emplace_back(s, rowid);
  }
  return out;
}

std::shared_ptr<const Bm25Postings> open_bm25(Db& db, const std::string& db_path,
                                              std::string* why) {
  const std::string want = meta(db, "bm25_fingerprint");
  if (want.empty()) return nullptr;
  const std::string path = bm25_path(db_path);
  try {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      if (why) *why = "the bm25 postings \"" + path + "\" are missing";
      return nullptr;
    }
    auto p = open_cached<Bm25Postings>(path, "",
                                       [&] { return std::make_shared<const Bm25Postings>(path); });
    if (fingerprint_hex(p->fingerprint()) != want) {
      if (why) *why = "the bm25 postings \"" + path + "\" are not the ones the index records";
      return nullptr;
    }
    // Written from an older state of the index (a run is changing it, or one stopped before its
    // end): FTS5 answers until the next upkeep.
    if (p->generation() != content_gen(db)) {
      if (why)
        *why = "the bm25 postings \"" + path +
               "\" were written before the index's last change (a run is writing it, or one "
               "stopped before its end)";
      return nullptr;
    }
    return p;
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return nullptr;
  }
}

Bm25Upkeep keep_bm25(Db& db, const std::string& db_path, AnnPolicy policy, bool rebuild,
                     const std::function<void(const std::string&)>& progress) {
  Bm25Upkeep result;
  if (policy == AnnPolicy::never) return result;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string path = bm25_path(db_path);
  UpkeepLock lock(ann_path(db_path) + ".lock");
  const std::string want = meta(db, "bm25_fingerprint");
  bool current = false;
  if (!want.empty() && !rebuild) {
    try {
      Bm25Postings p(path);
      current = fingerprint_hex(p.fingerprint()) == want && p.generation() == content_gen(db);
    } catch (const std::exception&) {
    }
  }
  if (current) return result;
  auto count = [&](const char* sql) {
    sqlite3_stmt* s = db.prepare(sql);
    db.step(s);
    const int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return v;
  };
  if (policy == AnnPolicy::automatic && want.empty() && !rebuild &&
      count("SELECT coalesce(max(rowid), 0) FROM chunks") < kBm25MinChunks)
    return result;
  Fts5Tokens tokens(db.get());
  std::unordered_map<std::string, std::vector<uint64_t>> postings;  // term: chunk << 16 | tf
  std::vector<int64_t> rowids;
  std::vector<uint32_t> lens;
  uint64_t gen = 0, total = 0;
  db.exec("BEGIN");  // one snapshot: the generation and the rows it stands for
  try {
    gen = content_gen(db);
    sqlite3_stmt* s = db.prepare("SELECT rowid, text FROM chunks ORDER BY rowid");
    std::unordered_map<std::string, uint32_t> tf;
    std::string key;
    while (db.step(s) == SQLITE_ROW) {
      const auto* text = static_cast<const char*>(sqlite3_column_blob(s, 1));
      const size_t n = static_cast<size_t>(sqlite3_column_bytes(s, 1));
      tf.clear();
      uint32_t len = 0;
      tokens.each(std::string_view(text ? text : "", n), false, [&](std::string_view t) {
        ++len;
        if (t.size() > kMaxTermBytes) return;
        key.assign(t);
        ++tf[key];
      });
      const auto doc = static_cast<uint64_t>(rowids.size());
      rowids.push_back(sqlite3_column_int64(s, 0));
      lens.push_back(len);
      total += len;
      for (const auto& [term, f] : tf)
        postings[term].push_back(doc << 16 | std::min<uint32_t>(f, 0xffff));
    }
    sqlite3_reset(s);
    db.exec("COMMIT");
  } catch (...) {
    db.rollback();
    throw;
  }
  if (rowids.size() >= (1ull << 32)) throw std::runtime_error("too many chunks for bm25 postings");
  std::vector<const std::string*> terms;
  terms.reserve(postings.size());
  for (const auto& [t, p] : postings) terms.push_back(&t);
  std::sort(terms.begin(), terms.end(),
            [](const std::string* a, const std::string* b) { return *a < *b; });
  // Sections, then the file: written to PATH.tmp, renamed once the index records it.
  std::string dict;
  uint64_t post_bytes = 0;
  for (const std::string* t : terms) {
    put<uint16_t>(dict, static_cast<uint16_t>(t->size()));
    dict += *t;
    const auto& p = postings.at(*t);
    put<uint32_t>(dict, static_cast<uint32_t>(p.size()));
    put<uint64_t>(dict, post_bytes);
    post_bytes += p.size() * kPostingBytes;
  }
  const uint64_t docs = rowids.size();
  std::string head;
  head.append(kMagic, sizeof kMagic);
  put<uint64_t>(head, gen);
  put<uint64_t>(head, docs);
  put<uint64_t>(head, terms.size());
  put<double>(head, docs ? static_cast<double>(total) / static_cast<double>(docs) : 0.0);
  put<uint64_t>(head, kHeaderBytes);
  put<uint64_t>(head, kHeaderBytes + 8 * docs);
  const uint64_t dict_at = kHeaderBytes + 12 * docs;
  put<uint64_t>(head, dict_at);
  put<uint64_t>(head, dict.size());
  put<uint64_t>(head, dict_at + dict.size());
  put<uint64_t>(head, post_bytes);
  head.resize(kHeaderBytes, '\0');
  const std::string tmp = path + ".tmp";
  {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write \"" + tmp + "\": " + std::strerror(errno));
    bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size() &&
              std::fwrite(rowids.data(), 8, rowids.size(), f) == rowids.size() &&
              std::fwrite(lens.data(), 4, lens.size(), f) == lens.size() &&
              std::fwrite(dict.data(), 1, dict.size(), f) == dict.size();
    std::string block;
    for (const std::string* t : terms) {
      block.clear();
      for (uint64_t v : postings.at(*t)) {
        put<uint32_t>(block, static_cast<uint32_t>(v >> 16));
        put<uint16_t>(block, static_cast<uint16_t>(v & 0xffff));
      }
      ok = ok && std::fwrite(block.data(), 1, block.size(), f) == block.size();
    }
    ok = std::fclose(f) == 0 && ok;
    if (!ok) {
      std::filesystem::remove(tmp);
      throw std::runtime_error("writing \"" + tmp + "\" failed (disk full?)");
    }
  }
  uint64_t fp = 0;
  try {
    fp = Bm25Postings(tmp).fingerprint();
  } catch (...) {
    std::filesystem::remove(tmp);
    throw;
  }
  db.exec("BEGIN IMMEDIATE");
  try {
    set_meta(db, "bm25_fingerprint", fingerprint_hex(fp));
    db.exec("COMMIT");
  } catch (...) {
    db.rollback();
    throw;
  }
  std::filesystem::rename(tmp, path);
  result.built = true;
  result.docs = static_cast<size_t>(docs);
  result.terms = terms.size();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (progress)
    progress("bm25 postings of " + std::to_string(docs) + " chunks (" +
             std::to_string(terms.size()) + " terms) written in " +
             std::to_string(static_cast<int>(result.seconds)) + " s");
  return result;
}

}  // namespace sluice::sqlite_index
