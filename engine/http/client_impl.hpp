// The HTTP client's internals, shared by client.cpp (submitting, admission under rate limits,
// transfers, retries) and loop.cpp (the loop thread: connection pools, epoll or curl's poll,
// timeouts). Not a public interface: only those two files include it. Everything in Impl but
// `incoming` (under `mu`) is the loop thread's alone.
#pragma once

#include "engine/http/client.hpp"

#include "engine/thread_role.hpp"

#include <curl/curl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <queue>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_set>

namespace sluice::http {

using Clock = std::chrono::steady_clock;

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Paces requests smoothly: it holds at most one second of tokens and starts nearly empty,
// because upstreams often enforce a per-minute quota in 1-second windows. A 429 lowers the
// pace; successes restore it slowly.
struct Bucket {
  double per_s = 0;  // 0 = unlimited
  double tokens = 0;
  double pace = 1.0;
  Clock::time_point last{};

  void configure(double per_minute, Clock::time_point now) {
    per_s = per_minute / 60.0;
    tokens = std::min(1.0, per_s);
    last = now;
  }
  void refill(Clock::time_point now) {
    if (per_s <= 0) return;
    tokens = std::min(per_s, tokens + per_s * pace * seconds_between(last, now));
    last = now;
  }
  // A request costing more than a full bucket goes once the bucket is full.
  bool take(double n, Clock::time_point now) {
    if (per_s <= 0) return true;
    refill(now);
    double need = std::min(n, per_s);
    if (tokens + 1e-9 < need) return false;
    tokens -= n;  // may go negative for oversized requests: the debt delays the next ones
    return true;
  }
  Clock::time_point when(double n, Clock::time_point now) const {
    if (per_s <= 0) return now;
    double need = std::min(n, per_s) - tokens;
    double s = need <= 0 ? 0 : need / (per_s * pace);
    return now + std::chrono::microseconds(static_cast<int64_t>(s * 1e6) + 1);
  }
};

// The bytes of response bodies held by transfers in progress (ClientOptions::max_body_bytes).
// Loop thread only.
struct BodyBudget {
  size_t cap = 0;  // 0 = none
  size_t held = 0;
  size_t peak = 0;
  uint64_t pauses = 0;
  struct Job* lead = nullptr;  // may go past the cap, so that one transfer always moves on
  std::vector<struct Job*> paused;
};

struct KeyState {
  Bucket rpm, tpm;
  std::deque<struct Job*> waiting;
};

struct Job {
  Request req;
  RetryPolicy policy;
  std::string key;
  double tokens = 0;
  Client::Callback cb;
  Response resp;
  Clock::time_point first{};
  Clock::time_point started{};  // this attempt's transfer
  int counted = 0;              // attempts that count against max_attempts
  int redirects = 0;            // redirects followed so far
  std::string origin;           // the first URL's: where req.headers may go
  bool too_large = false;
  BodyBudget* budget = nullptr;
  CURL* easy = nullptr;  // the current attempt's handle
  size_t held = 0;       // body bytes counted in the budget
  bool paused = false;
  bool rate_waited = false;  // counted once in rpm_waited or tpm_waited
  curl_slist* headers = nullptr;
  uint32_t pool = 0;  // the connection pool (multi handle) of the current attempt
  ~Job() {
    if (headers) curl_slist_free_all(headers);
  }
};

// The loop thread's own client, so a submit from inside a callback skips the wake-up.
inline thread_local const void* t_loop_owner = nullptr;

struct Client::Impl {
  // A connection pool: one multi handle and its connection cache. libcurl looks for a reusable
  // connection by walking every connection it holds to the host (and walks them again elsewhere)
  // for each new transfer, so with one pool the cost of a request grows with the requests in
  // flight: starting 500 transfers at once kept the loop busy 57 ms, 5,000 took 640 ms. The loop
  // therefore spreads its transfers over pools of at most kPoolTransfers each, all driven by the
  // same thread and epoll set, sharing one DNS and TLS session cache.
  struct Pool {
    Impl* impl = nullptr;
    uint32_t index = 0;
    CURLM* multi = nullptr;
    Clock::time_point deadline = Clock::time_point::max();  // libcurl's next timeout
    size_t active = 0;                                      // transfers added and not yet done
  };
  static constexpr size_t kPoolTransfers = 64;
  static constexpr size_t kMaxPools = 1024;
  // Transfers handed to libcurl in one turn of the loop; the rest wait for the next turn. A new
  // connection costs ~60 us of this thread (the loopback handshake runs in its syscalls) and its
  // request leaves only on a later turn, when the socket is writable: 421 books started at once
  // sent their first request after 53 ms, the time to connect them all.
  static constexpr size_t kStartsPerTurn = 64;

