// The nearest-neighbour graph beside an index.sqlite file: built and updated with hnswlib,
// searched from a read-only mapping of hnswlib's saved file (nodes/index_sqlite_ann.hpp).
#include "nodes/index_sqlite_ann.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <queue>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

// hnswlib defines functions in its headers (CPU feature checks): this file is its one includer.
// Its SSE prefetches read the link one past a full list's end (to compute an address only), which
// AddressSanitizer reports as an overflow: sanitized builds use its plain loops instead.
#if defined(__SANITIZE_ADDRESS__)
#define NO_MANUAL_VECTORIZATION
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_MANUAL_VECTORIZATION
#endif
#endif
#include <hnswlib/hnswlib.h>

#include "engine/text/text.hpp"
#include "engine/vector/dot.hpp"
#include "nodes/index_sqlite_db.hpp"

namespace sluice::sqlite_index {

namespace {

// Anonymous memory whose pages the kernel provides at once (MAP_POPULATE): touching fresh pages
// one by one cost a page fault each, about 10 us on these machines, as much as the search.
std::shared_ptr<unsigned char> populated(size_t bytes) {
  if (bytes == 0) return {};
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return std::shared_ptr<unsigned char>(static_cast<unsigned char*>(p),
                                        [bytes](unsigned char* q) { ::munmap(q, bytes); });
}

// hnswlib's saveIndex writes these fields first, in this order (its version 0.6 format).
struct Header {
  uint64_t offset_level0, max_elements, count, node_bytes, label_offset, data_offset;
  int32_t max_level;
  uint32_t entry;
  uint64_t max_m, max_m0, m;
  double mult;
  uint64_t ef_construction;
};
constexpr size_t kHeaderBytes = 96;
constexpr int kMaxLevel = 64;

Header parse_header(const unsigned char* p) {
  Header h{};
  h.offset_level0 = read_at<uint64_t>(p);
  h.max_elements = read_at<uint64_t>(p + 8);
  h.count = read_at<uint64_t>(p + 16);
  h.node_bytes = read_at<uint64_t>(p + 24);
  h.label_offset = read_at<uint64_t>(p + 32);
  h.data_offset = read_at<uint64_t>(p + 40);
  h.max_level = read_at<int32_t>(p + 48);
  h.entry = read_at<uint32_t>(p + 52);
  h.max_m = read_at<uint64_t>(p + 56);
  h.max_m0 = read_at<uint64_t>(p + 64);
  h.m = read_at<uint64_t>(p + 72);
  h.mult = read_at<double>(p + 80);
  h.ef_construction = read_at<uint64_t>(p + 88);
  return h;
}

}  // namespace

uint64_t file_fingerprint(int fd, uint64_t bytes) {
  constexpr uint64_t kSample = 64 * 1024;
  const uint64_t len = std::min(kSample, bytes);
  std::vector<unsigned char> sample(static_cast<size_t>(len));
  uint64_t fp = 1469598103934665603ull;
  auto mix = [&](const unsigned char* b, size_t n) {
    for (size_t i = 0; i < n; ++i) fp = (fp ^ b[i]) * 1099511628211ull;
  };
  mix(reinterpret_cast<const unsigned char*>(&bytes), sizeof bytes);
  for (uint64_t at : {uint64_t{0}, (bytes - len) / 2, bytes - len}) {
    const ssize_t n = ::pread(fd, sample.data(), sample.size(), static_cast<off_t>(at));
    if (n != static_cast<ssize_t>(sample.size())) return 0;  // unreadable: matches no record
    mix(sample.data(), sample.size());
  }
  return fp;
}

std::string fingerprint_hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

UpkeepLock::UpkeepLock(const std::string& path) {
  _fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (_fd < 0) throw std::runtime_error("cannot create \"" + path + "\": " + std::strerror(errno));
  while (::flock(_fd, LOCK_EX) != 0)
    if (errno != EINTR) {
      ::close(_fd);
      throw std::runtime_error("cannot lock \"" + path + "\": " + std::strerror(errno));
    }
}

UpkeepLock::~UpkeepLock() { ::close(_fd); }

SideFile::SideFile(const std::string& path, std::string what)
    : _path(path), _what(std::move(what)) {
  _fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (_fd < 0) throw std::runtime_error("cannot open \"" + path + "\": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(_fd);
    throw std::runtime_error("\"" + path + "\" is not a regular file");
  }
  _size = static_cast<uint64_t>(st.st_size);
}

SideFile::~SideFile() { ::close(_fd); }

void SideFile::read(void* to, size_t bytes, uint64_t at) const {
  auto* p = static_cast<unsigned char*>(to);
  while (bytes > 0) {
    const ssize_t n = ::pread(_fd, p, bytes, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw std::runtime_error(
          "cannot read the " + _what + " \"" + _path + "\"" +
          (n < 0 ? std::string(": ") + std::strerror(errno) : std::string(": it was cut short")));
    p += n;
    bytes -= static_cast<size_t>(n);
    at += static_cast<uint64_t>(n);
  }
}

uint64_t SideFile::fingerprint() const { return file_fingerprint(_fd, _size); }

std::string file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw std::runtime_error("cannot stat \"" + path + "\": " + std::strerror(errno));
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_ctim.tv_sec) + "." +
         std::to_string(st.st_ctim.tv_nsec);
}

