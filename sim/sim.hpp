// `sluice sim`: a simulated HTTP upstream for tests and benchmarks of the HTTP nodes.
// One event-driven server (Linux epoll, non-blocking sockets, a single thread for every
// connection) speaking HTTP/1.1 with keep-alive and pipelining; request bodies need a
// Content-Length, responses always carry one. It plays:
//   GET  /docs?page=N&per_page=M           paged listing of doc ids (pages from 1)
//   GET  /docs/{id}[?status=S]             one generated document (S forces a status)
//   GET  /big                              a 5 MiB JSON body (size-cap tests)
//   GET  /stats                            counters (same JSON as stats_json())
//   POST /v1/embeddings                    OpenAI-shaped embeddings
//   POST /v1beta/models/{m}:batchEmbedContents  Gemini-shaped embeddings (x-goog-api-key or ?key=)
//   POST /_bulk, POST /{index}/_bulk       Elasticsearch-shaped bulk indexing
//   GET  /sefaria/api/index, /sefaria/api/v3/texts/{ref}, /sefaria/api/shape/{title}
//   GET  /openalex/works?filter=F&per_page=N&cursor=C (publication_year, from_/to_publication_date,
//        type, has_abstract filters)
// with configurable latency (mean + uniform jitter, via a timer heap), rate limits in
// 1-second wall-clock windows (429 + Retry-After: 1) and fault injection (500s, connection
// resets, requests never answered, malformed bodies) and an overload cap (503 past
// max_concurrent requests being served, as an overloaded upstream sheds load). All randomness comes
// from `seed`. Thread-safety: start(), stop(), port() and stats_json() may be called from any
// thread; the server's own state is touched only by its loop thread (stats under a mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sluice::sim {

struct SimOptions {
  int port = 0;  // 0 = pick a free port
  std::string bind = "127.0.0.1";
  uint64_t docs = 1000;  // corpus size for the listing/doc endpoints
  double latency_ms = 0, latency_jitter_ms = 0;
  int64_t rpm = 0, tpm = 0;  // 0 = unlimited; enforced per 1 s window as ceil(x/60), >= 1
  double error_rate = 0, reset_rate = 0, timeout_rate = 0, malformed_rate = 0;
  double bulk_fail_rate = 0;   // fraction of _bulk items answered 429 inside a 200
  uint64_t sefaria_books = 0;  // synthetic simple books added to the Sefaria library (benchmarks)
  uint64_t max_concurrent =
      0;                    // requests served at once beyond which it answers 503 at once; 0 = none
  size_t doc_bytes = 2000;  // text size of generated docs
  uint64_t seed = 1;
};

class SimServer {
 public:
  explicit SimServer(SimOptions o);
  ~SimServer();  // stops
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  // Binds and listens (throws std::system_error on failure), starts the event loop on a
  // background thread and returns the port. Calling it again while running returns the port.
  int start();
  void stop();  // idempotent; closes every connection and joins the thread
  int port() const;
  std::string stats_json() const;  // same JSON as GET /stats

 private:
  struct Impl;
  std::unique_ptr<Impl> _impl;
};

// For the CLI: starts, prints exactly "listening on http://127.0.0.1:PORT\n" to stdout (the
// bind address in place of 127.0.0.1 when it is not a wildcard) and flushes at once, then runs
// until SIGINT/SIGTERM. Returns 0; 1 (with a message on stderr) when the port cannot be bound.
int run_sim_forever(const SimOptions& o);

}  // namespace sluice::sim
