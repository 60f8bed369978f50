// Simulated HTTP upstream: one epoll loop thread, non-blocking sockets, HTTP/1.1 keep-alive
// with pipelining. Responses on one connection leave in request order: each request gets a slot
// in its connection's queue, a timer (min-heap) marks the slot ready after its latency and the
// ready prefix of the queue is moved to the output buffer. Latency 0 with nothing queued skips
// the slot and writes straight into the output buffer (the hot path allocates nothing).
#include "sim/sim.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <rapidjson/document.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <queue>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/json.hpp"
#include "engine/text.hpp"

namespace sluice::sim {
namespace {

constexpr size_t kMaxRequestBytes = size_t{16} << 20;  // head + body; larger -> 413
constexpr size_t kMaxHeaderBytes = size_t{64} << 10;   // head without terminator -> 431
constexpr size_t kBigBytes = size_t{5} << 20;
constexpr size_t kMaxPendingPerConn = 1024;            // queued responses before reads pause
constexpr size_t kMaxOutPerConn = size_t{8} << 20;     // unsent bytes before reads pause
constexpr size_t kReadChunk = size_t{64} << 10;
constexpr size_t kPoolBytes = size_t{64} << 10;
constexpr int kDefaultEmbeddingDim = 64;
constexpr int kMaxEmbeddingDim = 8192;

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t wall_s() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}

inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline double unit(uint64_t& s) { return double(splitmix64(s) >> 11) * 0x1.0p-53; }

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, size_t(r.ptr - buf));
}
void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, size_t(r.ptr - buf));
}
void append_float(std::string& out, float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, size_t(r.ptr - buf));
}

bool parse_u64(std::string_view s, uint64_t& v) {
  if (s.empty() || s.size() > 19) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}
bool icontains(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return false;
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i)
    if (iequals(hay.substr(i, needle.size()), needle)) return true;
  return false;
}
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Percent-decoding ('+' as space when plus_space); invalid escapes are kept as written.
void url_decode(std::string_view s, std::string& out, bool plus_space) {
  out.clear();
  auto hex = [&](size_t k) { return text::hex_value(static_cast<unsigned char>(s[k])); };
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size() && hex(i + 1) >= 0 && hex(i + 2) >= 0) {
      out.push_back(char(hex(i + 1) * 16 + hex(i + 2)));
      i += 2;
    } else if (c == '+' && plus_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
}

// Calls f(key, value) for each raw (still encoded) query parameter.
template <class F>
void for_each_param(std::string_view query, F&& f) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) f(kv, std::string_view{});
    else f(kv.substr(0, eq), kv.substr(eq + 1));
  }
}
bool find_param(std::string_view query, std::string_view key, std::string_view& value) {
  bool found = false;
  for_each_param(query, [&](std::string_view k, std::string_view v) {
    if (!found && k == key) {
      value = v;
      found = true;
    }
  });
  return found;
}

const char* reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

// ---- Generated content -------------------------------------------------------------------------

constexpr std::string_view kWords[] = {
    "the",     "river",  "stone",   "light",   "water",   "house",  "garden", "road",    "city",
    "market",  "quiet",  "north",   "winter",  "summer",  "bright", "silver", "ancient", "small",
    "window",  "bread",  "letter",  "morning", "evening", "field",  "bridge", "harbor",  "forest",
    "mountain", "valley", "lantern", "story",   "people",  "friend", "travel", "engine",  "signal",
    "paper",   "record", "measure", "season",  "harvest", "cloud",  "thunder", "candle", "mirror",
    "and",     "of",     "in",      "under",   "over",    "with",   "from",   "toward",  "beyond",
    "a",       "every",  "many",    "some",    "slowly",  "softly", "again",  "always",  "never",
    "keeps",   "carries", "finds",  "holds",   "turns",   "waits",  "returns", "builds", "opens"};
constexpr size_t kWordCount = sizeof(kWords) / sizeof(kWords[0]);

// Appends exactly n bytes of ASCII word-like text (sentences, no JSON-special characters).
void gen_text(std::string& out, uint64_t state, size_t n) {
  size_t start = out.size();
  size_t target = start + n;
  int left_in_sentence = 0;
  while (out.size() < target) {
    if (left_in_sentence == 0) left_in_sentence = 6 + int(splitmix64(state) % 10);
    std::string_view w = kWords[splitmix64(state) % kWordCount];
    size_t pos = out.size();
    out.append(w);
    bool first = pos == start || out[pos - 2] == '.';
    if (first) out[pos] = char(out[pos] - 32);
    if (--left_in_sentence == 0) out.push_back('.');
    out.push_back(' ');
  }
  out.resize(target);
  if (n > 0 && out.back() == ' ') out.back() = '.';
}

void gen_title(std::string& out, uint64_t state, uint64_t n) {
  out.append("Document ");
  append_uint(out, n);
  out.push_back(':');
  int words = 2 + int(splitmix64(state) % 4);
  for (int i = 0; i < words; ++i) {
    out.push_back(' ');
    size_t pos = out.size();
    out.append(kWords[splitmix64(state) % kWordCount]);
    out[pos] = char(out[pos] - 32);
  }
}

void format_doc_id(std::string& out, uint64_t n) {
  char buf[32];
  int len = std::snprintf(buf, sizeof buf, "doc-%06llu", static_cast<unsigned long long>(n));
  out.append(buf, size_t(len));
}

// ---- Sefaria-shaped library -------------------------------------------------------------------

enum class SefKind { simple, talmud, depth3, complex };
struct SefNode {
  const char* name;
  const char* he;
  int segments;
};
struct SefBook {
  const char* title;
  const char* he_title;
  std::vector<const char*> categories;  // full path; [0] is the primary category
  SefKind kind;
  std::vector<int> chapters;              // simple/talmud: segments per section
  std::vector<std::vector<int>> nested;   // depth3: per chapter, comments per verse
  std::vector<SefNode> nodes;             // complex: depth-1 nodes
};

// A small library with every shape the real one has: depth 2 (Tanakh), Talmud addresses with
// empty 1a/1b, depth 3 (a commentary with empty verses), a complex book and a collection leaf.
// Synthetic books (--sefaria-books): chapters each, of verses each.
constexpr int kSyntheticChapters = 20, kSyntheticVerses = 6;

const std::vector<SefBook>& sef_books() {
  static const std::vector<SefBook> books = {
      {"Genesis", "בראשית", {"Tanakh", "Torah"}, SefKind::simple, {4, 3, 5}, {}, {}},
      {"Exodus", "שמות", {"Tanakh", "Torah"}, SefKind::simple, {3, 4}, {}, {}},
      {"Psalms", "תהילים", {"Tanakh", "Writings"}, SefKind::simple, {2, 6, 3}, {}, {}},
      {"Berakhot", "ברכות", {"Talmud", "Bavli", "Seder Zeraim"}, SefKind::talmud,
       {0, 0, 3, 4, 2}, {}, {}},
      {"Rashi on Genesis", "רש\"י על בראשית", {"Tanakh", "Commentary", "Rashi", "Torah"},
       SefKind::depth3, {}, {{2, 1, 0}, {0, 0}, {1, 3}}, {}},
      {"Pesach Haggadah", "הגדה של פסח", {"Liturgy", "Haggadah"}, SefKind::complex, {}, {},
       {{"Kadesh", "קדש", 2}, {"Urchatz", "ורחץ", 1}, {"Maggid", "מגיד", 4}}},
  };
  return books;
}

constexpr std::string_view kHebrewWords[] = {"בראשית", "ברא",  "אלהים", "את",   "השמים",
                                             "ואת",    "הארץ", "והארץ", "היתה", "תהו",
                                             "ובהו",   "וחשך", "על",    "פני",  "תהום"};

// One segment of text with the markup the real library carries (English) or plain Hebrew.
// text_only drops footnotes as a unit and all tags, leaving entities encoded (as Sefaria does).
// Footnotes dropped alone keep the other tags (return_format=strip_only_footnotes).
void sef_segment(std::string& out, uint64_t state, bool english, bool drop_tags,
                 bool drop_footnotes) {
  int words = 6 + int(splitmix64(state) % 14);
  for (int i = 0; i < words; ++i) {
    if (i) out.append(splitmix64(state) % 9 == 0 ? "&nbsp;" : " ");
    if (!english) {
      out.append(kHebrewWords[splitmix64(state) % std::size(kHebrewWords)]);
      continue;
    }
    std::string_view w = kWords[splitmix64(state) % kWordCount];
    uint64_t roll = splitmix64(state) % 16;
    if (roll == 0 && !drop_tags) out.append("<b>").append(w).append("</b>");
    else if (roll == 1 && !drop_tags) out.append("<i>").append(w).append("</i>");
    else out.append(w);
    if (roll == 2 && !drop_footnotes)
      out.append("<sup class=\"footnote-marker\">a</sup><i class=\"footnote\">Lit. <i>")
          .append(w)
          .append("</i>, see the note&thinsp;above.</i>");
    if (roll == 3 && !drop_tags) out.append("<i data-commentator=\"Rashi\" data-order=\"1.1\"></i>");
    if (roll == 4 && !drop_tags) out.append("<br>");
  }
  out.push_back(english ? '.' : ':');
}

// ---- Routes and stats --------------------------------------------------------------------------

enum Ep {
  kDocsList,
  kDoc,
  kBig,
  kStats,
  kEmbed,
  kGemini,
  kBulk,
  kIndexBulk,
  kSefIndex,
  kSefText,
  kSefShape,
  kOaWorks,
  kOther,
  kEpCount
};
constexpr const char* kEpNames[kEpCount] = {
    "/docs",         "/docs/{id}",         "/big",                        "/stats",
    "/v1/embeddings", "/v1beta/models/{model}:batchEmbedContents", "/_bulk", "/{index}/_bulk",
    "/sefaria/api/index",
    "/sefaria/api/v3/texts/{ref}",         "/sefaria/api/shape/{title}", "/openalex/works",
    "other"};

struct EpStats {
  uint64_t requests = 0;
  std::vector<std::pair<int, uint64_t>> statuses;  // few distinct values: linear search
  void count_status(int s) {
    for (auto& p : statuses)
      if (p.first == s) {
        ++p.second;
        return;
      }
    statuses.emplace_back(s, 1);
  }
};

struct Stats {
  uint64_t requests = 0;
  EpStats eps[kEpCount];
  uint64_t in_flight = 0, peak = 0, resets = 0, timeouts = 0;
  uint64_t connections = 0;  // accepted, over the server's life
  uint64_t bulk_distinct = 0, bulk_multi = 0;
  uint64_t emb_inputs = 0, emb_tokens = 0;
};

// ---- Connections -------------------------------------------------------------------------------

enum class SlotKind : uint8_t { respond, reset };
struct Slot {
  uint64_t seq = 0;
  bool ready = false;
  SlotKind kind = SlotKind::respond;
  std::string data;  // full response bytes
};