AnnGraph::AnnGraph(const std::string& path, int dim)
    : _file(path, "nearest-neighbour graph"), _bytes(static_cast<size_t>(_file.size())) {
  auto damaged = [&](const std::string& why) {
    return std::runtime_error("the nearest-neighbour graph \"" + path + "\" is damaged (" + why +
                              "): delete it, then `sluice build-search` rebuilds it");
  };
  try {
    if (_bytes < kHeaderBytes) throw damaged("shorter than its header");
    unsigned char head[kHeaderBytes];
    read(head, sizeof head, 0);
    const Header h = parse_header(head);
    _dim = static_cast<size_t>(dim);
    if (h.offset_level0 != 0 || h.m < 2 || h.m > 1024 || h.max_m != h.m || h.max_m0 != 2 * h.m)
      throw damaged("not an hnswlib graph this sluice writes");
    if (h.data_offset != 4 + 4 * h.max_m0 || h.label_offset != h.data_offset + 4 * _dim ||
        h.node_bytes != h.label_offset + 8)
      throw damaged("its vectors are not " + std::to_string(dim) +
                    " floats: was the index rebuilt with another embedder?");
    if (!std::isfinite(h.mult) || std::abs(h.mult - 1 / std::log(static_cast<double>(h.m))) > 1e-9)
      throw damaged("bad level factor");
    if (h.count > (_bytes - kHeaderBytes) / h.node_bytes || h.count >= (1ull << 32))
      throw damaged("more nodes than the file holds");
    if (h.count > 0 && (h.max_level < 0 || h.max_level > kMaxLevel || h.entry >= h.count))
      throw damaged("bad entry point");
    _count = h.count;
    _node_bytes = h.node_bytes;
    _data_offset = h.data_offset;
    _label_offset = h.label_offset;
    _max_m = h.max_m;
    _max_m0 = h.max_m0;
    _max_level = h.max_level;
    _entry = h.entry;
    // The upper layers' links: per node a byte count, then that many bytes. Read whole (a few
    // MB at 1M nodes), after checking it can be no longer than that many nodes need.
    const size_t per_level = 4 + 4 * _max_m;
    const size_t level0_end = kHeaderBytes + _count * _node_bytes;
    const size_t tail = _bytes - level0_end;
    if (tail < 4 * _count ||
        (tail - 4 * _count) / per_level > _count * static_cast<size_t>(_max_level))
      throw damaged("its upper layers do not fit its nodes");
    _tail = populated(tail);
    read(_tail.get(), tail, level0_end);
    size_t pos = 0;
    for (size_t i = 0; i < _count; ++i) {
      if (tail - pos < 4) throw damaged("truncated");
      const uint32_t n = read_at<uint32_t>(_tail.get() + pos);
      pos += 4;
      if (n % per_level != 0 || n / per_level > static_cast<size_t>(_max_level) || tail - pos < n)
        throw damaged("bad links of node " + std::to_string(i));
      if (n)
        _upper.emplace(static_cast<uint32_t>(i), std::pair(pos, static_cast<int>(n / per_level)));
      pos += n;
    }
    if (pos != tail) throw damaged("trailing bytes");
    _fingerprint = _file.fingerprint();
  } catch (const std::bad_alloc&) {
    throw damaged("its sizes ask for more memory than there is");
  }
}

AnnGraph::~AnnGraph() = default;

std::pair<const unsigned char*, uint32_t> AnnGraph::upper_links(uint32_t id, int level) const {
  auto it = _upper.find(id);
  if (it == _upper.end() || level > it->second.second) return {nullptr, 0};
  const unsigned char* p =
      _tail.get() + it->second.first + static_cast<size_t>(level - 1) * (4 + 4 * _max_m);
  return {p + 4, std::min<uint32_t>(read_at<uint16_t>(p), static_cast<uint32_t>(_max_m))};
}

template <class Fn>
bool AnnGraph::each_node(Fn&& fn) const {
  constexpr size_t kBlock = 4096;  // nodes per read
  std::vector<unsigned char> buf;
  for (size_t first = 0; first < _count; first += kBlock) {
    const size_t n = std::min(kBlock, _count - first);
    buf.resize(n * _node_bytes);
    read(buf.data(), buf.size(), kHeaderBytes + first * _node_bytes);
    for (size_t i = 0; i < n; ++i)
      if (!fn(first + i, buf.data() + i * _node_bytes)) return false;
  }
  return true;
}

