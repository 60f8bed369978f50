// The simulated upstream's internals, shared by the sim/ sources and by nothing else: constants,
// the connection and request types (wire.hpp holds the parsing and formatting helpers,
// content.hpp the generated text), and SimServer::Impl, whose members are defined by subsystem:
//   server.cpp (lifecycle, epoll loop, stats), http1.cpp (HTTP/1.1 parsing and responses),
//   routes.cpp (routing and fault shaping: latency, rpm/tpm limits, injected faults),
//   docs.cpp, embeddings.cpp (OpenAI and Gemini), elasticsearch.cpp, sefaria.cpp, openalex.cpp.
// Everything but start/stop/stats runs on the sim's one loop thread.
#pragma once

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

#include "engine/json/json.hpp"
#include "engine/text/text.hpp"
#include "sim/content.hpp"
#include "sim/wire.hpp"

namespace sluice::sim {

constexpr size_t kMaxRequestBytes = size_t{16} << 20;  // head + body; larger -> 413
constexpr size_t kMaxHeaderBytes = size_t{64} << 10;   // head without terminator -> 431
constexpr size_t kBigBytes = size_t{5} << 20;
constexpr size_t kMaxPendingPerConn = 1024;         // queued responses before reads pause
constexpr size_t kMaxOutPerConn = size_t{8} << 20;  // unsent bytes before reads pause
constexpr size_t kReadChunk = size_t{64} << 10;
constexpr size_t kPoolBytes = size_t{64} << 10;
constexpr int kDefaultEmbeddingDim = 64;
constexpr int kMaxEmbeddingDim = 8192;

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
  std::vector<int> chapters;             // simple/talmud: segments per section
  std::vector<std::vector<int>> nested;  // depth3: per chapter, comments per verse
  std::vector<SefNode> nodes;            // complex: depth-1 nodes
};

// A small library with every shape the real one has: depth 2 (Tanakh), Talmud addresses with
// empty 1a/1b, depth 3 (a commentary with empty verses), a complex book and a collection leaf.
// Synthetic books (--sefaria-books): chapters each, of verses each.
constexpr int kSyntheticChapters = 20, kSyntheticVerses = 6;

const std::vector<SefBook>& sef_books();  // the fixed library (sefaria.cpp)
// Appends one segment's text, English or Hebrew, optionally with the markup Sefaria sends.
void sef_segment(std::string& out, uint64_t state, bool english, bool drop_tags, int index);

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
  kDeleteByQuery,
  kSefIndex,
  kSefText,
  kSefShape,
  kOaWorks,
  kOther,
  kEpCount
};
constexpr const char* kEpNames[kEpCount] = {"/docs",
                                            "/docs/{id}",
                                            "/big",
                                            "/stats",
                                            "/v1/embeddings",
                                            "/v1beta/models/{model}:batchEmbedContents",
                                            "/_bulk",
                                            "/{index}/_bulk",
                                            "/{index}/_delete_by_query",
                                            "/sefaria/api/index",
                                            "/sefaria/api/v3/texts/{ref}",
                                            "/sefaria/api/shape/{title}",
                                            "/openalex/works",
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
  uint64_t bulk_distinct = 0, bulk_multi = 0, bulk_live = 0;
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
  uint32_t events = 0;  // current epoll interest
  std::string in;       // unparsed input from in_off
  size_t in_off = 0;
  std::string out;  // bytes to send from out_off
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
  std::string_view body;          // inside Conn::in
  std::string_view goog_api_key;  // the x-goog-api-key header, inside Conn::in
  bool has_goog_api_key = false;
  bool keep_alive = true;
};

enum class ParseResult { need_more, ok, error };