struct Conn {
  int fd = -1;
  uint64_t id = 0;
  uint32_t events = 0;     // current epoll interest
  std::string in;          // unparsed input from in_off
  size_t in_off = 0;
  std::string out;         // bytes to send from out_off
  size_t out_off = 0;
  std::deque<Slot> slots;  // responses not yet moved to out, in request order
  uint64_t next_seq = 0;
  bool parse_done = false;   // no more requests are parsed (error, reset, Connection: close)
  bool stalled = false;      // a request was dropped (timeout): the connection hangs
  bool read_paused = false;  // too much queued: no reads until it drains
  bool eof = false;          // peer closed its side
  bool close_after = false;  // close once everything queued is sent
  bool draining = false;     // write side shut: discard input until EOF
  bool continue_sent = false;
  bool dirty = false;
  size_t dirty_idx = 0;  // position in Impl::dirty while dirty
};

struct Timer {
  int64_t due_ns;
  uint64_t conn_id;
  int fd;
  uint64_t seq;
  bool operator>(const Timer& o) const { return due_ns > o.due_ns; }
};

struct Request {
  std::string_view method, path, query;
  std::string_view body;  // inside Conn::in
  std::string_view goog_api_key;  // the x-goog-api-key header, inside Conn::in
  bool has_goog_api_key = false;
  bool keep_alive = true;
};

enum class ParseResult { need_more, ok, error };

struct BulkEntry {
  uint32_t times = 0;  // successful index/create operations
  bool live = false;
};

}  // namespace

// ---- Server ------------------------------------------------------------------------------------

struct SimServer::Impl {
  SimOptions o;
  std::atomic<int> bound_port{0};
  int listen_fd = -1, epoll_fd = -1, event_fd = -1;
  std::thread thread;
  std::mutex life_mu;  // start/stop

  mutable std::mutex stats_mu;
  Stats stats;

  // Loop-thread state.
  std::vector<std::unique_ptr<Conn>> conns;  // by fd
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers;
  std::vector<Conn*> dirty;
  uint64_t next_conn_id = 1;
  uint64_t rng = 0;
  int64_t now_ns = 0, now_wall = 0;
  int64_t rpm_window = -1, rpm_used = 0, tpm_window = -1, tpm_used = 0;
  int64_t rpm_limit = 0, tpm_limit = 0;  // per window; 0 = none
  std::string body;                      // response body scratch
  std::string items;                     // bulk items scratch
  std::string parse_buf;                 // NUL-terminated copy for in-situ JSON parsing
  std::string tmp, tmp2;                 // decoding scratch
  std::vector<std::string_view> inputs;  // embeddings inputs (into parse_buf)
  std::vector<float> vec;
  std::string big_body;
  std::unordered_map<std::string, BulkEntry> bulk_ids;  // index '\x1f' id
  uint64_t auto_id = 0;
  std::vector<char> rbuf = std::vector<char>(kReadChunk);
  std::unique_ptr<char[]> pool_buf = std::make_unique<char[]>(kPoolBytes);
  rapidjson::MemoryPoolAllocator<> pool{pool_buf.get(), kPoolBytes};  // DOM values, reused
  rapidjson::Reader reader;  // validation without a DOM; keeps its stack between parses

  // True when the NUL-terminated text (parsed in place) is one JSON object.
  bool is_json_object(char* s) {
    char* p = s;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') ++p;
    if (*p != '{') return false;
    rapidjson::InsituStringStream ss(s);
    rapidjson::BaseReaderHandler<> h;
    return !reader.Parse<rapidjson::kParseInsituFlag>(ss, h).IsError();
  }

  // The fixed library plus --sefaria-books synthetic ones (titles kept in sef_titles).
  std::deque<std::string> sef_titles;
  std::vector<SefBook> sef_library;
  std::unordered_map<std::string_view, const SefBook*> sef_by_title;  // a request must not scan them all
  // Rendered once and served from memory, so that the sim costs a request little beside the
  // client under test: each book's section refs (with an index by ref) and each section's text
  // as JSON, per version and format. A book-level ref is its sections' texts joined, so reading
  // a book whole and then section by section renders every section once.
  struct SefSections {
    std::vector<std::pair<std::string, bool>> list;  // section refs in order, and whether empty
    std::unordered_map<std::string, int> by_ref;
  };
  std::unordered_map<const SefBook*, SefSections> sef_sections_cache;
  std::unordered_map<std::string, std::string> sef_text_cache;  // key: see sef_emit_text
  size_t sef_text_bytes = 0;
  static constexpr size_t kSefTextCacheBytes = size_t{256} << 20;  // past it, the cache starts over

  explicit Impl(SimOptions opts) : o(std::move(opts)) {
    sef_library = sef_books();
    for (uint64_t i = 1; i <= o.sefaria_books; ++i) {
      std::string title = "Synthetic Book ";  // appended: GCC 12 warns (falsely) on "lit" + string
      title += std::to_string(i);
      sef_titles.push_back(std::move(title));
      sef_library.push_back({sef_titles.back().c_str(), "ספר", {"Synthetic"}, SefKind::simple,
                             std::vector<int>(kSyntheticChapters, kSyntheticVerses), {}, {}});
    }
    for (const SefBook& b : sef_library) sef_by_title.emplace(b.title, &b);
    rng = o.seed ^ 0x5eed5eed5eedULL;
    if (o.rpm > 0) rpm_limit = std::max<int64_t>(1, (o.rpm + 59) / 60);
    if (o.tpm > 0) tpm_limit = std::max<int64_t>(1, (o.tpm + 59) / 60);
  }

  // ---- lifecycle ----

