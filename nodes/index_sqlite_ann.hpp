// index.sqlite's approximate nearest-neighbour graph: an HNSW graph (hnswlib) over the chunks'
// vectors, kept in a file beside the database (`<db>.hnsw`), that `sluice search` uses in place
// of a scan of every vector. Not a public interface: the sink (index_sqlite.cpp), `sluice
// build-search` and `sluice search` (index_sqlite_search.cpp) use it.
//
// The file is hnswlib's own format, written by hnswlib; search maps it and walks it itself, so a
// query reads only the nodes it visits instead of loading the whole graph. Every read of the file
// is bounds-checked: a damaged or crafted file is a clear error, never a crash.
//
// Keeping it in step: once a graph exists, the sink logs the rowid of every chunk it inserts,
// changes the vector of, or deletes (table `ann_log`). At the end of a run the graph takes in the
// logged rows and the log is cut at `ann_seq`; a search meanwhile skips the logged rows in the
// graph and scores their current vectors exactly, so its answer never lags the database.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/state/sqlite_db.hpp"

namespace sluice::sqlite_index {

// The graph's file for an index at `db_path`.
inline std::string ann_path(const std::string& db_path) { return db_path + ".hnsw"; }

// Below this many vectors the sink keeps no graph (ann: "auto"): a scan of every vector answers
// in a few milliseconds up to here.
constexpr int64_t kAnnMinChunks = 100000;
// Graph shape: links per node (twice that on the bottom layer) and the candidate list while
// building. Measured at 1M chunks (docs/benchmarks.md, "Vector search at scale").
constexpr size_t kAnnM = 32;
constexpr size_t kAnnEfConstruction = 300;
// Candidates a query keeps (at least k) unless it asks for another number: recall against speed.
// Read node by node each candidate costs a read, held in memory (AnnGraph::resident) far less, so
// a held graph keeps more: at 1M chunks 96% of the exact top 10 of short word queries in 11 ms at
// p95 (docs/benchmarks.md).
constexpr size_t kAnnEfSearch = 512;
constexpr size_t kAnnEfSearchHeld = 2048;
// Rows waiting in the log past which a search scans every vector instead.
constexpr int64_t kAnnMaxPending = 10000;

// A little-endian value at `p` (any alignment): how the graph's and the postings' bytes are read.
template <class T>
T read_at(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// A file beside the index (the graph, the postings), read in place with pread. Refuses what is
// not a regular file; a failed or short read is an error naming `what` and the file.
class SideFile {
 public:
  SideFile(const std::string& path, std::string what);
  ~SideFile();
  SideFile(const SideFile&) = delete;
  SideFile& operator=(const SideFile&) = delete;
  const std::string& path() const { return _path; }
  uint64_t size() const { return _size; }
  void read(void* to, size_t bytes, uint64_t at) const;
  uint64_t fingerprint() const;  // file_fingerprint of it

 private:
  std::string _path, _what;
  int _fd = -1;
  uint64_t _size = 0;
};

// What `open()` made of `path`, kept per process while the file on disk stays the same (device,
// inode, size, change time; and `variant`, e.g. the dimensions it was opened for): a search
// reads and checks a file once, not once a query. Throws what `open` throws, or when `path`
// cannot be stat'ed.
std::string file_stamp(const std::string& path);
template <class T, class Open>
std::shared_ptr<const T> open_cached(const std::string& path, const std::string& variant,
                                     Open&& open) {
  static std::mutex mu;
  static std::map<std::string, std::pair<std::string, std::shared_ptr<const T>>> cache;
  const std::string stamp = file_stamp(path) + ":" + variant;
  {
    std::lock_guard lock(mu);
    if (auto it = cache.find(path); it != cache.end() && it->second.first == stamp)
      return it->second.second;
  }
  std::shared_ptr<const T> made = open();
  std::lock_guard lock(mu);
  cache[path] = {stamp, made};
  return made;
}

// A saved graph, read in place: its header and upper layers once, each node a search visits with
// one pread. (Mapping the file cost a page fault per node visited, about 10 us each on these
// machines: 40-100 ms a query at 1M chunks, against a few ms of reads.) A process that searches
// it again and again (`sluice search --queries`, a server) reads the bottom layer into memory
// once, at its kResidentAfter-th search, when it fits in a quarter of the machine's memory, in
// transparent huge pages where the kernel gives them: then a node visited costs no system call
// and, in huge pages, seldom a TLB miss. Held, the links, vectors and labels lie in three
// arrays, each vector on cache lines of its own, and the vectors are float16 when every one is a
// half exactly (the index stores halves by default): half the bytes a search loads, the same
// answers. At 1M chunks, ef 1024, whole-chunk queries: 8.9 ms at p95 held, against 134 ms read
// node by node (and 52-107 ms held in 4 KB pages before the halves).
class AnnGraph {
 public:
  // Throws std::runtime_error naming the file when it cannot be read or is not a graph of `dim`
  // floats.
  AnnGraph(const std::string& path, int dim);
  ~AnnGraph();
  AnnGraph(const AnnGraph&) = delete;
  AnnGraph& operator=(const AnnGraph&) = delete;

  size_t size() const { return _count; }
  // A cheap fingerprint of the file (its size, header and three 64 KiB samples), recorded in the
  // index when the file is written: a graph from another index or an older build is refused.
  uint64_t fingerprint() const { return _fingerprint; }
  // Up to `k` (inner product, label) pairs, best first, from a beam of `ef` candidates; labels
  // marked deleted are skipped. Safe from several threads at once.
  std::vector<std::pair<float, int64_t>> search(const float* query, size_t k, size_t ef) const;
  // Whether every link names a node of the graph (search skips one that does not; hnswlib, which
  // loads the file to update it, would follow it). Reads the whole file.
  bool links_ok() const;
  // Whether the bottom layer is held in memory (see above), and whether its vectors are held as
  // float16 (the index's vectors are halves and the CPU converts them in hardware).
  bool resident() const { return _resident.load(std::memory_order_acquire) != nullptr; }
  bool resident_in_halves() const;
  // The beam a search keeps when not told: kAnnEfSearchHeld once the graph is held in memory,
  // else kAnnEfSearch.
  size_t default_ef() const { return resident() ? kAnnEfSearchHeld : kAnnEfSearch; }
  static constexpr uint32_t kResidentAfter = 16;

 private:
  class Visit;  // one search's nodes, each read once
  void read(void* to, size_t bytes, uint64_t at) const { _file.read(to, bytes, at); }
  // Calls fn(id, node bytes) for each bottom-layer node in order, reading the file a block of
  // nodes at a time; stops, returning false, at the first call that returns false.
  template <class Fn>
  bool each_node(Fn&& fn) const;
  // An upper layer's links of `id` (level >= 1): the count and the first id; none when the node
  // is not on that layer.
  std::pair<const unsigned char*, uint32_t> upper_links(uint32_t id, int level) const;

  SideFile _file;
  size_t _bytes = 0;
  size_t _count = 0, _node_bytes = 0, _data_offset = 0, _label_offset = 0;
  size_t _max_m = 0, _max_m0 = 0, _dim = 0;
  int _max_level = 0;
  uint32_t _entry = 0;
  std::shared_ptr<unsigned char> _tail;  // the upper layers' section of the file
  // Nodes on upper layers (about 1 in M): the offset of their links in _tail and their top layer.
  std::unordered_map<uint32_t, std::pair<size_t, int>> _upper;
  uint64_t _fingerprint = 0;
  // The bottom layer in memory, once read (make_resident); null until then.
  struct Resident;
  void make_resident() const;
  std::unique_ptr<Resident> read_resident(bool half) const;
  mutable std::mutex _resident_mu;
  mutable std::unique_ptr<Resident> _held;
  mutable std::atomic<const Resident*> _resident{nullptr};
  mutable std::atomic<uint32_t> _searches{0};
};

// The index's graph when it has one that matches it, else nullptr: `why` says why an existing
// graph is not used (damaged, or not the one the index records), and stays empty when the index
// has none.
// A process keeps the graphs it opened (a file is mapped once, its pages stay mapped across
// queries, as in a search server); a file replaced since is opened again.
std::shared_ptr<const AnnGraph> open_ann(sqlite::Db& db, const std::string& db_path, int dim,
                                         std::string* why);

// FNV-1a over a file's size, its first 96 bytes' worth of header and 64 KiB at its start, middle
// and end: cheap, and different for another index's file or an older build of this one's.
uint64_t file_fingerprint(int fd, uint64_t bytes);
std::string fingerprint_hex(uint64_t v);

// An exclusive lock on a file beside the index, so that one process at a time writes its graph
// and postings (a launcher's workers take turns).
class UpkeepLock {
 public:
  explicit UpkeepLock(const std::string& path);
  ~UpkeepLock();
  UpkeepLock(const UpkeepLock&) = delete;
  UpkeepLock& operator=(const UpkeepLock&) = delete;

 private:
  int _fd = -1;
};

// What an upkeep did.
struct AnnUpkeep {
  enum class Action { none, built, updated } action = Action::none;
  size_t nodes = 0;    // vectors in the graph afterwards
  size_t changed = 0;  // rows added, replaced or removed (a build: every row)
  double seconds = 0;
};

enum class AnnPolicy { automatic, always, never };

// Builds the graph, or brings it up to date with the logged rows, for the index open in `db` (a
// read-write connection) at `db_path`. `automatic` builds one once the index holds kAnnMinChunks
// vectors; `always` builds one whatever the size; `rebuild` starts over. Another process's upkeep
// of the same index is waited for (a lock file), so a launcher's workers take turns. `progress`,
// when given, hears a line now and then. Throws std::runtime_error for a damaged graph or index.
AnnUpkeep keep_ann(sqlite::Db& db, const std::string& db_path, AnnPolicy policy,
                   bool rebuild = false,
                   const std::function<void(const std::string&)>& progress = {});

}  // namespace sluice::sqlite_index