  ClientOptions opts;
  CURLSH* share = nullptr;
  std::vector<std::unique_ptr<Pool>> pools;
  bool one_pool = false;  // poll loop, or connection caps that libcurl enforces per multi handle
  CURLM* poll_multi =
      nullptr;  // LoopKind::poll: the one pool's handle (wake() reads it from any thread)
  std::thread loop;
  std::mutex mu;
  std::vector<Job*> incoming;
  std::vector<std::pair<std::string, RateLimit>> new_limits;
  bool stop = false;

  // Loop-thread state.
  std::map<std::string, KeyState> keys;
  using Timer = std::pair<Clock::time_point, Job*>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers;
  std::vector<CURL*> idle_handles;  // easy handles kept for reuse
  std::deque<Job*> deferred;        // ready, over this turn's kStartsPerTurn
  size_t started_this_turn = 0;
  std::mt19937_64 rng{0x5111ce};
  std::unordered_set<CURL*> running_handles;  // added to the multi handle and not yet done
  // Submitted by a callback on the loop thread itself (a chain's next request, a node's next queued
  // one): no lock and no wake-up, and started as soon as the callback returns (see drive()).
  std::vector<Job*> local;
  std::vector<Job*> local_batch;  // drive()'s turn at `local`, kept to reuse its buffer

  // LoopKind::epoll: our epoll set (every pool's sockets plus an eventfd for wake-ups; an event's
  // data is the pool's index + 1 in the high 32 bits and the fd in the low ones, 0 for the
  // eventfd) and the events the last wait returned, handed to libcurl on the next turn.
  int epfd = -1, wakefd = -1;
  // At most 64 ready sockets a turn: each turn's completions start their follow-up requests
  // before the next turn, so a chained request does not wait for a whole wave of 500 responses
  // to be read and called back (512 a turn: p50 62-75 ms against a 50 ms upstream; 64: 51-57).
  std::array<epoll_event, 64> ready{};
  int nready = 0;

  std::atomic<uint64_t> submitted{0}, completed{0}, failed{0}, attempts{0}, retries{0},
      throttled{0};
  std::atomic<uint64_t> rpm_waited{0}, tpm_waited{0};  // ClientStats
  BodyBudget budget;
  std::atomic<uint64_t> body_peak{0}, pauses{0};  // budget's figures, for stats()
  std::array<std::atomic<uint64_t>, LatencyHistogram::kBuckets>
      latency{};                            // written by the loop only
  std::atomic<uint64_t> latency_sum_us{0};  // the attempts' summed durations
  // Attempts by the status they ended with: 100..599, and 0 for no response (a transport error).
  std::array<std::atomic<uint64_t>, kStatusSlots> by_status{};

  void run();
  void wake();
  Pool& add_pool();
  Pool& pick_pool();
  void drive();  // lets libcurl move its transfers on
  void run_due_timeouts();
  void complete(Pool& p);     // calls back the pool's finished transfers
  void wait(int timeout_ms);  // until a socket is ready, a wake-up or the timeout
  static int on_socket(CURL*, curl_socket_t fd, int what, void* self, void* socketp);
  static int on_timer(CURLM*, long timeout_ms, void* self);
  void enqueue_ready(Job* j, Clock::time_point now);
  void admit(std::vector<Job*>& fresh, Clock::time_point now);  // newly submitted jobs
  void take_local(std::vector<Job*>& out);                      // appends local, leaves it empty
  bool take_submitted(std::vector<Job*>& out);                  // incoming and local; false if none
  Clock::time_point service_keys(Clock::time_point now);
  void start(Job* j);
  void on_done(Pool& p, CURL* e, CURLcode rc, Clock::time_point now);
  void retry_later(Job* j, double delay_s, Clock::time_point now);
  void follow_redirect(Job* j, long status, const std::string& target, Clock::time_point now);
  void finish(Job* j, std::string error);
  // The attempt's body leaves the budget (its transfer ended); paused transfers go on.
  void release_body(Job* j);
  double backoff(const Job* j) { return backoff_delay_s(j->policy, j->counted, rng); }
};

}  // namespace sluice::http