bool AnnGraph::links_ok() const {
  // Each link names a node, and a link on layer L a node that reaches layer L: hnswlib follows
  // an upper layer's links into the target's lists for that layer without asking.
  auto level_of = [&](uint32_t id) {
    auto it = _upper.find(id);
    return it == _upper.end() ? 0 : it->second.second;
  };
  if (_count > 0 && level_of(_entry) != _max_level) return false;
  auto list_ok = [&](const unsigned char* p, size_t max, int level) {
    const uint32_t n = read_at<uint16_t>(p);
    if (n > max) return false;
    for (uint32_t j = 0; j < n; ++j) {
      const uint32_t c = read_at<uint32_t>(p + 4 + 4 * j);
      if (c >= _count || (level > 0 && level_of(c) < level)) return false;
    }
    return true;
  };
  if (!each_node([&](size_t, const unsigned char* node) { return list_ok(node, _max_m0, 0); }))
    return false;
  for (const auto& [id, at] : _upper)
    for (int level = 1; level <= at.second; ++level)
      if (!list_ok(_tail.get() + at.first + static_cast<size_t>(level - 1) * (4 + 4 * _max_m),
                   _max_m, level))
        return false;
  return true;
}

// The bottom layer held in memory (see the header): `links` holds each node's first
// _data_offset bytes (count, flags, links), `vectors` each vector on `vector_bytes` (a multiple of
// 64, one cache line boundary each), `labels` each label.
struct AnnGraph::Resident {
  std::shared_ptr<unsigned char> memory;
  const unsigned char* links = nullptr;
  const unsigned char* vectors = nullptr;
  const unsigned char* labels = nullptr;
  // A byte per node, 1 where it is marked deleted; null when none is (most graphs): a search need
  // not read a node's links to know.
  std::unique_ptr<uint8_t[]> deleted;
  size_t vector_bytes = 0;
  bool half = false;
};

bool AnnGraph::resident_in_halves() const {
  const Resident* r = _resident.load(std::memory_order_acquire);
  return r && r->half;
}

// The nodes one search has read: each is read from the file once, into blocks of memory this
// thread keeps for its next search; or, once the graph is held in memory, found there.
class AnnGraph::Visit {
 public:
  explicit Visit(const AnnGraph& g) : _g(g), _held(g._resident.load(std::memory_order_acquire)) {}
  ~Visit() {
    // Keep at most 64 MB for the thread's next search: a wide one (many pending rows) may have
    // read much of the graph.
    if (blocks().size() > kKeepBlocks) blocks().resize(kKeepBlocks);
  }
  float distance(const float* q, uint32_t id) {
    // id < count: every caller checked it.
    const float dot =
        !_held        ? dot_f32(q, node(id) + _g._data_offset, _g._dim)
        : _held->half ? dot_f16(q, _held->vectors + uint64_t{id} * _held->vector_bytes, _g._dim)
                      : dot_f32(q, _held->vectors + uint64_t{id} * _held->vector_bytes, _g._dim);
    const float d = 1.0f - dot;
    // A damaged vector (NaN) is the farthest of all, so the heaps' order stays well defined.
    return std::isnan(d) ? std::numeric_limits<float>::max() : d;
  }
  // Asks the CPU to load `id`'s vector while the search scores others (held in memory only: a
  // node read from the file is read when scored).
  void prefetch(uint32_t id) const {
    if (!_held) return;
    const unsigned char* v = _held->vectors + uint64_t{id} * _held->vector_bytes;
    for (size_t at = 0; at < _held->vector_bytes; at += 64) __builtin_prefetch(v + at);
  }
  // The bottom layer's links of `id`: the first id and the count.
  std::pair<const unsigned char*, uint32_t> links0(uint32_t id) {
    const unsigned char* p = head(id);
    return {p + 4, std::min<uint32_t>(read_at<uint16_t>(p), static_cast<uint32_t>(_g._max_m0))};
  }
  bool deleted(uint32_t id) {
    if (_held) return _held->deleted && _held->deleted[id] != 0;
    return (node(id)[2] & 1) != 0;
  }
  int64_t label(uint32_t id) {
    return static_cast<int64_t>(
        read_at<uint64_t>(_held ? _held->labels + 8 * uint64_t{id} : node(id) + _g._label_offset));
  }

