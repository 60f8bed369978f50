// One libcurl-multi event loop per process: thousands of requests in flight on one thread, with
// retries (exponential backoff with full jitter, Retry-After honoured), per-key token-bucket
// rate limits (requests and tokens per minute) and response size caps.
// Thread-safety: submit() and set_rate_limit() may be called from any thread and never block on
// the network. Callbacks run on the loop thread, exactly once per submit; they must not block.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/metrics/histogram.hpp"

namespace sluice::http {

struct Request {
  std::string method = "GET";
  std::string url;
  // "Name: value". They go only to the URL's origin: a redirect elsewhere is refused (a
  // permanent failure) unless its origin is in trusted_origins. A header with CR, LF or NUL is
  // never sent: the request fails at once.
  std::vector<std::string> headers;
  std::vector<std::string> trusted_origins;  // "https://host[:port]", as origin_of() gives them
  std::string body;
  long connect_timeout_ms = 10000;
  long timeout_ms = 60000;
  size_t max_bytes = size_t{64} << 20;  // a larger response is a failure, never a crash
  double delay_s = 0;  // start no sooner than this after submit (e.g. retrying failed bulk items)
  // Called on the loop thread after every attempt, retries included, before the retry decision:
  // what adaptive concurrency learns from. Must not block.
  std::function<void(const struct Attempt&)> on_attempt;
};

struct Attempt {
  long status = 0;   // 0: no response (network error, reset, timeout)
  double rtt_s = 0;  // this attempt's transfer
  // The upstream pushed back: 429, 503, 408, or no response at all.
  bool pushed_back() const {
    return status == 0 || status == 429 || status == 503 || status == 408;
  }
};

struct Response {
  long status = 0;  // last HTTP status; 0 when no response came (network error, timeout)
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // last response's, names lowercased
  std::string error;  // empty on success; else why the request finally failed
  int attempts = 0;   // attempts that counted against max_attempts
  int throttled = 0;  // 429s answered (retried without using an attempt)
  double elapsed_s = 0;
  bool ok() const { return error.empty(); }
  std::string header(std::string_view lowercase_name) const;  // "" when absent
  // `error`, then the start of the body (the server's own message), for dead letters.
  std::string failure() const;
};

// True for an absolute http:// or https:// URL (the only schemes the client allows).
bool is_http_url(std::string_view url);
// "https://host:port/path" → "host:port".
std::string host_of(std::string_view url);
// The URL's origin as "scheme://host:port" (lowercase, default port filled in), or "" when it is
// not an absolute http(s) URL. The unit headers and credentials are bound to.
std::string origin_of(std::string_view url);
// Whether headers configured for origin `from` may go to origin `to`: the same origin, or one the
// node listed in trusted_origins. The one rule for redirects and next pages alike.
bool headers_may_go(std::string_view from, std::string_view to,
                    const std::vector<std::string>& trusted);
// Why a "Name: value" header must not be sent ("" when it may): CR, LF or NUL in it (what would
// split it into more headers), or no name.
std::string header_problem(std::string_view header);
// At most this many redirects per request; a longer chain (or a loop) fails at once.
constexpr int kMaxRedirects = 5;

// Thousands of requests in flight need as many sockets (and an in-process sim as many again):
// lifts the soft open-files limit, often 1024, to the hard one. Returns the soft limit in force.
uint64_t raise_open_files_limit();

struct RetryPolicy {
  int max_attempts = 8;       // network errors, timeouts, 408 and 5xx
  double base_delay_s = 0.2;  // first backoff cap; doubles per attempt
  double max_delay_s = 30;
  double max_retry_s = 600;  // give up retrying (429s included) after this long
};

// The delay before retry number `attempt` (1 = the first retry): exponential backoff with full
// jitter, uniform in [0, min(max_delay_s, base_delay_s * 2^(attempt-1))]. Every retry sluice
// makes waits this long (or as long as a Retry-After says).
double backoff_delay_s(const RetryPolicy& policy, int attempt, std::mt19937_64& rng);

struct RateLimit {
  double rpm = 0;  // requests per minute; 0 = none
  double tpm = 0;  // tokens per minute (embeddings); 0 = none
};

// How the loop waits on its sockets: `poll` (curl_multi_poll: libcurl polls every socket on
// each wake-up) or `epoll` (curl_multi_socket_action driven by our own epoll set: each wake-up
// costs only the sockets that are ready). docs/benchmark-notes.md has the comparison.
enum class LoopKind { poll, epoll };

struct ClientOptions {
  // Connection caps (0 = none), enforced by libcurl within one multi handle: with either set the
  // loop keeps all its transfers in one connection pool instead of pools of 64.
  long max_host_connections = 0;
  long max_total_connections = 0;
  LoopKind loop = LoopKind::epoll;
  std::string user_agent = "sluice/0.1";
  // Bytes of response bodies being received at once, over every request in flight (0 = no
  // bound). A transfer that would pass it is paused until others end; one transfer at a time may
  // go past it, so that something always finishes. Each response is also capped at its own
  // Request::max_bytes.
  size_t max_body_bytes = size_t{256} << 20;
};

struct ClientStats {
  uint64_t submitted = 0, completed = 0, failed = 0, attempts = 0, retries = 0, throttled = 0;
  uint64_t in_flight = 0;        // submitted and not yet called back
  uint64_t body_bytes_peak = 0;  // the most response-body bytes held at once
  uint64_t paused = 0;           // times a transfer waited for body bytes to come free
  // Requests that waited for their key's rate limit: its rpm, else its tpm (each counted once).
  uint64_t rpm_waited = 0, tpm_waited = 0;
  // CPU time (user + system) of the loop thread so far: the cost of the I/O itself and of the
  // callbacks run on it, apart from the graph's CPU nodes.
  double loop_cpu_s = 0;
  LatencyHistogram latency;  // per attempt: from handing the transfer to libcurl to its end
  double latency_sum_s = 0;  // the attempts' durations summed
  // Attempts by the HTTP status they ended with, in order of status; 0 = no response (a
  // connection or TLS error, a timeout). Statuses without an attempt are left out.
  std::vector<std::pair<int, uint64_t>> by_status;
};

// Statuses counted in ClientStats::by_status: 0 (no response) and 100..599; others count as 0.
inline constexpr int kStatusSlots = 600;

class Client {
 public:
  using Callback = std::function<void(Response&&)>;
  explicit Client(ClientOptions options = {});
  ~Client();  // stops the loop; anything still pending is called back with an error
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Queues `req`. `limit_key` names a rate limit set with set_rate_limit ("" = none); `tokens`
  // is what the request costs against its tpm.
  void submit(Request req, RetryPolicy policy, std::string limit_key, double tokens, Callback cb);
  void set_rate_limit(const std::string& key, RateLimit limit);
  ClientStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> _impl;
};

// Seconds from a Retry-After value (delta seconds or an HTTP date); < 0 when unreadable.
double parse_retry_after(const std::string& value, double now_epoch_s);

}  // namespace sluice::http