  int start() {
    std::lock_guard lk(life_mu);
    if (thread.joinable()) return bound_port.load();
    bool v6 = o.bind.find(':') != std::string::npos;
    int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "sim: socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(uint16_t(o.port));
      if (inet_pton(AF_INET6, o.bind.c_str(), &a->sin6_addr) != 1) {
        ::close(fd);
        throw std::system_error(EINVAL, std::generic_category(), "sim: bad bind address " + o.bind);
      }
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(uint16_t(o.port));
      if (inet_pton(AF_INET, o.bind.c_str(), &a->sin_addr) != 1) {
        ::close(fd);
        throw std::system_error(EINVAL, std::generic_category(), "sim: bad bind address " + o.bind);
      }
      len = sizeof *a;
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 4096) != 0) {
      int e = errno;
      ::close(fd);
      throw std::system_error(e, std::generic_category(),
                              "sim: cannot listen on " + o.bind + ":" + std::to_string(o.port));
    }
    len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    int p = v6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
               : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd < 0 || event_fd < 0) {
      int e = errno;
      ::close(fd);
      if (epoll_fd >= 0) ::close(epoll_fd);
      if (event_fd >= 0) ::close(event_fd);
      epoll_fd = event_fd = -1;
      throw std::system_error(e, std::generic_category(), "sim: epoll");
    }
    listen_fd = fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev);
    ev.data.fd = event_fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, event_fd, &ev);
    bound_port = p;
    thread = std::thread([this] { loop(); });
    return p;
  }

  void stop() {
    std::lock_guard lk(life_mu);
    if (!thread.joinable()) return;
    uint64_t one = 1;
    ssize_t w = ::write(event_fd, &one, sizeof one);
    (void)w;
    thread.join();
    for (auto& c : conns)
      if (c) close_conn(*c);
    conns.clear();
    timers = {};
    dirty.clear();
    ::close(listen_fd);
    ::close(epoll_fd);
    ::close(event_fd);
    listen_fd = epoll_fd = event_fd = -1;
  }

  // ---- event loop ----

  void loop() {
    epoll_event events[256];
    for (;;) {
      int n = wait_events(events, 256);
      if (n < 0 && errno != EINTR) return;
      now_ns = mono_ns();
      now_wall = wall_s();
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == event_fd) return;
        if (fd == listen_fd) {
          accept_all();
          continue;
        }
        if (fd < 0 || size_t(fd) >= conns.size() || !conns[size_t(fd)]) continue;
        Conn& c = *conns[size_t(fd)];
        uint32_t e = events[i].events;
        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          if (!on_readable(c)) continue;
        }
        mark_dirty(c);
      }
      while (!timers.empty() && timers.top().due_ns <= now_ns) {
        Timer t = timers.top();
        timers.pop();
        if (size_t(t.fd) >= conns.size() || !conns[size_t(t.fd)]) continue;
        Conn& c = *conns[size_t(t.fd)];
        if (c.id != t.conn_id || c.slots.empty()) continue;
        uint64_t idx = t.seq - c.slots.front().seq;
        if (idx < c.slots.size() && c.slots[idx].seq == t.seq) {
          c.slots[idx].ready = true;
          mark_dirty(c);
        }
      }
      // Closing a connection nulls its entry here (close_conn), so no pointer dangles.
      for (size_t i = 0; i < dirty.size(); ++i) {
        Conn* c = dirty[i];
        if (!c) continue;
        c->dirty = false;
        flush(*c);
      }
      dirty.clear();
    }
  }

  // Waits for events until the next response is due. To the nanosecond where the kernel has
  // epoll_pwait2: epoll_wait's whole milliseconds, rounded up, made a 50 ms latency 50.5 ms on
  // average, which every request of a chain (a book followed section by section) pays again.
  int wait_events(epoll_event* events, int max) {
    int64_t wait = -1;
    if (!timers.empty()) wait = std::clamp<int64_t>(timers.top().due_ns - mono_ns(), 0, 60'000'000'000);
    if (have_pwait2) {
      timespec ts{wait / 1'000'000'000, wait % 1'000'000'000};
      int n = epoll_pwait2(epoll_fd, events, max, wait < 0 ? nullptr : &ts, nullptr);
      if (n >= 0) pwait2_worked = true;
      // ENOSYS on old kernels, EPERM under some seccomp profiles: fall back for good, unless
      // it has worked before (then the error is the loop's to see).
      if (n >= 0 || errno == EINTR || pwait2_worked) return n;
      have_pwait2 = false;
    }
    return epoll_wait(epoll_fd, events, max, wait < 0 ? -1 : int((wait + 999'999) / 1'000'000));
  }
  bool have_pwait2 = true, pwait2_worked = false;

  void mark_dirty(Conn& c) {
    if (!c.dirty) {
      c.dirty = true;
      c.dirty_idx = dirty.size();
      dirty.push_back(&c);
    }
  }

  void accept_all() {
    for (;;) {
      int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or EMFILE and the like: try again on the next wakeup
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (size_t(fd) >= conns.size()) conns.resize(size_t(fd) + 1);
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      c->id = next_conn_id++;
      c->events = EPOLLIN;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ::close(fd);
        continue;
      }
      conns[size_t(fd)] = std::move(c);
      std::lock_guard lk(stats_mu);
      ++stats.connections;
    }
  }

  void close_conn(Conn& c, bool rst = false) {
    if (!c.slots.empty()) {
      std::lock_guard lk(stats_mu);
      stats.in_flight -= c.slots.size();
    }
    if (rst) {
      linger l{1, 0};
      setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    if (c.dirty && c.dirty_idx < dirty.size() && dirty[c.dirty_idx] == &c)
      dirty[c.dirty_idx] = nullptr;
    int fd = c.fd;
    ::close(fd);
    conns[size_t(fd)].reset();  // destroys c
  }

  // Returns false when the connection was closed.
  bool on_readable(Conn& c) {
    for (int rounds = 0; rounds < 16; ++rounds) {
      ssize_t n = ::recv(c.fd, rbuf.data(), rbuf.size(), 0);
      if (n > 0) {
        if (!c.draining && !c.parse_done && !c.stalled) c.in.append(rbuf.data(), size_t(n));
        if (size_t(n) < rbuf.size()) break;
        continue;
      }
      if (n == 0) {
        c.eof = true;
        break;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      close_conn(c);
      return false;
    }
    if (c.eof && (c.draining || (c.slots.empty() && c.out_off >= c.out.size() &&
                                 !has_complete_request(c)))) {
      close_conn(c);
      return false;
    }
    parse_requests(c);
    if (c.eof) {
      c.parse_done = true;
      c.close_after = true;
    }
    return true;
  }

  bool has_complete_request(const Conn& c) const {
    return c.in.size() > c.in_off &&
           std::string_view(c.in).substr(c.in_off).find("\r\n\r\n") != std::string_view::npos;
  }

  void update_interest(Conn& c) {
    uint32_t want = 0;
    if (!c.read_paused && !c.eof) want |= EPOLLIN;
    if (c.out_off < c.out.size()) want |= EPOLLOUT;
    if (want != c.events) {
      epoll_event ev{};
      ev.events = want;
      ev.data.fd = c.fd;
      epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
      c.events = want;
    }
  }

  // Moves ready responses to the output, writes what the socket takes, resumes paused reads.
  void flush(Conn& c) {
    for (int guard = 0; guard < 64; ++guard) {
      size_t moved = 0;
      while (!c.slots.empty() && c.slots.front().ready) {
        Slot& s = c.slots.front();
        if (s.kind == SlotKind::reset) {
          write_some(c);  // best effort: what came before the reset
          close_conn(c, true);
          return;
        }
        if (c.out_off >= c.out.size()) {
          c.out.clear();
          c.out_off = 0;
        }
        if (c.out.empty()) c.out.swap(s.data);
        else c.out.append(s.data);
        c.slots.pop_front();
        ++moved;
      }
      if (moved) {
        std::lock_guard lk(stats_mu);
        stats.in_flight -= moved;
      }
      if (!write_some(c)) {
        close_conn(c);
        return;
      }
      if (c.read_paused && c.slots.size() < kMaxPendingPerConn / 2 &&
          c.out.size() - c.out_off < kMaxOutPerConn / 2) {
        c.read_paused = false;
        size_t before = c.next_seq;
        size_t out_before = c.out.size();
        parse_requests(c);
        if (c.next_seq != before || c.out.size() != out_before) continue;
      }
      break;
    }
    if (c.out_off >= c.out.size() && c.slots.empty() && c.close_after) {
      if (c.eof || c.draining) {
        close_conn(c);
        return;
      }
      // Half-close and read until the peer closes, so unread input cannot turn the close
      // into a reset that destroys the response on its way.
      ::shutdown(c.fd, SHUT_WR);
      c.draining = true;
      c.read_paused = false;
    }
    update_interest(c);
  }

  // False on a socket error.
  bool write_some(Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += size_t(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      return false;
    }
    if (c.out.capacity() > (size_t{1} << 20)) std::string().swap(c.out);
    else c.out.clear();
    c.out_off = 0;
    return true;
  }

  // ---- HTTP parsing ----

  void parse_requests(Conn& c) {
    while (!c.parse_done && !c.stalled && !c.draining) {
      if (c.slots.size() >= kMaxPendingPerConn || c.out.size() - c.out_off >= kMaxOutPerConn) {
        c.read_paused = true;
        break;
      }
      Request req;
      ParseResult r = parse_one(c, req);
      if (r != ParseResult::ok) break;
      dispatch(c, req);
    }
    if (c.in_off > 0) {
      c.in.erase(0, c.in_off);
      c.in_off = 0;
    }
    if (c.in.empty() && c.in.capacity() > (size_t{1} << 20)) std::string().swap(c.in);
  }

  void protocol_error(Conn& c, int status, std::string_view msg) {
    {
      std::lock_guard lk(stats_mu);
      ++stats.requests;
      ++stats.eps[kOther].requests;
      stats.eps[kOther].count_status(status);
    }
    body.clear();
    body.append("{\"error\":");
    json::append_quoted(body, msg);
    body.push_back('}');
    c.parse_done = true;
    c.close_after = true;
    enqueue(c, SlotKind::respond, status, false, true, body, 0);
  }

  ParseResult parse_one(Conn& c, Request& req) {
    std::string_view in = std::string_view(c.in).substr(c.in_off);
    // Tolerate stray CRLFs between requests (RFC 9112 2.2).
    size_t skip = 0;
    while (skip < in.size() && (in[skip] == '\r' || in[skip] == '\n')) ++skip;
    if (skip) {
      c.in_off += skip;
      in.remove_prefix(skip);
    }
    if (in.empty()) return ParseResult::need_more;
    size_t head_end = in.find("\r\n\r\n");
    if (head_end == std::string_view::npos) {
      if (in.size() > kMaxHeaderBytes) {
        protocol_error(c, 431, "request head too large");
        return ParseResult::error;
      }
      return ParseResult::need_more;
    }
    std::string_view head = in.substr(0, head_end);
    size_t line_end = head.find("\r\n");
    std::string_view line = head.substr(0, line_end);
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) {
      protocol_error(c, 400, "bad request line");
      return ParseResult::error;
    }
    req.method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    bool http11 = version == "HTTP/1.1";
    if (!http11 && version != "HTTP/1.0") {
      protocol_error(c, 400, "unsupported HTTP version");
      return ParseResult::error;
    }
    req.keep_alive = http11;
    size_t q = target.find('?');
    req.path = target.substr(0, q);
    req.query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);

    uint64_t content_length = 0;
    bool expect_continue = false;
    std::string_view rest = line_end == std::string_view::npos ? std::string_view{}
                                                               : head.substr(line_end + 2);
    while (!rest.empty()) {
      size_t e = rest.find("\r\n");
      std::string_view h = rest.substr(0, e);
      rest = e == std::string_view::npos ? std::string_view{} : rest.substr(e + 2);
      size_t colon = h.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = h.substr(0, colon);
      std::string_view value = trim(h.substr(colon + 1));
      if (iequals(name, "content-length")) {
        if (!parse_u64(value, content_length)) {
          protocol_error(c, 400, "bad Content-Length");
          return ParseResult::error;
        }
      } else if (iequals(name, "transfer-encoding")) {
        if (!iequals(value, "identity")) {
          protocol_error(c, 501, "chunked request bodies are not supported");
          return ParseResult::error;
        }
      } else if (iequals(name, "connection")) {
        if (icontains(value, "close")) req.keep_alive = false;
        else if (icontains(value, "keep-alive")) req.keep_alive = true;
      } else if (iequals(name, "x-goog-api-key")) {
        req.goog_api_key = value;
        req.has_goog_api_key = true;
      } else if (iequals(name, "expect")) {
        expect_continue = iequals(value, "100-continue");
      }
    }
    size_t head_len = head_end + 4;
    if (content_length > kMaxRequestBytes || head_len + content_length > kMaxRequestBytes) {
      protocol_error(c, 413, "request too large");
      return ParseResult::error;
    }
    if (in.size() < head_len + content_length) {
      if (expect_continue && !c.continue_sent && c.slots.empty() && c.out_off >= c.out.size()) {
        c.out.append("HTTP/1.1 100 Continue\r\n\r\n");
        c.continue_sent = true;
      }
      return ParseResult::need_more;
    }
    req.body = in.substr(head_len, size_t(content_length));
    c.in_off += head_len + size_t(content_length);
    c.continue_sent = false;
    return ParseResult::ok;
  }

  // ---- responses ----

  void append_head(std::string& out, int status, bool retry_after, bool close, size_t len) {
    out.append("HTTP/1.1 ");
    append_int(out, status);
    out.push_back(' ');
    out.append(reason(status));
    out.append("\r\nContent-Type: application/json\r\nContent-Length: ");
    append_uint(out, len);
    out.append("\r\n");
    if (retry_after) out.append("Retry-After: 1\r\n");
    if (close) out.append("Connection: close\r\n");
    out.append("\r\n");
  }

  void enqueue(Conn& c, SlotKind kind, int status, bool retry_after, bool close,
               std::string_view b, int64_t delay_ns) {
    {
      std::lock_guard lk(stats_mu);
      ++stats.in_flight;
      stats.peak = std::max(stats.peak, stats.in_flight);
      if (kind == SlotKind::respond && delay_ns <= 0 && c.slots.empty()) --stats.in_flight;
    }
    if (close) {
      c.close_after = true;
      c.parse_done = true;
    }
    if (kind == SlotKind::respond && delay_ns <= 0 && c.slots.empty()) {
      if (c.out_off >= c.out.size()) {
        c.out.clear();
        c.out_off = 0;
      }
      append_head(c.out, status, retry_after, close, b.size());
      c.out.append(b);
      return;
    }
    Slot s;
    s.seq = c.next_seq++;
    s.kind = kind;
    s.ready = delay_ns <= 0;
    if (kind == SlotKind::respond) {
      s.data.reserve(b.size() + 128);
      append_head(s.data, status, retry_after, close, b.size());
      s.data.append(b);
    }
    if (!s.ready) timers.push(Timer{now_ns + delay_ns, c.id, c.fd, s.seq});
    c.slots.push_back(std::move(s));
  }

  int64_t draw_latency_ns() {
    if (o.latency_ms <= 0 && o.latency_jitter_ms <= 0) return 0;
    double ms = o.latency_ms;
    if (o.latency_jitter_ms > 0) ms += (unit(rng) * 2 - 1) * o.latency_jitter_ms;
    if (ms <= 0) return 0;
    return int64_t(ms * 1e6);
  }

  bool chance(double p) { return p > 0 && (p >= 1 || unit(rng) < p); }

  bool rpm_ok() {
    if (rpm_limit <= 0) return true;
    if (rpm_window != now_wall) {
      rpm_window = now_wall;
      rpm_used = 0;
    }
    if (rpm_used >= rpm_limit) return false;
    ++rpm_used;
    return true;
  }

  bool tpm_ok(int64_t tokens) {
    if (tpm_limit <= 0) return true;
    if (tpm_window != now_wall) {
      tpm_window = now_wall;
      tpm_used = 0;
    }
    // A request larger than a whole window still passes when the window is fresh.
    if (tpm_used > 0 && tpm_used + tokens > tpm_limit) return false;
    tpm_used += tokens;
    return true;
  }

  static Ep route(std::string_view path, std::string_view& param) {
    if (path.size() > 7 && path.ends_with("/_bulk") && path[0] == '/') {
      param = path.substr(1, path.size() - 7);
      if (param.find('/') == std::string_view::npos) return kIndexBulk;
      return kOther;
    }
    if (path == "/docs") return kDocsList;
    if (path.starts_with("/docs/")) {
      param = path.substr(6);
      if (!param.empty() && param.find('/') == std::string_view::npos) return kDoc;
      return kOther;
    }
    if (path == "/big") return kBig;
    if (path == "/stats") return kStats;
    if (path == "/v1/embeddings") return kEmbed;
    if (path.starts_with("/v1beta/models/") && path.ends_with(":batchEmbedContents")) {
      param = path.substr(15, path.size() - 15 - 19);
      return param.empty() || param.find('/') != std::string_view::npos ? kOther : kGemini;
    }
    if (path == "/_bulk") return kBulk;
    if (path == "/sefaria/api/index" || path == "/sefaria/api/index/") return kSefIndex;
    if (path.starts_with("/sefaria/api/v3/texts/")) {
      param = path.substr(22);
      return param.empty() ? kOther : kSefText;
    }
    if (path.starts_with("/sefaria/api/shape/")) {
      param = path.substr(19);
      return param.empty() ? kOther : kSefShape;
    }
    if (path == "/openalex/works") return kOaWorks;
    return kOther;
  }

  static bool is_post(Ep ep) { return ep == kEmbed || ep == kGemini || ep == kBulk || ep == kIndexBulk; }

  void error_body(std::string_view msg) {
    body.clear();
    body.append("{\"error\":");
    json::append_quoted(body, msg);
    body.push_back('}');
  }

  void dispatch(Conn& c, Request& req) {
    std::string_view param;
    Ep ep = route(req.path, param);
    bool close = !req.keep_alive;
    {
      std::lock_guard lk(stats_mu);
      ++stats.requests;
      ++stats.eps[ep].requests;
    }
    int status = 200;
    bool retry_after = false;
    SlotKind kind = SlotKind::respond;
    int64_t delay = 0;
    bool expect_post = is_post(ep);
    bool method_ok = req.method == (expect_post ? "POST" : "GET");
    if (ep == kOther) {
      status = 404;
      error_body("not found");
    } else if (!method_ok) {
      status = 405;
      error_body("method not allowed");
    } else if (ep == kStats) {
      body.clear();
      std::lock_guard lk(stats_mu);
      stats_json_locked(body);
    }
    if (ep == kOther || !method_ok || ep == kStats) {
      finish(c, ep, kind, status, retry_after, close, 0);
      return;
    }

    if (o.max_concurrent > 0) {
      bool overloaded;
      {
        std::lock_guard lk(stats_mu);
        overloaded = stats.in_flight >= o.max_concurrent;
      }
      if (overloaded) {
        error_body("overloaded: too many requests at once");
        finish(c, ep, kind, 503, false, close, 0);
        return;
      }
    }
    delay = draw_latency_ns();
    if (ep == kGemini) {
      // As the real API: no key at all is 403, a key it does not know is 400. "bad" is the
      // unknown key here; any other passes.
      std::string_view qkey;
      bool has_key = req.has_goog_api_key || find_param(req.query, "key", qkey);
      if (req.has_goog_api_key) qkey = req.goog_api_key;
      if (!has_key || qkey.empty() || qkey == "bad") {
        if (!has_key) google_error(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.");
        else google_error(400, "API key not valid. Please pass a valid API key.");
        finish(c, ep, kind, has_key ? 400 : 403, false, close, delay);
        return;
      }
    }
    if (!rpm_ok()) {
      if (ep == kGemini) google_error(429, "Resource has been exhausted (e.g. check quota).");
      else error_body("rate limited");
      if (ep == kOaWorks) body.insert(body.size() - 1, ",\"retryAfter\":1");
      finish(c, ep, kind, 429, true, close, delay);
      return;
    }
    int64_t tokens = 0;
    if (ep == kEmbed || ep == kGemini) {
      std::string_view err;
      if (ep == kEmbed ? !parse_embeddings(req.body, tokens, err) : !parse_gemini(req.body, param, tokens, err)) {
        if (ep == kEmbed) error_body(err);
        else google_error(400, err);
        finish(c, ep, kind, 400, false, close, delay);
        return;
      }
      if (!tpm_ok(tokens)) {
        if (ep == kGemini) google_error(429, "Resource has been exhausted (e.g. check quota).");
        else error_body("rate limited");
        finish(c, ep, kind, 429, true, close, delay);
        return;
      }
    }
    // Faults, drawn in a fixed order so a seed replays the same sequence.
    if (chance(o.error_rate)) {
      error_body("simulated");
      finish(c, ep, kind, 500, false, close, delay);
      return;
    }
    if (chance(o.reset_rate)) {
      {
        std::lock_guard lk(stats_mu);
        ++stats.resets;
      }
      c.parse_done = true;
      enqueue(c, SlotKind::reset, 0, false, false, {}, delay);
      return;
    }
    if (chance(o.timeout_rate)) {
      std::lock_guard lk(stats_mu);
      ++stats.timeouts;
      c.stalled = true;  // the connection hangs from here on, as a stuck server's would
      return;
    }
    bool malformed = chance(o.malformed_rate);

    switch (ep) {
      case kDocsList: status = docs_list(req); break;
      case kDoc: status = doc(req, param, retry_after); break;
      case kBig: status = big(); break;
      case kEmbed: status = embeddings(tokens); break;
      case kGemini: status = gemini_embeddings(tokens); break;
      case kBulk: status = bulk(req.body, {}); break;
      case kIndexBulk: status = bulk(req.body, param); break;
      case kSefIndex: status = sefaria_index(); break;
      case kSefText: status = sefaria_text(req, param); break;
      case kSefShape: status = sefaria_shape(param); break;
      case kOaWorks: status = openalex_works(req); break;
      default: status = 404; error_body("not found"); break;
    }
    if (malformed && status == 200 && body.size() >= 2) body.resize(body.size() / 2);
    finish(c, ep, kind, status, retry_after, close, delay);
  }

  void finish(Conn& c, Ep ep, SlotKind kind, int status, bool retry_after, bool close,
              int64_t delay) {
    {
      std::lock_guard lk(stats_mu);
      stats.eps[ep].count_status(status);
    }
    enqueue(c, kind, status, retry_after, close, body, delay);
  }

  // ---- endpoints ----

  bool int_param(std::string_view query, std::string_view key, uint64_t def, uint64_t& v) {
    std::string_view raw;
    if (!find_param(query, key, raw)) {
      v = def;
      return true;
    }
    return parse_u64(raw, v);
  }

  int docs_list(const Request& req) {
    uint64_t page = 0, per_page = 0;
    if (!int_param(req.query, "page", 1, page) || page < 1 || page > (uint64_t{1} << 40)) {
      error_body("page must be an integer >= 1");
      return 400;
    }
    if (!int_param(req.query, "per_page", 100, per_page) || per_page < 1 || per_page > 1000) {
      error_body("per_page must be between 1 and 1000");
      return 400;
    }
    body.clear();
    body.append("{\"items\":[");
    uint64_t first = (page - 1) * per_page + 1;
    for (uint64_t n = first; n < first + per_page && n <= o.docs; ++n) {
      if (n != first) body.push_back(',');
      body.append("{\"id\":\"");
      format_doc_id(body, n);
      body.append("\"}");
    }
    body.append("],\"page\":");
    append_uint(body, page);
    body.append(",\"per_page\":");
    append_uint(body, per_page);
    body.append(",\"total\":");
    append_uint(body, o.docs);
    body.push_back('}');
    return 200;
  }

  // 1..docs for a canonical id, else 0.
  uint64_t doc_number(std::string_view id) {
    if (!id.starts_with("doc-")) return 0;
    uint64_t n = 0;
    if (!parse_u64(id.substr(4), n) || n < 1 || n > o.docs) return 0;
    tmp.clear();
    format_doc_id(tmp, n);
    return tmp == id ? n : 0;
  }

  int doc(const Request& req, std::string_view raw_id, bool& retry_after) {
    url_decode(raw_id, tmp2, false);
    std::string_view id = tmp2;
    std::string_view forced;
    if (find_param(req.query, "status", forced)) {
      uint64_t s = 0;
      if (!parse_u64(forced, s) || s < 200 || s > 599) {
        error_body("status must be between 200 and 599");
        return 400;
      }
      if (s != 200) {
        body.clear();
        body.append("{\"error\":\"forced status ");
        append_uint(body, s);
        body.append("\",\"id\":");
        json::append_quoted(body, id);
        body.push_back('}');
        retry_after = s == 429 || s == 503;
        return int(s);
      }
    }
    uint64_t n = doc_number(id);
    if (n == 0) {
      error_body("no such doc");
      return 404;
    }
    uint64_t h = text::stable_hash64(id, o.seed);
    body.clear();
    body.reserve(o.doc_bytes + 128);
    body.append("{\"id\":\"");
    body.append(id);
    body.append("\",\"title\":\"");
    gen_title(body, h ^ 0x7469746c65ULL, n);
    body.append("\",\"text\":\"");
    gen_text(body, h, o.doc_bytes);
    body.append("\"}");
    return 200;
  }

  int big() {
    if (big_body.empty()) {
      big_body.reserve(kBigBytes);
      big_body.append("{\"data\":\"");
      gen_text(big_body, o.seed, kBigBytes - big_body.size() - 2);
      big_body.append("\"}");
    }
    body.assign(big_body);
    return 200;
  }

  // Parses an embeddings request into `inputs` (views into parse_buf) and counts tokens.
  bool parse_embeddings(std::string_view b, int64_t& tokens, std::string_view& err) {
    parse_buf.assign(b);
    pool.Clear();
    rapidjson::Document d(&pool);
    d.ParseInsitu(parse_buf.data());
    inputs.clear();
    emb_model = "sim-embedding";
    emb_dim = kDefaultEmbeddingDim;
    if (d.HasParseError() || !d.IsObject()) {
      err = "request body must be a JSON object";
      return false;
    }
    auto in = d.FindMember("input");
    if (in == d.MemberEnd()) {
      err = "'input' is required";
      return false;
    }
    if (in->value.IsString()) {
      inputs.emplace_back(in->value.GetString(), in->value.GetStringLength());
    } else if (in->value.IsArray()) {
      if (in->value.Empty()) {
        err = "'input' must not be empty";
        return false;
      }
      for (auto& v : in->value.GetArray()) {
        if (!v.IsString()) {
          err = "'input' must be a string or an array of strings";
          return false;
        }
        inputs.emplace_back(v.GetString(), v.GetStringLength());
      }
    } else {
      err = "'input' must be a string or an array of strings";
      return false;
    }
    auto m = d.FindMember("model");
    if (m != d.MemberEnd()) {
      if (!m->value.IsString()) {
        err = "'model' must be a string";
        return false;
      }
      emb_model = std::string_view(m->value.GetString(), m->value.GetStringLength());
    }
    auto dim = d.FindMember("dimensions");
    if (dim != d.MemberEnd() && !dim->value.IsNull()) {
      if (!dim->value.IsInt() || dim->value.GetInt() < 1 || dim->value.GetInt() > kMaxEmbeddingDim) {
        err = "'dimensions' must be an integer between 1 and 8192";
        return false;
      }
      emb_dim = dim->value.GetInt();
    }
    tokens = 0;
    for (auto s : inputs) tokens += int64_t((text::count_code_points(s) + 3) / 4);
    return true;
  }
  std::string_view emb_model;  // into parse_buf (in-situ strings are NUL-terminated there)
  int emb_dim = kDefaultEmbeddingDim;

  int embeddings(int64_t tokens) {
    body.clear();
    body.reserve(inputs.size() * size_t(emb_dim) * 12 + 256);
    body.append("{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (i) body.push_back(',');
      body.append("{\"object\":\"embedding\",\"index\":");
      append_uint(body, i);
      body.append(",\"embedding\":");
      append_vector(inputs[i]);
      body.push_back('}');
    }
    body.append("],\"model\":");
    json::append_quoted(body, emb_model);
    body.append(",\"usage\":{\"prompt_tokens\":");
    append_int(body, tokens);
    body.append(",\"total_tokens\":");
    append_int(body, tokens);
    body.append("}}");
    count_embeddings(tokens);
    return 200;
  }

  void count_embeddings(int64_t tokens) {
    std::lock_guard lk(stats_mu);
    stats.emb_inputs += inputs.size();
    stats.emb_tokens += uint64_t(tokens);
  }

  // The deterministic unit vector of `input` (emb_dim floats from its hash) as a JSON array:
  // the same text gets the same vector from both embedding endpoints.
  void append_vector(std::string_view input) {
    vec.resize(size_t(emb_dim));
    uint64_t s = text::stable_hash64(input);
    double norm = 0;
    for (auto& x : vec) {
      x = float(unit(s) * 2 - 1);
      norm += double(x) * double(x);
    }
    float inv = norm > 0 ? float(1 / std::sqrt(norm)) : 0.f;
    body.push_back('[');
    for (size_t k = 0; k < vec.size(); ++k) {
      if (k) body.push_back(',');
      append_float(body, vec[k] * inv);
    }
    body.push_back(']');
  }

  // Google APIs' error shape: {"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}}.
  void google_error(int code, std::string_view msg) {
    body.assign("{\"error\":{\"code\":");
    append_int(body, code);
    body.append(",\"message\":");
    json::append_quoted(body, msg);
    body.append(",\"status\":\"");
    body.append(code == 429 ? "RESOURCE_EXHAUSTED" : code == 403 ? "PERMISSION_DENIED" : "INVALID_ARGUMENT");
    body.append("\"}}");
  }

  // Parses a Gemini batchEmbedContents request into `inputs`, as the real API checks it: at most
  // 100 requests, each naming the model of the URL, one text part or more (joined).
  bool parse_gemini(std::string_view b, std::string_view url_model, int64_t& tokens, std::string_view& err) {
    parse_buf.assign(b);
    pool.Clear();
    rapidjson::Document d(&pool);
    d.ParseInsitu(parse_buf.data());
    inputs.clear();
    joined.clear();
    emb_model = url_model;
    emb_dim = kDefaultEmbeddingDim;
    if (d.HasParseError() || !d.IsObject()) {
      err = "Invalid JSON payload received.";
      return false;
    }
    auto reqs = d.FindMember("requests");
    if (reqs == d.MemberEnd() || !reqs->value.IsArray() || reqs->value.Empty()) {
      err = "* BatchEmbedContentsRequest.requests: requests must not be empty";
      return false;
    }
    if (reqs->value.Size() > 100) {
      err = "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch";
      return false;
    }
    std::string want = "models/";
    want.append(url_model);
    auto member = [](const rapidjson::Value& v, const char* name) -> const rapidjson::Value* {
      if (!v.IsObject()) return nullptr;
      auto it = v.FindMember(name);
      return it == v.MemberEnd() ? nullptr : &it->value;
    };
    int dim = 0;
    for (auto& r : reqs->value.GetArray()) {
      const rapidjson::Value* m = member(r, "model");
      if (!m || !m->IsString() || m->GetString() != want) {
        err = "* BatchEmbedContentsRequest.model: each request's model must match the model of the call";
        return false;
      }
      const rapidjson::Value* content = member(r, "content");
      const rapidjson::Value* parts = content ? member(*content, "parts") : nullptr;
      if (!parts || !parts->IsArray() || parts->Empty()) {
        err = "* BatchEmbedContentsRequest.requests[].content.parts: contents are required";
        return false;
      }
      std::string text;
      for (auto& part : parts->GetArray()) {
        const rapidjson::Value* t = member(part, "text");
        if (!t || !t->IsString()) {
          err = "* BatchEmbedContentsRequest.requests[].content.parts[].text: a text part is required";
          return false;
        }
        text.append(t->GetString(), t->GetStringLength());
      }
      joined.push_back(std::move(text));
      const rapidjson::Value* od = member(r, "outputDimensionality");
      int this_dim = kDefaultEmbeddingDim;
      if (od) {
        if (!od->IsInt() || od->GetInt() < 1 || od->GetInt() > kMaxEmbeddingDim) {
          err = "* BatchEmbedContentsRequest.requests[].output_dimensionality: must be between 1 and 8192";
          return false;
        }
        this_dim = od->GetInt();
      }
      if (dim != 0 && this_dim != dim) {
        err = "* BatchEmbedContentsRequest.requests[].output_dimensionality: must be the same for every request";
        return false;
      }
      dim = this_dim;
    }
    emb_model_buf.assign(url_model);
    emb_model = emb_model_buf;
    emb_dim = dim;
    tokens = 0;
    for (const auto& t : joined) {
      inputs.emplace_back(t);
      tokens += int64_t((text::count_code_points(t) + 3) / 4);
    }
    return true;
  }
  std::vector<std::string> joined;  // Gemini inputs (parts joined); `inputs` views into it
  std::string emb_model_buf;

  int gemini_embeddings(int64_t tokens) {
    body.clear();
    body.reserve(inputs.size() * size_t(emb_dim) * 12 + 64);
    body.append("{\"embeddings\":[");
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (i) body.push_back(',');
      body.append("{\"values\":");
      append_vector(inputs[i]);
      body.push_back('}');
    }
    body.append("]}");
    count_embeddings(tokens);
    return 200;
  }

  // Elasticsearch _bulk: NDJSON action/metadata lines, each index/create/update followed by a
  // source line. Items answer 201 created / 200 updated / 409 / 404 / 400 / 429 (bulk_fail_rate).
  int bulk(std::string_view b, std::string_view path_index) {
    parse_buf.assign(b);
    parse_buf.push_back('\n');
    char* p = parse_buf.data();
    char* end = p + parse_buf.size();
    auto next_line = [&](char*& line, size_t& len) -> bool {
      for (;;) {
        if (p >= end) return false;
        char* nl = static_cast<char*>(std::memchr(p, '\n', size_t(end - p)));
        line = p;
        len = size_t(nl - p);
        *nl = '\0';
        p = nl + 1;
        std::string_view sv(line, len);
        if (trim(sv).empty() || sv == "\r") continue;
        return true;
      }
    };
    items.clear();
    bool errors = false;
    size_t count = 0;
    uint64_t new_distinct = 0, new_multi = 0;
    char* line = nullptr;
    size_t len = 0;
    while (next_line(line, len)) {
      pool.Clear();
      rapidjson::Document action(&pool);
      action.ParseInsitu(line);
      if (action.HasParseError() || !action.IsObject() || action.MemberCount() != 1 ||
          !action.MemberBegin()->value.IsObject()) {
        error_body("Malformed action/metadata line [" + std::to_string(count + 1) +
                   "], expected START_OBJECT");
        return 400;
      }
      std::string_view op(action.MemberBegin()->name.GetString(),
                          action.MemberBegin()->name.GetStringLength());
      bool has_source = op == "index" || op == "create" || op == "update";
      if (!has_source && op != "delete") {
        error_body("Malformed action/metadata line [" + std::to_string(count + 1) +
                   "], unknown action");
        return 400;
      }
      const auto& meta = action.MemberBegin()->value;
      std::string_view index = path_index, id;
      if (auto it = meta.FindMember("_index"); it != meta.MemberEnd() && it->value.IsString())
        index = std::string_view(it->value.GetString(), it->value.GetStringLength());
      if (auto it = meta.FindMember("_id"); it != meta.MemberEnd() && it->value.IsString())
        id = std::string_view(it->value.GetString(), it->value.GetStringLength());
      bool source_ok = true;
      if (has_source) {
        char* src = nullptr;
        size_t src_len = 0;
        if (!next_line(src, src_len)) {
          error_body("The bulk request must be terminated by a newline [\\n]");
          return 400;
        }
        source_ok = is_json_object(src);
      }
      std::string auto_id_buf;
      if (id.empty() && op != "delete" && op != "update") {
        auto_id_buf = "sim" + std::to_string(++auto_id);
        id = auto_id_buf;
      }
      int status = 0;
      const char* result = nullptr;
      const char* etype = nullptr;
      const char* ereason = nullptr;
      uint32_t version = 1;
      if (index.empty()) {
        status = 400;
        etype = "action_request_validation_exception";
        ereason = "Validation Failed: 1: index is missing;";
      } else if (id.empty()) {
        status = 400;
        etype = "action_request_validation_exception";
        ereason = "Validation Failed: 1: id is missing;";
      } else if (!source_ok) {
        status = 400;
        etype = "mapper_parsing_exception";
        ereason = "failed to parse";
      } else if (chance(o.bulk_fail_rate)) {
        status = 429;
        etype = "es_rejected_execution_exception";
        ereason = "rejected execution of coordinating operation (simulated)";
      } else {
        std::string key;
        key.reserve(index.size() + id.size() + 1);
        key.append(index).push_back('\x1f');
        key.append(id);
        if (op == "delete") {
          auto it = bulk_ids.find(key);
          if (it == bulk_ids.end() || !it->second.live) {
            status = 404;
            result = "not_found";
          } else {
            it->second.live = false;
            status = 200;
            result = "deleted";
            version = it->second.times + 1;
          }
        } else {
          auto it = bulk_ids.find(key);
          bool exists = it != bulk_ids.end() && it->second.live;
          if (op == "create" && exists) {
            status = 409;
            etype = "version_conflict_engine_exception";
            ereason = "document already exists";
          } else if (op == "update" && !exists) {
            status = 404;
            etype = "document_missing_exception";
            ereason = "document missing";
          } else {
            if (it == bulk_ids.end()) {
              it = bulk_ids.emplace(std::move(key), BulkEntry{}).first;
              ++new_distinct;
            }
            if (++it->second.times == 2) ++new_multi;
            it->second.live = true;
            version = it->second.times;
            status = exists ? 200 : 201;
            result = exists ? "updated" : "created";
          }
        }
      }
      if (count++) items.push_back(',');
      items.append("{\"");
      items.append(op);
      items.append("\":{\"_index\":");
      json::append_quoted(items, index);
      items.append(",\"_id\":");
      json::append_quoted(items, id);
      if (result) {
        items.append(",\"_version\":");
        append_uint(items, version);
        items.append(",\"result\":\"");
        items.append(result);
        items.push_back('"');
      }
      items.append(",\"status\":");
      append_int(items, status);
      if (etype) {
        errors = true;
        items.append(",\"error\":{\"type\":\"");
        items.append(etype);
        items.append("\",\"reason\":");
        json::append_quoted(items, ereason);
        items.push_back('}');
      }
      items.append("}}");
    }
    body.clear();
    body.reserve(items.size() + 64);
    body.append("{\"took\":1,\"errors\":");
    body.append(errors ? "true" : "false");
    body.append(",\"items\":[");
    body.append(items);
    body.append("]}");
    if (new_distinct || new_multi) {
      std::lock_guard lk(stats_mu);
      stats.bulk_distinct += new_distinct;
      stats.bulk_multi += new_multi;
    }
    return 200;
  }

  // ---- Sefaria ----

  std::string sef_index_body;

  static const char* he_category(std::string_view en) {
    static const std::pair<std::string_view, const char*> names[] = {
        {"Tanakh", "תנ״ך"},    {"Torah", "תורה"},         {"Writings", "כתובים"},
        {"Talmud", "תלמוד"},   {"Bavli", "בבלי"},         {"Seder Zeraim", "סדר זרעים"},
        {"Commentary", "מפרשים"}, {"Rashi", "רש״י"},       {"Liturgy", "תפילה"},
        {"Haggadah", "הגדה"}};
    for (auto& [e, h] : names)
      if (e == en) return h;
    return "";
  }

  struct CatNode {
    std::string name;
    std::vector<CatNode> cats;
    std::vector<const SefBook*> books;
    bool collection = false;  // holds the collection leaf (a title that is not a text)
  };

  void emit_category(std::string& out, const CatNode& n) {
    out.append("{\"category\":");
    json::append_quoted(out, n.name);
    out.append(",\"heCategory\":");
    json::append_quoted(out, he_category(n.name));
    out.append(",\"contents\":[");
    bool first = true;
    for (const SefBook* b : n.books) {
      if (!first) out.push_back(',');
      first = false;
      out.append("{\"title\":");
      json::append_quoted(out, b->title);
      out.append(",\"heTitle\":");
      json::append_quoted(out, b->he_title);
      out.append(",\"categories\":[");
      for (size_t i = 0; i < b->categories.size(); ++i) {
        if (i) out.push_back(',');
        json::append_quoted(out, b->categories[i]);
      }
      out.append("],\"primary_category\":");
      json::append_quoted(out, b->categories[0]);
      out.append(",\"enShortDesc\":\"A simulated text.\"}");
    }
    if (n.collection) {
      if (!first) out.push_back(',');
      first = false;
      out.append("{\"title\":\"Siddur Collection\",\"heTitle\":\"סידור\",\"isCollection\":true,"
                 "\"nodeType\":\"TocCollectionNode\",\"enShortDesc\":\"Not a text: skip it.\"}");
    }
    for (const CatNode& c : n.cats) {
      if (!first) out.push_back(',');
      first = false;
      emit_category(out, c);
    }
    out.append("]}");
  }

  int sefaria_index() {
    if (sef_index_body.empty()) {
      CatNode root;
      for (const SefBook& b : sef_library) {
        CatNode* n = &root;
        for (const char* cat : b.categories) {
          auto it = std::find_if(n->cats.begin(), n->cats.end(),
                                 [&](const CatNode& c) { return c.name == cat; });
          if (it == n->cats.end()) {
            n->cats.push_back(CatNode{cat, {}, {}, false});
            it = n->cats.end() - 1;
          }
          n = &*it;
        }
        n->books.push_back(&b);
        if (b.categories[0] == std::string_view("Liturgy")) n->collection = true;
      }
      sef_index_body.push_back('[');
      for (size_t i = 0; i < root.cats.size(); ++i) {
        if (i) sef_index_body.push_back(',');
        emit_category(sef_index_body, root.cats[i]);
      }
      sef_index_body.push_back(']');
    }
    body.assign(sef_index_body);
    return 200;
  }

  struct SefRef {
    const SefBook* book = nullptr;
    int node = -1;         // complex books: which node
    std::vector<int> idx;  // 0-based address below the book (or node)
  };

  static int sef_depth(const SefBook& b) {
    return b.kind == SefKind::depth3 ? 3 : b.kind == SefKind::complex ? 1 : 2;
  }
  static std::string talmud_label(int i) {
    return std::to_string(i / 2 + 1) + (i % 2 ? "b" : "a");
  }
  // Children under an address (size of the next level), or -1 past the bottom.
  static int sef_count(const SefBook& b, int node, const std::vector<int>& p) {
    switch (b.kind) {
      case SefKind::simple:
      case SefKind::talmud:
        if (p.empty()) return int(b.chapters.size());
        if (p.size() == 1) return b.chapters[size_t(p[0])];
        return -1;
      case SefKind::depth3:
        if (p.empty()) return int(b.nested.size());
        if (p.size() == 1) return int(b.nested[size_t(p[0])].size());
        if (p.size() == 2) return b.nested[size_t(p[0])][size_t(p[1])];
        return -1;
      case SefKind::complex:
        return p.empty() ? b.nodes[size_t(node)].segments : -1;
    }
    return -1;
  }
  static std::vector<const char*> sef_section_names(const SefBook& b) {
    switch (b.kind) {
      case SefKind::simple: return {"Chapter", "Verse"};
      case SefKind::talmud: return {"Daf", "Line"};
      case SefKind::depth3: return {"Chapter", "Verse", "Comment"};
      case SefKind::complex: return {"Paragraph"};
    }
    return {};
  }
  std::string sef_ref_string(const SefRef& r) {
    std::string s = r.book->title;
    if (r.node >= 0) s.append(", ").append(r.book->nodes[size_t(r.node)].name);
    for (size_t i = 0; i < r.idx.size(); ++i) {
      s.push_back(i == 0 ? ' ' : ':');
      if (i == 0 && r.book->kind == SefKind::talmud) s.append(talmud_label(r.idx[0]));
      else s.append(std::to_string(r.idx[i] + 1));
    }
    return s;
  }

  // 0 when parsed; else an HTTP status with body set to the error.
  int sef_parse_ref(std::string_view ref, SefRef& r) {
    // The longest title that ends where the ref ends or at one of " .,:".
    const SefBook* best = nullptr;
    size_t best_len = 0;
    for (size_t k = ref.size(); k > 0 && !best; --k) {
      if (k < ref.size() && (ref[k] == '\0' || !std::strchr(" .,:", ref[k]))) continue;
      if (auto it = sef_by_title.find(ref.substr(0, k)); it != sef_by_title.end()) {
        best = it->second;
        best_len = k;
      }
    }
    auto not_found = [&] {
      error_body("Could not find title in reference: " + std::string(ref));
      return 404;
    };
    if (!best) return not_found();
    r.book = best;
    std::string_view rest = ref.substr(best_len);
    if (best->kind == SefKind::complex) {
      if (rest.empty()) {
        error_body("Can not get text for complex book-level ref " + std::string(ref) +
                   ": request one of its nodes");
        return 400;
      }
      if (!rest.starts_with(", ")) return not_found();
      rest.remove_prefix(2);
      for (size_t i = 0; i < best->nodes.size(); ++i) {
        std::string_view name = best->nodes[i].name;
        if (rest.starts_with(name) && (rest.size() == name.size() || std::strchr(" .:", rest[name.size()]))) {
          r.node = int(i);
          rest.remove_prefix(name.size());
          break;
        }
      }
      if (r.node < 0) return not_found();
    }
    while (!rest.empty()) {
      if (!std::strchr(" .:", rest[0])) return not_found();
      rest.remove_prefix(1);
      size_t e = rest.find_first_of(" .:");
      std::string_view tok = rest.substr(0, e);
      rest = e == std::string_view::npos ? std::string_view{} : rest.substr(e);
      uint64_t n = 0;
      int v = -1;
      if (r.idx.empty() && best->kind == SefKind::talmud) {
        if (tok.size() >= 2 && (tok.back() == 'a' || tok.back() == 'b') &&
            parse_u64(tok.substr(0, tok.size() - 1), n) && n >= 1 && n < 100000)
          v = int(n - 1) * 2 + (tok.back() == 'b');
      } else if (parse_u64(tok, n) && n >= 1 && n < 100000) {
        v = int(n - 1);
      }
      if (v < 0 || int(r.idx.size()) >= sef_depth(*best)) {
        error_body("Unable to parse reference: " + std::string(ref));
        return 400;
      }
      // Range check against the level above.
      int count = sef_count(*best, r.node, r.idx);
      if (v >= count) {
        auto names = sef_section_names(*best);
        std::string where = r.idx.empty() ? std::string(best->title) : sef_ref_string(r);
        std::string last = r.idx.empty() && best->kind == SefKind::talmud ? talmud_label(count - 1)
                                                                          : std::to_string(count);
        if (count == 0) error_body("We have no text for " + std::string(ref) + ".");
        else error_body(where + " ends at " + names[r.idx.size()] + " " + last + ".");
        return 404;
      }
      r.idx.push_back(v);
    }
    return 0;
  }

  // Section-level refs of a book in order, with whether each is empty (rendered once a book).
  const SefSections& sef_sections(const SefBook& b) {
    auto [it, fresh] = sef_sections_cache.try_emplace(&b);
    if (fresh) {
      SefSections& s = it->second;
      s.list = sef_render_sections(b);
      for (size_t i = 0; i < s.list.size(); ++i) s.by_ref.emplace(s.list[i].first, int(i));
    }
    return it->second;
  }

  std::vector<std::pair<std::string, bool>> sef_render_sections(const SefBook& b) {
    std::vector<std::pair<std::string, bool>> out;
    SefRef r;
    r.book = &b;
    if (b.kind == SefKind::complex) {
      for (size_t i = 0; i < b.nodes.size(); ++i) {
        r.node = int(i);
        out.emplace_back(sef_ref_string(r), b.nodes[i].segments == 0);
      }
    } else if (b.kind == SefKind::depth3) {
      for (size_t c = 0; c < b.nested.size(); ++c)
        for (size_t v = 0; v < b.nested[c].size(); ++v) {
          r.idx = {int(c), int(v)};
          out.emplace_back(sef_ref_string(r), b.nested[c][v] == 0);
        }
    } else {
      for (size_t c = 0; c < b.chapters.size(); ++c) {
        r.idx = {int(c)};
        out.emplace_back(sef_ref_string(r), b.chapters[c] == 0);
      }
    }
    return out;
  }

  void sef_emit_text(std::string& out, const SefRef& r, std::vector<int>& p, bool english,
                     bool drop_tags, bool drop_footnotes) {
    const SefBook& b = *r.book;
    if (int(p.size()) == sef_depth(b)) {
      uint64_t st = text::stable_hash64(b.title, o.seed) ^ (uint64_t(r.node + 2) * 0x9e3779b97f4a7c15ULL);
      for (int x : p) st = st * 1000003 + uint64_t(x) + 1;
      st ^= english ? 0xe11 : 0x4e;
      tmp.clear();
      uint64_t probe = st;
      if (!(english && splitmix64(probe) % 12 == 0))  // some translations skip a segment
        sef_segment(tmp, st, english, drop_tags, drop_footnotes);
      json::append_quoted(out, tmp);
      return;
    }
    if (int(p.size()) != sef_section_level(b)) {
      sef_emit_array(out, r, p, english, drop_tags, drop_footnotes);
      return;
    }
    // A section: from the cache, keyed by book, node, address, version and format.
    std::string key(reinterpret_cast<const char*>(&r.book), sizeof r.book);
    for (int x : std::initializer_list<int>{r.node, english, drop_tags, drop_footnotes})
      key.push_back(char(x + 1));
    for (int x : p) key.append(reinterpret_cast<const char*>(&x), sizeof x);
    if (auto it = sef_text_cache.find(key); it != sef_text_cache.end()) {
      out.append(it->second);
      return;
    }
    std::string text;
    sef_emit_array(text, r, p, english, drop_tags, drop_footnotes);
    if (sef_text_bytes + text.size() > kSefTextCacheBytes) {
      sef_text_cache.clear();
      sef_text_bytes = 0;
    }
    sef_text_bytes += key.size() + text.size();
    out.append(text);
    sef_text_cache.emplace(std::move(key), std::move(text));
  }

  void sef_emit_array(std::string& out, const SefRef& r, std::vector<int>& p, bool english,
                      bool drop_tags, bool drop_footnotes) {
    out.push_back('[');
    int n = sef_count(*r.book, r.node, p);
    for (int i = 0; i < n; ++i) {
      if (i) out.push_back(',');
      p.push_back(i);
      sef_emit_text(out, r, p, english, drop_tags, drop_footnotes);
      p.pop_back();
    }
    out.push_back(']');
  }

  // Depth of the section level (refs that `next` walks): chapters, a depth-3 book's verses, or a
  // complex book's nodes.
  static int sef_section_level(const SefBook& b) {
    return b.kind == SefKind::depth3 ? 2 : b.kind == SefKind::complex ? 0 : 1;
  }

  static constexpr std::string_view kSefHe = "Sim Hebrew Edition";
  static constexpr std::string_view kSefEn = "Sim English Translation";

  void sef_version_meta(std::string& out, bool english) {
    out.append("\"language\":");
    out.append(english ? "\"en\"" : "\"he\"");
    out.append(",\"versionTitle\":");
    json::append_quoted(out, english ? kSefEn : kSefHe);
    out.append(",\"versionSource\":\"https://example.org/sluice-sim\",\"languageFamilyName\":");
    out.append(english ? "\"english\"" : "\"hebrew\"");
    out.append(",\"actualLanguage\":");
    out.append(english ? "\"en\"" : "\"he\"");
    out.append(",\"direction\":");
    out.append(english ? "\"ltr\"" : "\"rtl\"");
    out.append(",\"isPrimary\":");
    out.append(english ? "false" : "true");
    out.append(",\"isSource\":");
    out.append(english ? "false" : "true");
  }

  int sefaria_text(const Request& req, std::string_view raw_ref) {
    url_decode(raw_ref, tmp2, true);
    std::string ref = tmp2;
    std::replace(ref.begin(), ref.end(), '_', ' ');
    bool drop_tags = false, drop_footnotes = false;
    std::string_view fmt;
    if (find_param(req.query, "return_format", fmt)) {
      if (fmt == "text_only") drop_tags = drop_footnotes = true;
      else if (fmt == "strip_only_footnotes") drop_footnotes = true;
      else if (fmt != "default" && fmt != "wrap_all_entities") {
        error_body("return_format should be one of those formats: default, wrap_all_entities, "
                   "text_only, strip_only_footnotes.");
        return 400;
      }
    }
    SefRef r;
    if (int st = sef_parse_ref(ref, r)) return st;
    const SefBook& b = *r.book;

    // Versions asked for, in order; no parameter means the primary (Hebrew) version only.
    std::vector<bool> langs;  // true = english
    std::vector<std::string> missing;
    bool any = false;
    for_each_param(req.query, [&](std::string_view k, std::string_view v) {
      if (k != "version") return;
      any = true;
      std::string val;
      url_decode(v, val, true);
      std::string fam = val.substr(0, val.find('|'));
      std::string title = val.find('|') == std::string::npos ? "" : val.substr(val.find('|') + 1);
      for (auto& ch : fam) ch = lower(ch);
      auto add = [&](bool en) {
        if (std::find(langs.begin(), langs.end(), en) == langs.end()) langs.push_back(en);
      };
      if (fam == "all") {
        add(false);
        add(true);
      } else if ((fam == "english" || fam == "translation") && (title.empty() || title == kSefEn)) {
        add(true);
      } else if ((fam == "hebrew" || fam == "primary" || fam == "source") &&
                 (title.empty() || title == kSefHe)) {
        add(false);
      } else {
        missing.push_back(val);
      }
    });
    if (!any) langs.push_back(false);

    int depth = sef_depth(b);
    body.clear();
    body.append("{\"versions\":[");
    for (size_t i = 0; i < langs.size(); ++i) {
      if (i) body.push_back(',');
      body.push_back('{');
      sef_version_meta(body, langs[i]);
      body.append(",\"text\":");
      std::vector<int> p = r.idx;
      sef_emit_text(body, r, p, langs[i], drop_tags, drop_footnotes);
      body.push_back('}');
    }
    body.append("],\"available_versions\":[{");
    sef_version_meta(body, false);
    body.append("},{");
    sef_version_meta(body, true);
    body.append("}]");
    std::string canonical = sef_ref_string(r);
    body.append(",\"ref\":");
    json::append_quoted(body, canonical);
    body.append(",\"heRef\":");
    json::append_quoted(body, canonical);
    for (const char* key : {",\"sections\":[", ",\"toSections\":["}) {
      body.append(key);
      for (size_t i = 0; i < r.idx.size(); ++i) {
        if (i) body.push_back(',');
        if (i == 0 && b.kind == SefKind::talmud) json::append_quoted(body, talmud_label(r.idx[0]));
        else append_int(body, r.idx[i] + 1);
      }
      body.push_back(']');
    }
    // Navigation between section-level refs, skipping empty sections.
    const SefSections& book_sections = sef_sections(b);
    const auto& sections = book_sections.list;
    int section_level = sef_section_level(b);
    int cur = -1;
    if (int(r.idx.size()) >= section_level) {
      SefRef sr = r;
      sr.idx.resize(size_t(section_level));
      std::string sref = sef_ref_string(sr);
      auto it = book_sections.by_ref.find(sref);
      if (it != book_sections.by_ref.end()) cur = it->second;
      body.append(",\"sectionRef\":");
      json::append_quoted(body, sref);
    }
    auto nav = [&](const char* key, int step) {
      body.append(key);
      int i = cur;
      if (cur >= 0)
        for (i += step; i >= 0 && i < int(sections.size()) && sections[size_t(i)].second; i += step) {
        }
      if (cur >= 0 && i >= 0 && i < int(sections.size())) json::append_quoted(body, sections[size_t(i)].first);
      else body.append("null");
    };
    nav(",\"next\":", 1);
    nav(",\"prev\":", -1);
    body.append(",\"title\":");
    json::append_quoted(body, b.title);
    body.append(",\"book\":");
    json::append_quoted(body, b.title);
    body.append(",\"indexTitle\":");
    json::append_quoted(body, b.title);
    body.append(",\"heIndexTitle\":");
    json::append_quoted(body, b.he_title);
    body.append(",\"primary_category\":");
    json::append_quoted(body, b.categories[0]);
    body.append(",\"type\":");
    json::append_quoted(body, b.categories[0]);
    body.append(",\"categories\":[");
    for (size_t i = 0; i < b.categories.size(); ++i) {
      if (i) body.push_back(',');
      json::append_quoted(body, b.categories[i]);
    }
    body.append("],\"textDepth\":");
    append_int(body, depth);
    body.append(",\"sectionNames\":[");
    auto names = sef_section_names(b);
    for (size_t i = 0; i < names.size(); ++i) {
      if (i) body.push_back(',');
      json::append_quoted(body, names[i]);
    }
    body.append("],\"addressTypes\":[");
    for (size_t i = 0; i < names.size(); ++i) {
      if (i) body.push_back(',');
      body.append(i == 0 && b.kind == SefKind::talmud ? "\"Talmud\"" : "\"Integer\"");
    }
    body.append("],\"firstAvailableSectionRef\":");
    auto first = std::find_if(sections.begin(), sections.end(), [](auto& s) { return !s.second; });
    if (first == sections.end()) body.append("null");
    else json::append_quoted(body, first->first);
    body.append(",\"isComplex\":");
    body.append(b.kind == SefKind::complex ? "true" : "false");
    body.append(",\"warnings\":[");
    for (size_t i = 0; i < missing.size(); ++i) {
      if (i) body.push_back(',');
      body.push_back('{');
      json::append_quoted(body, missing[i]);
      body.append(":{\"warning_code\":103,\"message\":");
      json::append_quoted(body, "We do not have version named " + missing[i] + ".");
      body.append("}}");
    }
    body.append("]}");
    return 200;
  }

  int sefaria_shape(std::string_view raw_title) {
    url_decode(raw_title, tmp2, true);
    std::replace(tmp2.begin(), tmp2.end(), '_', ' ');
    auto it = sef_by_title.find(tmp2);
    const SefBook* b = it == sef_by_title.end() ? nullptr : it->second;
    if (!b) {
      error_body("Could not find index for " + tmp2);
      return 404;
    }
    body.clear();
    body.append("[{");
    if (b->kind == SefKind::complex) body.append("\"isComplex\":true,");
    body.append("\"section\":");
    json::append_quoted(body, b->categories[0]);
    body.append(",\"title\":");
    json::append_quoted(body, b->title);
    body.append(",\"heTitle\":");
    json::append_quoted(body, b->he_title);
    body.append(",\"book\":");
    json::append_quoted(body, b->title);
    body.append(",\"heBook\":");
    json::append_quoted(body, b->he_title);
    body.append(",\"length\":");
    switch (b->kind) {
      case SefKind::simple:
      case SefKind::talmud:
        append_uint(body, b->chapters.size());
        body.append(",\"chapters\":[");
        for (size_t i = 0; i < b->chapters.size(); ++i) {
          if (i) body.push_back(',');
          append_int(body, b->chapters[i]);
        }
        body.push_back(']');
        break;
      case SefKind::depth3:
        append_uint(body, b->nested.size());
        body.append(",\"chapters\":[");
        for (size_t i = 0; i < b->nested.size(); ++i) {
          if (i) body.push_back(',');
          body.push_back('[');
          for (size_t k = 0; k < b->nested[i].size(); ++k) {
            if (k) body.push_back(',');
            append_int(body, b->nested[i][k]);
          }
          body.push_back(']');
        }
        body.push_back(']');
        break;
      case SefKind::complex:
        append_uint(body, b->nodes.size());
        body.append(",\"chapters\":[");
        for (size_t i = 0; i < b->nodes.size(); ++i) {
          if (i) body.push_back(',');
          body.append("{\"title\":");
          json::append_quoted(body, std::string(b->title) + ", " + b->nodes[i].name);
          body.append(",\"heTitle\":");
          json::append_quoted(body, std::string(b->he_title) + ", " + b->nodes[i].he);
          body.append(",\"length\":");
          append_int(body, b->nodes[i].segments);
          body.append(",\"chapters\":[");
          append_int(body, b->nodes[i].segments);
          body.append("]}");
        }
        body.push_back(']');
        break;
    }
    body.append("}]");
    return 200;
  }

  // ---- OpenAlex ----

  std::string oa_cursor(uint64_t offset) {
    std::string c = "sim" + std::to_string(offset) + "x";
    char h[24];
    std::snprintf(h, sizeof h, "%08llx",
                  static_cast<unsigned long long>(text::stable_hash64(c, o.seed) & 0xffffffffULL));
    return c + h;
  }
  bool oa_decode_cursor(std::string_view c, uint64_t& offset) {
    if (!c.starts_with("sim")) return false;
    size_t x = c.find('x');
    if (x == std::string_view::npos || !parse_u64(c.substr(3, x - 3), offset)) return false;
    return oa_cursor(offset) == c;
  }
  void oa_error(int, std::string_view message) {
    body.clear();
    body.append("{\"error\":\"Invalid query parameters error.\",\"message\":");
    json::append_quoted(body, message);
    body.push_back('}');
  }

  void oa_work(std::string& out, uint64_t n) {
    uint64_t h = text::stable_hash64(std::to_string(n), o.seed ^ 0x0a1e);
    out.append("{\"id\":\"https://openalex.org/W");
    append_uint(out, 3000000000ULL + n);
    out.append("\",\"doi\":");
    if (n % 7 == 0) {
      out.append("null");
    } else {
      out.append("\"https://doi.org/10.5555/sim.");
      append_uint(out, n);
      out.push_back('"');
    }
    tmp.clear();
    uint64_t st = h;
    int words = 3 + int(splitmix64(st) % 6);
    for (int i = 0; i < words; ++i) {
      if (i) tmp.push_back(' ');
      std::string_view w = kWords[splitmix64(st) % kWordCount];
      bool italic = n % 4 == 0 && i == 1;  // titles may hold inline HTML
      if (italic) tmp.append("<i>");
      size_t pos = tmp.size();
      tmp.append(w);
      if (i == 0) tmp[pos] = char(tmp[pos] - 32);
      if (italic) tmp.append("</i>");
    }
    out.append(",\"title\":");
    json::append_quoted(out, tmp);
    out.append(",\"display_name\":");
    json::append_quoted(out, tmp);
    uint64_t year = 1990 + n % 35;
    out.append(",\"publication_year\":");
    append_uint(out, year);
    out.append(",\"publication_date\":\"");
    append_uint(out, year);
    out.append("-01-01\",\"type\":\"article\",\"language\":\"en\",\"cited_by_count\":");
    append_uint(out, splitmix64(st) % 500);
    out.append(",\"abstract_inverted_index\":");
    if (n % 5 == 0) {  // common upstream: no abstract
      out.append("null}");
      return;
    }
    tmp.clear();
    gen_text(tmp, h, 150 + size_t(splitmix64(st) % 400));
    while (!tmp.empty() && tmp.back() != ' ' && tmp.back() != '.') tmp.pop_back();  // whole words
    if (!tmp.empty() && tmp.back() == ' ') tmp.pop_back();
    std::vector<std::pair<std::string_view, std::vector<uint32_t>>> inv;
    std::string_view t = tmp;
    uint32_t pos = 0;
    while (!t.empty()) {
      size_t sp = t.find(' ');
      std::string_view w = t.substr(0, sp);
      t = sp == std::string_view::npos ? std::string_view{} : t.substr(sp + 1);
      if (w.empty()) continue;
      auto it = std::find_if(inv.begin(), inv.end(), [&](auto& e) { return e.first == w; });
      if (it == inv.end()) inv.push_back({w, {pos}});
      else it->second.push_back(pos);
      ++pos;
    }
    out.push_back('{');
    for (size_t i = 0; i < inv.size(); ++i) {
      if (i) out.push_back(',');
      json::append_quoted(out, inv[i].first);
      out.append(":[");
      for (size_t k = 0; k < inv[i].second.size(); ++k) {
        if (k) out.push_back(',');
        append_uint(out, inv[i].second[k]);
      }
      out.push_back(']');
    }
    out.append("}}");
  }

  int openalex_works(const Request& req) {
    std::string_view v;
    if (find_param(req.query, "api_key", v) && (v.empty() || v == "bad")) {
      body.assign("{\"error\":\"Invalid API key.\",\"message\":\"The api_key is not valid.\"}");
      return 401;
    }
    uint64_t per_page = 25;
    if (find_param(req.query, "per_page", v) || find_param(req.query, "per-page", v)) {
      if (!parse_u64(v, per_page) || per_page < 1 || per_page > 200) {
        oa_error(400, "per-page parameter must be between 1 and 200.");
        return 400;
      }
    }
    uint64_t offset = 0, page = 1;
    bool cursor_mode = false;
    if (find_param(req.query, "cursor", v)) {
      cursor_mode = true;
      url_decode(v, tmp2, false);
      if (tmp2 != "*" && !oa_decode_cursor(tmp2, offset)) {
        oa_error(400, "cursor is invalid: " + tmp2);
        return 400;
      }
    } else if (find_param(req.query, "page", v)) {
      if (!parse_u64(v, page) || page < 1) {
        oa_error(400, "page parameter must be an integer >= 1.");
        return 400;
      }
      if (page * per_page > 10000) {
        oa_error(400, "Maximum results size of 10,000 records is exceeded. Cursor pagination is "
                      "required for records beyond 10,000.");
        return 400;
      }
      offset = (page - 1) * per_page;
    }
    uint64_t end = std::min<uint64_t>(o.docs, offset + per_page);
    uint64_t got = end > offset ? end - offset : 0;
    body.clear();
    body.append("{\"meta\":{\"count\":");
    append_uint(body, o.docs);
    body.append(",\"db_response_time_ms\":7,\"page\":");
    if (cursor_mode) body.append("null");
    else append_uint(body, page);
    body.append(",\"per_page\":");
    append_uint(body, per_page);
    body.append(",\"next_cursor\":");
    if (cursor_mode && got == per_page) json::append_quoted(body, oa_cursor(end));
    else body.append("null");
    body.append(",\"groups_count\":null},\"results\":[");
    for (uint64_t n = offset + 1; n <= end; ++n) {
      if (n != offset + 1) body.push_back(',');
      oa_work(body, n);
    }
    body.append("],\"group_by\":[]}");
    return 200;
  }

  // ---- stats ----

  void stats_json_locked(std::string& out) const {
    out.append("{\"requests\":");
    append_uint(out, stats.requests);
    out.append(",\"by_endpoint\":{");
    bool first = true;
    for (int i = 0; i < kEpCount; ++i) {
      const EpStats& e = stats.eps[i];
      if (e.requests == 0) continue;
      if (!first) out.push_back(',');
      first = false;
      json::append_quoted(out, kEpNames[i]);
      out.append(":{\"requests\":");
      append_uint(out, e.requests);
      out.append(",\"statuses\":{");
      auto sorted = e.statuses;
      std::sort(sorted.begin(), sorted.end());
      for (size_t k = 0; k < sorted.size(); ++k) {
        if (k) out.push_back(',');
        out.push_back('"');
        append_int(out, sorted[k].first);
        out.append("\":");
        append_uint(out, sorted[k].second);
      }
      out.append("}}");
    }
    out.append("},\"peak_concurrent\":");
    append_uint(out, stats.peak);
    out.append(",\"in_flight\":");
    append_uint(out, stats.in_flight);
    out.append(",\"connections\":");
    append_uint(out, stats.connections);
    out.append(",\"resets\":");
    append_uint(out, stats.resets);
    out.append(",\"timeouts\":");
    append_uint(out, stats.timeouts);
    out.append(",\"bulk\":{\"distinct_ids\":");
    append_uint(out, stats.bulk_distinct);
    out.append(",\"ids_indexed_more_than_once\":");
    append_uint(out, stats.bulk_multi);
    out.append("},\"embeddings\":{\"inputs\":");
    append_uint(out, stats.emb_inputs);
    out.append(",\"tokens\":");
    append_uint(out, stats.emb_tokens);
    out.append("}}");
  }
};

SimServer::SimServer(SimOptions o) : _impl(std::make_unique<Impl>(std::move(o))) {}
SimServer::~SimServer() { stop(); }
int SimServer::start() { return _impl->start(); }
void SimServer::stop() { _impl->stop(); }
int SimServer::port() const { return _impl->bound_port.load(); }
std::string SimServer::stats_json() const {
  std::string out;
  std::lock_guard lk(_impl->stats_mu);
  _impl->stats_json_locked(out);
  return out;
}

namespace {
void ignore_signal(int) {}
}  // namespace

int run_sim_forever(const SimOptions& o) {
  // Block the signals before the loop thread starts so that it inherits the mask and only
  // sigwait below sees them. A handler is installed because a signal whose disposition is
  // SIG_IGN (inherited, e.g. by a background job of a script) is discarded, not queued.
  struct sigaction sa{}, old_int{}, old_term{};
  sa.sa_handler = ignore_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  struct Restore {
    struct sigaction* i;
    struct sigaction* t;
    ~Restore() {
      sigaction(SIGINT, i, nullptr);
      sigaction(SIGTERM, t, nullptr);
    }
  } restore{&old_int, &old_term};
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &set, &old);
  SimServer server(o);
  int port = 0;
  try {
    port = server.start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice sim: %s\n", e.what());
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return 1;
  }
  std::string host = o.bind;
  if (host.empty() || host == "0.0.0.0" || host == "::") host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  std::printf("listening on http://%s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  server.stop();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return 0;
}

}  // namespace sluice::sim