 private:
  static constexpr size_t kBlockBytes = 4 << 20;
  static constexpr size_t kKeepBlocks = 16;
  static std::vector<std::shared_ptr<unsigned char>>& blocks() {
    thread_local std::vector<std::shared_ptr<unsigned char>> all;
    return all;
  }
  // The node's links with their count and flags.
  const unsigned char* head(uint32_t id) {
    return _held ? _held->links + uint64_t{id} * _g._data_offset : node(id);
  }
  // The node as the file holds it, read on first use.
  const unsigned char* node(uint32_t id) {
    auto [it, fresh] = _at.try_emplace(id, nullptr);
    if (fresh) {
      it->second = place();
      _g.read(it->second, _g._node_bytes, kHeaderBytes + uint64_t{id} * _g._node_bytes);
    }
    return it->second;
  }
  // Room for one node in this thread's blocks (a node never moves once placed).
  unsigned char* place() {
    auto& blocks = Visit::blocks();
    const size_t bytes = _g._node_bytes;
    if (bytes > kBlockBytes) {  // a node of more than 4 MB (a million dimensions): its own block
      _own.push_back(populated(bytes));
      return _own.back().get();
    }
    if (_used + bytes > kBlockBytes) {
      ++_block;
      _used = 0;
    }
    if (_block == blocks.size()) blocks.push_back(populated(kBlockBytes));
    unsigned char* p = blocks[_block].get() + _used;
    _used += bytes;
    return p;
  }

  const AnnGraph& _g;
  const Resident* _held;  // the bottom layer in memory, or null: read node by node
  std::unordered_map<uint32_t, unsigned char*> _at;
  size_t _block = 0, _used = 0;
  std::vector<std::shared_ptr<unsigned char>> _own;
};

// The bottom layer read into memory, its vectors as halves when `half`; null when it is too big
// to hold, or (`half`) when a vector is not halves exactly.
std::unique_ptr<AnnGraph::Resident> AnnGraph::read_resident(bool half) const {
  auto lines = [](size_t bytes) { return (bytes + 63) / 64 * 64; };
  auto r = std::make_unique<Resident>();
  r->half = half;
  r->vector_bytes = lines(_dim * (half ? 2 : 4));
  const size_t links = lines(_count * _data_offset), vectors = _count * r->vector_bytes;
  const size_t bytes = links + vectors + _count * 8;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (bytes == 0 || pages <= 0 || page <= 0 || bytes > static_cast<size_t>(pages) * page / 4)
    return nullptr;  // too big to hold: node by node it stays
  // In huge pages where the kernel gives them (transparent huge pages, "madvise" mode): a walk
  // loads vectors from all over the graph, and with 4 KB pages nearly every one missed the TLB.
  void* at = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (at == MAP_FAILED) return nullptr;
  r->memory.reset(static_cast<unsigned char*>(at),
                  [bytes](unsigned char* q) { ::munmap(q, bytes); });
  ::madvise(at, bytes, MADV_HUGEPAGE);  // a hint: refused, the pages are 4 KB
  unsigned char* to_links = r->memory.get();
  unsigned char* to_vectors = to_links + links;
  unsigned char* to_labels = to_vectors + vectors;
  r->links = to_links;
  r->vectors = to_vectors;
  r->labels = to_labels;
  std::vector<float> v(_dim);
  const bool whole = each_node([&](size_t id, const unsigned char* node) {
    std::memcpy(to_links + id * _data_offset, node, _data_offset);
    if ((node[2] & 1) != 0) {
      if (!r->deleted) r->deleted = std::make_unique<uint8_t[]>(_count);  // zeroed
      r->deleted[id] = 1;
    }
    unsigned char* vec = to_vectors + id * r->vector_bytes;
    std::memcpy(to_labels + id * 8, node + _label_offset, 8);
    if (!half) {
      std::memcpy(vec, node + _data_offset, _dim * 4);
      return true;
    }
    std::memcpy(v.data(), node + _data_offset, _dim * 4);
    return halves_exactly(v.data(), reinterpret_cast<uint16_t*>(vec), _dim);
  });
  return whole ? std::move(r) : nullptr;
}

void AnnGraph::make_resident() const {
  std::lock_guard lock(_resident_mu);
  if (_resident.load(std::memory_order_acquire)) return;
  try {
    std::unique_ptr<Resident> r = halves_are_fast() ? read_resident(true) : nullptr;
    if (!r) r = read_resident(false);
    if (!r) return;
    _held = std::move(r);
    _resident.store(_held.get(), std::memory_order_release);
  } catch (const std::exception&) {
    // No memory for it, or the read failed: the searches go on reading node by node, and a
    // read that fails there says so.
  }
}