struct BulkEntry {
  uint32_t times = 0;  // successful index/create operations
  bool live = false;
  std::string doc_id, run;  // the source's doc_id and sluice_run, for _delete_by_query
};

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
  std::unordered_map<std::string_view, const SefBook*>
      sef_by_title;  // a request must not scan them all
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
      sef_library.push_back({sef_titles.back().c_str(),
                             "ספר",
                             {"Synthetic"},
                             SefKind::simple,
                             std::vector<int>(kSyntheticChapters, kSyntheticVerses),
                             {},
                             {}});
    }
    for (const SefBook& b : sef_library) sef_by_title.emplace(b.title, &b);
    rng = o.seed ^ 0x5eed5eed5eedULL;
    if (o.rpm > 0) rpm_limit = std::max<int64_t>(1, (o.rpm + 59) / 60);
    if (o.tpm > 0) tpm_limit = std::max<int64_t>(1, (o.tpm + 59) / 60);
  }

  // ---- lifecycle ----

  int start();

  void stop();

  // ---- event loop ----

  void loop();

  // Waits for events until the next response is due. To the nanosecond where the kernel has
  // epoll_pwait2: epoll_wait's whole milliseconds, rounded up, made a 50 ms latency 50.5 ms on
  // average, which every request of a chain (a book followed section by section) pays again.
  int wait_events(epoll_event* events, int max);
  bool have_pwait2 = true, pwait2_worked = false;

  void mark_dirty(Conn& c);

  void accept_all();

  void close_conn(Conn& c, bool rst = false);

  // Returns false when the connection was closed.
  bool on_readable(Conn& c);

  bool has_complete_request(const Conn& c) const;

  void update_interest(Conn& c);

  // Moves ready responses to the output, writes what the socket takes, resumes paused reads.
  void flush(Conn& c);

  // False on a socket error.
  bool write_some(Conn& c);

  // ---- HTTP parsing ----

  void parse_requests(Conn& c);

  void protocol_error(Conn& c, int status, std::string_view msg);

  ParseResult parse_one(Conn& c, Request& req);

  // ---- responses ----

  void append_head(std::string& out, int status, bool retry_after, bool close, size_t len);

  void enqueue(Conn& c, SlotKind kind, int status, bool retry_after, bool close, std::string_view b,
               int64_t delay_ns);

  int64_t draw_latency_ns();

  bool chance(double p) { return p > 0 && (p >= 1 || unit(rng) < p); }

  bool rpm_ok();

  bool tpm_ok(int64_t tokens);

  static Ep route(std::string_view path, std::string_view& param);

  static bool is_post(Ep ep) {
    return ep == kEmbed || ep == kGemini || ep == kBulk || ep == kIndexBulk || ep == kDeleteByQuery;
  }

  void error_body(std::string_view msg);

  void dispatch(Conn& c, Request& req);

  void finish(Conn& c, Ep ep, SlotKind kind, int status, bool retry_after, bool close,
              int64_t delay);

  // ---- endpoints ----

  bool int_param(std::string_view query, std::string_view key, uint64_t def, uint64_t& v);

  int docs_list(const Request& req);

  // 1..docs for a canonical id, else 0.
  uint64_t doc_number(std::string_view id);

  int doc(const Request& req, std::string_view raw_id, bool& retry_after);

  int big();

  // Parses an embeddings request into `inputs` (views into parse_buf) and counts tokens.
  bool parse_embeddings(std::string_view b, int64_t& tokens, std::string_view& err);
  std::string_view emb_model;  // into parse_buf (in-situ strings are NUL-terminated there)
  int emb_dim = kDefaultEmbeddingDim;

  int embeddings(int64_t tokens);

  void count_embeddings(int64_t tokens);

  // The deterministic unit vector of `input` (emb_dim floats from its hash) as a JSON array:
  // the same text gets the same vector from both embedding endpoints.
  void append_vector(std::string_view input);

  // Google APIs' error shape: {"error": {"code": 400, "message": "...", "status":
  // "INVALID_ARGUMENT"}}.
  void google_error(int code, std::string_view msg);

  // Parses a Gemini batchEmbedContents request into `inputs`, as the real API checks it: at most
  // 100 requests, each naming the model of the URL, one text part or more (joined).
  bool parse_gemini(std::string_view b, std::string_view url_model, int64_t& tokens,
                    std::string_view& err);
  std::vector<std::string> joined;  // Gemini inputs (parts joined); `inputs` views into it
  std::string emb_model_buf;

  int gemini_embeddings(int64_t tokens);

  // Elasticsearch _bulk: NDJSON action/metadata lines, each index/create/update followed by a
  // source line. Items answer 201 created / 200 updated / 409 / 404 / 400 / 429 (bulk_fail_rate).
  int bulk(std::string_view b, std::string_view path_index);
  int delete_by_query(std::string_view b, std::string_view index);

  // ---- Sefaria ----

  std::string sef_index_body;

  static const char* he_category(std::string_view en);

  struct CatNode {
    std::string name;
    std::vector<CatNode> cats;
    std::vector<const SefBook*> books;
    bool collection = false;  // holds the collection leaf (a title that is not a text)
  };

  void emit_category(std::string& out, const CatNode& n);

  int sefaria_index();

  struct SefRef {
    const SefBook* book = nullptr;
    int node = -1;         // complex books: which node
    std::vector<int> idx;  // 0-based address below the book (or node)
  };

  static int sef_depth(const SefBook& b);
  static std::string talmud_label(int i);
  // Children under an address (size of the next level), or -1 past the bottom.
  static int sef_count(const SefBook& b, int node, const std::vector<int>& p);
  static std::vector<const char*> sef_section_names(const SefBook& b);
  std::string sef_ref_string(const SefRef& r);

  // 0 when parsed; else an HTTP status with body set to the error.
  int sef_parse_ref(std::string_view ref, SefRef& r);

  // Section-level refs of a book in order, with whether each is empty (rendered once a book).
  const SefSections& sef_sections(const SefBook& b);

  std::vector<std::pair<std::string, bool>> sef_render_sections(const SefBook& b);

  void sef_emit_text(std::string& out, const SefRef& r, std::vector<int>& p, bool english,
                     bool drop_tags, bool drop_footnotes);

  void sef_emit_array(std::string& out, const SefRef& r, std::vector<int>& p, bool english,
                      bool drop_tags, bool drop_footnotes);

  // Depth of the section level (refs that `next` walks): chapters, a depth-3 book's verses, or a
  // complex book's nodes.
  static int sef_section_level(const SefBook& b);

  static constexpr std::string_view kSefHe = "Sim Hebrew Edition";
  static constexpr std::string_view kSefEn = "Sim English Translation";

  void sef_version_meta(std::string& out, bool english);

  int sefaria_text(const Request& req, std::string_view raw_ref);

  int sefaria_shape(std::string_view raw_title);

  // ---- OpenAlex ----

  std::string oa_cursor(uint64_t offset);
  bool oa_decode_cursor(std::string_view c, uint64_t& offset);
  void oa_error(int, std::string_view message);

  void oa_work(std::string& out, uint64_t n);

  // The works each filter asked for keeps, in order (a listing asks with the same filter page
  // after page; partitions listed at once take turns).
  std::unordered_map<std::string, std::vector<uint64_t>> oa_filters;
  std::deque<std::string> oa_filter_order;       // oldest first
  static constexpr size_t kOaFiltersKept = 400;  // a year of daily windows, and then some

  int openalex_works(const Request& req);

  // ---- stats ----

  void stats_json_locked(std::string& out) const;
};

}  // namespace sluice::sim