std::vector<std::pair<float, int64_t>> AnnGraph::search(const float* q, size_t k, size_t ef) const {
  std::vector<std::pair<float, int64_t>> out;
  if (_count == 0 || k == 0) return out;
  if (!resident() && _searches.fetch_add(1, std::memory_order_relaxed) + 1 == kResidentAfter)
    make_resident();
  ef = std::max(ef, k);
  Visit visit(*this);
  // Greedy descent through the upper layers to the bottom layer's entry.
  uint32_t cur = _entry;
  float cur_d = visit.distance(q, cur);
  for (int level = _max_level; level > 0; --level) {
    for (bool changed = true; changed;) {
      changed = false;
      auto [p, n] = upper_links(cur, level);
      for (uint32_t j = 0; j < n; ++j) {
        const uint32_t c = read_at<uint32_t>(p + 4 * j);
        if (c >= _count) continue;  // a damaged link is ignored
        if (float d = visit.distance(q, c); d < cur_d) {
          cur_d = d;
          cur = c;
          changed = true;
        }
      }
    }
  }
  // Beam search of the bottom layer: `best` holds the ef nearest live nodes seen (worst on top),
  // `frontier` the nodes to expand (nearest first).
  using Item = std::pair<float, uint32_t>;
  std::priority_queue<Item> best;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> frontier;
  // Nodes seen by this search: a bit per node, this thread's (128 KB at 1M nodes, which stays in
  // the CPU's cache, where a word per node did not). Only the words the last search set are
  // cleared (it may have ended in an exception), so a search of a huge graph clears what it used.
  thread_local std::vector<uint64_t> seen;
  thread_local std::vector<uint32_t> used;
  for (uint32_t w : used) seen[w] = 0;
  used.clear();
  if (seen.size() < (_count + 63) / 64) seen.resize((_count + 63) / 64, 0);
  auto first_time = [&](uint32_t id) {
    uint64_t& word = seen[id >> 6];
    const uint64_t bit = uint64_t{1} << (id & 63);
    if (word & bit) return false;
    if (word == 0) used.push_back(id >> 6);
    word |= bit;
    return true;
  };
  thread_local std::vector<uint32_t> fresh;
  constexpr size_t kAhead = 2;
  first_time(cur);
  frontier.emplace(cur_d, cur);
  if (!visit.deleted(cur)) best.emplace(cur_d, cur);
  float bound = best.empty() ? std::numeric_limits<float>::max() : best.top().first;
  while (!frontier.empty()) {
    auto [d, id] = frontier.top();
    if (d > bound && best.size() >= ef) break;
    frontier.pop();
    // The links not seen yet, then their distances, each vector asked for a few ahead of use.
    auto [p, n] = visit.links0(id);
    fresh.clear();
    for (uint32_t j = 0; j < n; ++j)
      if (const uint32_t c = read_at<uint32_t>(p + 4 * j); c < _count && first_time(c))
        fresh.push_back(c);
    for (size_t j = 0; j < std::min(fresh.size(), kAhead); ++j) visit.prefetch(fresh[j]);
    for (size_t j = 0; j < fresh.size(); ++j) {
      if (j + kAhead < fresh.size()) visit.prefetch(fresh[j + kAhead]);
      const uint32_t c = fresh[j];
      const float dc = visit.distance(q, c);
      if (best.size() < ef || dc < bound) {
        frontier.emplace(dc, c);
        if (!visit.deleted(c)) best.emplace(dc, c);
        if (best.size() > ef) best.pop();
        if (!best.empty()) bound = best.top().first;
      }
    }
  }
  while (best.size() > k) best.pop();
  out.resize(best.size());
  for (size_t i = out.size(); i-- > 0; best.pop())
    out[i] = {1.0f - best.top().first, visit.label(best.top().second)};
  return out;
}

std::shared_ptr<const AnnGraph> open_ann(Db& db, const std::string& db_path, int dim,
                                         std::string* why) {
  const std::string want = meta(db, "ann_fingerprint");
  if (want.empty() || meta(db, "ann_seq").empty() || !db.has_table("ann_log") ||
      !db.has_table("ann_key"))
    return nullptr;
  const std::string path = ann_path(db_path);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (why) *why = "the nearest-neighbour graph \"" + path + "\" is missing";
    return nullptr;
  }
  try {
    auto g = open_cached<AnnGraph>(path, std::to_string(dim),
                                   [&] { return std::make_shared<const AnnGraph>(path, dim); });
    if (fingerprint_hex(g->fingerprint()) == want) return g;
    if (why)
      *why = "the nearest-neighbour graph \"" + path +
             "\" is not the one the index records (a run is replacing it, or it came from "
             "another index)";
  } catch (const std::exception& e) {
    if (why) *why = e.what();
  }
  return nullptr;
}

namespace {

using Hnsw = hnswlib::HierarchicalNSW<float>;

// hnswlib's inner-product distance through dot_f32, which uses AVX2 where the CPU has it
// (hnswlib's own picks its loop when it is compiled, and the build targets any x86-64).
class DotSpace final : public hnswlib::SpaceInterface<float> {
 public:
  explicit DotSpace(size_t dim) : _dim(dim) {}
  size_t get_data_size() override { return _dim * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return &distance; }
  void* get_dist_func_param() override { return &_dim; }

 private:
  static float distance(const void* a, const void* b, const void* dim) {
    return 1.0f - dot_f32(static_cast<const float*>(a), b, *static_cast<const size_t*>(dim));
  }
  size_t _dim;
};

// A vector's key: the graph holds each distinct vector once, labelled by a hash of its floats,
// and `ann_key` maps every row to its vector's key. Identical vectors (a sentence every document
// repeats) would otherwise form cliques that a search walks into and cannot leave: on synthetic
// text with many repeated chunks the best answer's score fell from 0.39 to 0.15.
uint64_t key_of(const std::vector<float>& v) {
  return text::stable_hash64(
      std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)), 0xa22);
}

// Writes `g` to `path`.tmp; then, in one transaction, runs `in_txn` (the key table's changes),
// records the file's fingerprint and the log position it holds, and cuts the log; then renames
// the file into place. A crash between the two leaves a graph whose fingerprint the index does
// not record: search scans instead, and the next upkeep finds the .tmp whose fingerprint it does
// record and finishes the rename.
void save(Hnsw& g, Db& db, const std::string& path, int dim, int64_t seq,
          const std::function<void()>& in_txn) {
  const std::string tmp = path + ".tmp";
  // The header's capacity field (which sluice never reads back) carries the log position: two
  // saves that differ only in deletion marks, which the fingerprint's samples may miss, still
  // differ in their header.
  const size_t capacity = g.max_elements_;
  g.max_elements_ = g.cur_element_count + 1 + static_cast<size_t>(std::max<int64_t>(seq, 0));
  g.saveIndex(tmp);
  g.max_elements_ = capacity;
  uint64_t fp = 0;
  try {
    fp = AnnGraph(tmp, dim).fingerprint();
  } catch (const std::exception& e) {
    std::filesystem::remove(tmp);
    throw std::runtime_error(std::string("writing the nearest-neighbour graph failed: ") +
                             e.what());
  }
  db.exec("BEGIN IMMEDIATE");
  try {
    in_txn();
    set_meta(db, "ann_fingerprint", fingerprint_hex(fp));
    set_meta(db, "ann_seq", std::to_string(seq));
    sqlite3_stmt* cut = db.prepare("DELETE FROM ann_log WHERE seq <= ?1");
    sqlite3_bind_int64(cut, 1, seq);
    db.run(cut);
    db.exec("COMMIT");
  } catch (...) {
    db.rollback();
    throw;
  }
  std::filesystem::rename(tmp, path);
}

void stop_tracking(Db& db) {
  db.exec("BEGIN IMMEDIATE");
  try {
    db.exec("DELETE FROM sluice_meta WHERE key IN ('ann_seq', 'ann_fingerprint');"
            "DELETE FROM ann_log; DELETE FROM ann_key;");
    db.exec("COMMIT");
  } catch (...) {
    db.rollback();
    throw;
  }
}

int64_t scalar(Db& db, const char* sql, int64_t bind = 0) {
  sqlite3_stmt* s = db.prepare(sql);
  if (sqlite3_bind_parameter_count(s) > 0) sqlite3_bind_int64(s, 1, bind);
  int64_t v = 0;
  if (db.step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_reset(s);
  return v;
}

void write_keys(Db& db, const std::vector<std::pair<int64_t, uint64_t>>& keys) {
  sqlite3_stmt* put = db.prepare("INSERT OR REPLACE INTO ann_key(rowid, key) VALUES (?1, ?2)");
  for (const auto& [rowid, key] : keys) {
    sqlite3_bind_int64(put, 1, rowid);
    sqlite3_bind_int64(put, 2, static_cast<int64_t>(key));
    db.run(put);
  }
}

// A graph of every distinct vector in the index, added in parallel blocks as they are read;
// `keys` gets every row's key.
std::unique_ptr<Hnsw> build(Db& db, hnswlib::SpaceInterface<float>& space, int dim, bool half,
                            int64_t expected, std::vector<std::pair<int64_t, uint64_t>>& keys,
                            const std::function<void(const std::string&)>& progress) {
  auto g =
      std::make_unique<Hnsw>(&space, static_cast<size_t>(std::max<int64_t>(expected, 1)) + 1024,
                             kAnnM, kAnnEfConstruction);
  sqlite3_stmt* s = db.prepare("SELECT rowid, vector FROM chunks WHERE vector IS NOT NULL");
  constexpr size_t kBlock = 8192;
  std::vector<float> block, v;
  std::vector<uint64_t> labels;
  std::unordered_set<uint64_t> seen;
  const auto t0 = std::chrono::steady_clock::now();
  auto last = t0;
  auto flush = [&] {
    const size_t n = labels.size();
    tbb::parallel_for(tbb::blocked_range<size_t>(0, n, 64),
                      [&](const tbb::blocked_range<size_t>& r) {
                        for (size_t i = r.begin(); i != r.end(); ++i)
                          g->addPoint(block.data() + i * static_cast<size_t>(dim), labels[i]);
                      });
    block.clear();
    labels.clear();
    const auto now = std::chrono::steady_clock::now();
    if (progress && now - last >= std::chrono::seconds(60)) {
      last = now;
      progress("nearest-neighbour graph: " + std::to_string(keys.size()) + " of " +
               std::to_string(expected) + " vectors in " +
               std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - t0).count()) +
               " s");
    }
  };
  while (db.step(s) == SQLITE_ROW) {
    if (!column_vector(s, 1, dim, half, v)) continue;
    const uint64_t key = key_of(v);
    keys.emplace_back(sqlite3_column_int64(s, 0), key);
    if (!seen.insert(key).second) continue;
    labels.push_back(key);
    block.insert(block.end(), v.begin(), v.end());
    if (labels.size() == kBlock) flush();
  }
  sqlite3_reset(s);
  if (!labels.empty()) flush();
  return g;
}

// Takes the logged rows into `g`: a row's old key loses it (a key no row has left is marked
// deleted), its new vector's key gains it (added to the graph when new there). The key table's
// changes are returned for save() to write with the log's cut.
struct KeyChanges {
  std::vector<int64_t> removed;                     // rows without a vector now
  std::vector<std::pair<int64_t, uint64_t>> moved;  // rows and their new keys
};
KeyChanges take_in(Hnsw& g, Db& db, const std::vector<int64_t>& rows, int dim, bool half) {
  KeyChanges out;
  std::unordered_map<uint64_t, int64_t> delta;  // rows gained (+) or lost (-) per key
  sqlite3_stmt* rows_of_key = db.prepare("SELECT count(*) FROM ann_key WHERE key = ?1");
  auto rows_with = [&](uint64_t key) {
    sqlite3_bind_int64(rows_of_key, 1, static_cast<int64_t>(key));
    db.step(rows_of_key);
    const int64_t n = sqlite3_column_int64(rows_of_key, 0);
    sqlite3_reset(rows_of_key);
    return n;
  };
  std::unordered_map<uint64_t, std::vector<float>> arriving;
  sqlite3_stmt* get = db.prepare("SELECT vector FROM chunks WHERE rowid = ?1");
  sqlite3_stmt* old_key = db.prepare("SELECT key FROM ann_key WHERE rowid = ?1");
  std::vector<float> v;
  for (int64_t rowid : rows) {
    sqlite3_bind_int64(get, 1, rowid);
    const bool live = db.step(get) == SQLITE_ROW && column_vector(get, 0, dim, half, v);
    sqlite3_reset(get);
    sqlite3_bind_int64(old_key, 1, rowid);
    std::optional<uint64_t> before;
    if (db.step(old_key) == SQLITE_ROW)
      before = static_cast<uint64_t>(sqlite3_column_int64(old_key, 0));
    sqlite3_reset(old_key);
    const std::optional<uint64_t> after = live ? std::optional(key_of(v)) : std::nullopt;
    if (before == after) continue;
    if (before) --delta[*before];
    if (after) {
      ++delta[*after];
      arriving.try_emplace(*after, v);
      out.moved.emplace_back(rowid, *after);
    } else {
      out.removed.push_back(rowid);
    }
  }
  for (const auto& [key, d] : delta) {
    auto it = g.label_lookup_.find(key);
    const bool in_graph = it != g.label_lookup_.end() && !g.isMarkedDeleted(it->second);
    if (d > 0 && !in_graph) {
      if (g.cur_element_count >= g.max_elements_)
        g.resizeIndex(g.max_elements_ + std::max<size_t>(g.max_elements_ / 4, 1024));
      g.addPoint(arriving.at(key).data(), key);  // adds, or revives a deleted one
    } else if (d < 0 && in_graph && rows_with(key) + d <= 0) {
      g.markDelete(key);
    }
  }
  return out;
}

}  // namespace

AnnUpkeep keep_ann(Db& db, const std::string& db_path, AnnPolicy policy, bool rebuild,
                   const std::function<void(const std::string&)>& progress) {
  AnnUpkeep result;
  if (policy == AnnPolicy::never || meta(db, "embedder").empty()) return result;
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const std::string path = ann_path(db_path);
  UpkeepLock lock(path + ".lock");
  const IndexEmbedder e = index_embedder(db);
  const bool half = stores_halves(db);
  const std::string seq_text = meta(db, "ann_seq");
  const std::string want = meta(db, "ann_fingerprint");
  auto fingerprint_of_file = [&](const std::string& p) -> std::string {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) return "";
    try {
      return fingerprint_hex(AnnGraph(p, e.dim).fingerprint());
    } catch (const std::exception&) {
      return "";
    }
  };
  // Finish a rename a crash interrupted; drop a file an upkeep left unrecorded.
  if (std::filesystem::exists(path + ".tmp")) {
    if (!want.empty() && fingerprint_of_file(path) != want &&
        fingerprint_of_file(path + ".tmp") == want)
      std::filesystem::rename(path + ".tmp", path);
    else std::filesystem::remove(path + ".tmp");
  }
  const bool have = !seq_text.empty() && !want.empty() && fingerprint_of_file(path) == want;
  DotSpace space(static_cast<size_t>(e.dim));

  if (have && !rebuild) {
    // The log's end first, then the rows up to it: a row another process logs meanwhile stays
    // for the next upkeep, never cut without being taken in.
    const int64_t to = scalar(db, "SELECT coalesce(max(seq), 0) FROM ann_log");
    std::vector<int64_t> rows;
    sqlite3_stmt* s = db.prepare("SELECT DISTINCT rowid FROM ann_log WHERE seq > ?1 AND seq <= ?2");
    sqlite3_bind_int64(s, 1, std::atoll(seq_text.c_str()));
    sqlite3_bind_int64(s, 2, to);
    while (db.step(s) == SQLITE_ROW) rows.push_back(sqlite3_column_int64(s, 0));
    sqlite3_reset(s);
    if (rows.empty()) return result;
    // hnswlib trusts its files: every link must name a node before it loads one.
    size_t nodes = 0;
    {
      const AnnGraph mapped(path, e.dim);
      if (!mapped.links_ok())
        throw std::runtime_error("the nearest-neighbour graph \"" + path +
                                 "\" is damaged (a link names no node): delete it, then `sluice "
                                 "build-search` rebuilds it");
      nodes = mapped.size();
    }
    Hnsw g(&space);
    g.num_deleted_ = 0;  // hnswlib's loading constructor leaves it unset; loadIndex adds to it
    // Room for the new rows; never the file's own capacity, which a damaged file could inflate.
    g.loadIndex(path, &space, nodes + rows.size() + 1024);
    // Deleted nodes stay in the graph as detours: past a third of it, start over.
    if (g.num_deleted_ + rows.size() <= g.cur_element_count / 3) {
      const KeyChanges changes = take_in(g, db, rows, e.dim, half);
      save(g, db, path, e.dim, to, [&] {
        sqlite3_stmt* del = db.prepare("DELETE FROM ann_key WHERE rowid = ?1");
        for (int64_t rowid : changes.removed) {
          sqlite3_bind_int64(del, 1, rowid);
          db.run(del);
        }
        write_keys(db, changes.moved);
      });
      result.action = AnnUpkeep::Action::updated;
      result.nodes = g.cur_element_count - g.num_deleted_;
      result.changed = rows.size();
      result.seconds = elapsed();
      return result;
    }
  }

  // A graph from scratch. Rows written from here on are logged (writers read ann_seq in each
  // transaction), so none slips between the snapshot read below and the graph's first update.
  if (policy == AnnPolicy::automatic && !have &&
      scalar(db, "SELECT coalesce(max(rowid), 0) FROM chunks") < kAnnMinChunks) {
    if (!seq_text.empty()) stop_tracking(db);  // its graph is gone: no log to keep
    return result;
  }
  if (seq_text.empty()) {
    db.exec("BEGIN IMMEDIATE");
    try {
      set_meta(db, "ann_seq", "0");
      db.exec("COMMIT");
    } catch (...) {
      db.rollback();
      throw;
    }
  }
  db.exec("BEGIN");  // one snapshot for the count, the log's end and the rows
  std::unique_ptr<Hnsw> g;
  std::vector<std::pair<int64_t, uint64_t>> keys;
  int64_t to = 0;
  try {
    const int64_t expected = scalar(db, "SELECT count(*) FROM chunks WHERE vector IS NOT NULL");
    if (policy == AnnPolicy::automatic && !have && expected < kAnnMinChunks) {
      db.exec("COMMIT");
      stop_tracking(db);
      return result;
    }
    to = scalar(db, "SELECT coalesce(max(seq), 0) FROM ann_log");
    if (progress)
      progress("building the nearest-neighbour graph of " + std::to_string(expected) +
               " vectors (later runs update it)");
    keys.reserve(static_cast<size_t>(expected));
    g = build(db, space, e.dim, half, expected, keys, progress);
    db.exec("COMMIT");
  } catch (...) {
    db.rollback();
    throw;
  }
  save(*g, db, path, e.dim, to, [&] {
    db.exec("DELETE FROM ann_key");
    write_keys(db, keys);
  });
  result.action = AnnUpkeep::Action::built;
  result.nodes = g->cur_element_count;
  result.changed = keys.size();
  result.seconds = elapsed();
  return result;
}

}  // namespace sluice::sqlite_index
