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

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
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
  bool too_large = false;
  curl_slist* headers = nullptr;
  uint32_t pool = 0;  // the connection pool (multi handle) of the current attempt
  ~Job() {
    if (headers) curl_slist_free_all(headers);
  }
};

// The loop thread's own client, so a submit from inside a callback skips the wake-up.
thread_local const void* t_loop_owner = nullptr;

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* job = static_cast<Job*>(user);
  size_t len = size * n;
  if (job->resp.body.size() + len > job->req.max_bytes) {
    job->too_large = true;
    return 0;  // makes libcurl stop with CURLE_WRITE_ERROR
  }
  job->resp.body.append(data, len);
  return len;
}

// Keeps the final response's headers (a new status line, e.g. after a redirect, starts over).
size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* job = static_cast<Job*>(user);
  size_t len = size * n;
  std::string_view line(data, len);
  if (line.rfind("HTTP/", 0) == 0) {
    job->resp.headers.clear();
    return len;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || job->resp.headers.size() >= 200) return len;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  if (name == "content-length" && job->resp.body.empty()) {
    // The body then grows in one allocation, not by doubling through each 16 KiB piece libcurl
    // hands over. The header is the server's word, so it reserves no more than the size cap
    // and 8 MiB.
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec == std::errc() && end == value.data() + value.size() && n <= job->req.max_bytes)
      job->resp.body.reserve(static_cast<size_t>(std::min<uint64_t>(n, uint64_t{8} << 20)));
  }
  if (value.size() <= 8192) job->resp.headers.emplace_back(std::move(name), std::string(value));
  return len;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

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
  std::array<std::atomic<uint64_t>, LatencyHistogram::kBuckets>
      latency{};  // written by the loop only

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
  void finish(Job* j, std::string error);
  double backoff(const Job* j) {
    double cap = std::min(j->policy.max_delay_s,
                          j->policy.base_delay_s * std::pow(2.0, std::max(0, j->counted - 1)));
    return std::uniform_real_distribution<double>(0.0, cap)(rng);
  }
};

Client::Client(ClientOptions options) : _impl(std::make_unique<Impl>()) {
  global_init();
  _impl->opts = std::move(options);
  const ClientOptions& o = _impl->opts;
  _impl->one_pool =
      o.loop == LoopKind::poll || o.max_host_connections > 0 || o.max_total_connections > 0;
  // Every easy handle is used on the loop thread alone, so the share needs no lock callbacks.
  _impl->share = curl_share_init();
  curl_share_setopt(_impl->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(_impl->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  if (_impl->opts.loop == LoopKind::epoll) {
    _impl->epfd = epoll_create1(EPOLL_CLOEXEC);
    _impl->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (_impl->epfd < 0 || _impl->wakefd < 0)
      throw std::runtime_error("HTTP client: cannot create its epoll set");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // the wake-up eventfd; a pool's sockets carry its index + 1
    epoll_ctl(_impl->epfd, EPOLL_CTL_ADD, _impl->wakefd, &ev);
  }
  _impl->poll_multi = _impl->add_pool().multi;
  _impl->loop = std::thread([impl = _impl.get()] { impl->run(); });
}

Client::Impl::Pool& Client::Impl::add_pool() {
  auto p = std::make_unique<Pool>();
  p->impl = this;
  p->index = static_cast<uint32_t>(pools.size());
  p->multi = curl_multi_init();
  if (!p->multi) throw std::runtime_error("HTTP client: curl_multi_init failed");
  if (opts.max_host_connections > 0)
    curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, opts.max_host_connections);
  if (opts.max_total_connections > 0)
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, opts.max_total_connections);
  curl_multi_setopt(p->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  if (epfd >= 0) {
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p.get());
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p.get());
  }
  pools.push_back(std::move(p));
  return *pools.back();
}

// The least busy pool, so that the pool a transfer just left (with its connection now idle)
// takes the next one; a new pool once every pool holds kPoolTransfers.
Client::Impl::Pool& Client::Impl::pick_pool() {
  Pool* best = pools.front().get();
  for (auto& p : pools)
    if (p->active < best->active) best = p.get();
  if (one_pool || best->active < kPoolTransfers || pools.size() >= kMaxPools) return *best;
  return add_pool();
}

void Client::Impl::wake() {
  if (wakefd < 0) {
    curl_multi_wakeup(poll_multi);
    return;
  }
  uint64_t one = 1;
  ssize_t n = ::write(wakefd, &one, sizeof one);  // EAGAIN: a wake-up is already pending
  (void)n;
}

// libcurl tells us which sockets of a pool to watch for what (LoopKind::epoll).
int Client::Impl::on_socket(CURL*, curl_socket_t fd, int what, void* self, void* socketp) {
  auto* pool = static_cast<Pool*>(self);
  Impl* impl = pool->impl;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(impl->epfd, EPOLL_CTL_DEL, fd, nullptr);  // may already be closed: nothing to do then
    curl_multi_assign(pool->multi, fd, nullptr);
    return 0;
  }
  epoll_event ev{};
  ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
  ev.data.u64 = (uint64_t{pool->index} + 1) << 32 | static_cast<uint32_t>(fd);
  int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(impl->epfd, op, fd, &ev) != 0) {
    // A socket number libcurl closed and reopened between our calls: the other op fits.
    epoll_ctl(impl->epfd, op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  }
  if (!socketp) curl_multi_assign(pool->multi, fd, pool);  // marks the socket as known
  return 0;
}

int Client::Impl::on_timer(CURLM*, long timeout_ms, void* self) {
  auto* pool = static_cast<Pool*>(self);
  pool->deadline = timeout_ms < 0 ? Clock::time_point::max()
                                  : Clock::now() + std::chrono::milliseconds(timeout_ms);
  return 0;
}

void Client::Impl::drive() {
  int running = 0;
  if (epfd < 0) {
    curl_multi_perform(poll_multi, &running);
    return;
  }
  // Timeouts first: a transfer added since the last turn (libcurl asks to run it at once) sends
  // its request now, not after this turn's ready sockets have all been read and called back.
  run_due_timeouts();
  for (int i = 0; i < nready; ++i) {
    uint64_t data = ready[static_cast<size_t>(i)].data.u64;
    uint32_t ev = ready[static_cast<size_t>(i)].events;
    if (data == 0) {
      uint64_t n;
      while (::read(wakefd, &n, sizeof n) > 0) {
      }
      continue;
    }
    size_t pool = (data >> 32) - 1;
    if (pool >= pools.size()) continue;
    int mask = (ev & EPOLLIN ? CURL_CSELECT_IN : 0) | (ev & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
               (ev & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
    curl_multi_socket_action(pools[pool]->multi, static_cast<curl_socket_t>(data & 0xffffffffu),
                             mask, &running);
    // Call back at once, not after the turn's other sockets: a follow-up request submitted from
    // the callback leaves on the next turn either way, and up to 64 sockets of reading (1-3 ms at
    // 500 in flight) sat between a response and its follow-up, on every request of a chain.
    complete(*pools[pool]);
    // The callbacks' follow-up requests leave now, not on the next turn: up to 64 sockets of
    // reading and calling back (5 ms at 500 in flight on a slow host) sat between a chained
    // response and its next request.
    if (!local.empty()) {
      local_batch.swap(local);
      admit(local_batch, Clock::now());
      run_due_timeouts();
    }
  }
  nready = 0;
  run_due_timeouts();
}

void Client::Impl::run_due_timeouts() {
  int running = 0;
  auto now = Clock::now();
  for (auto& p : pools) {
    if (now < p->deadline) continue;
    p->deadline = Clock::time_point::max();
    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    complete(*p);
  }
}

void Client::Impl::complete(Pool& p) {
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(p.multi, &left)) {
    if (m->msg == CURLMSG_DONE) on_done(p, m->easy_handle, m->data.result, Clock::now());
  }
}

void Client::Impl::wait(int timeout_ms) {
  if (epfd < 0) {
    curl_multi_poll(poll_multi, nullptr, 0, timeout_ms, nullptr);
    return;
  }
  Clock::time_point deadline = Clock::time_point::max();
  for (auto& p : pools) deadline = std::min(deadline, p->deadline);
  if (deadline != Clock::time_point::max()) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    timeout_ms = static_cast<int>(std::clamp<int64_t>(left, 0, timeout_ms));
  }
  int n = epoll_wait(epfd, ready.data(), static_cast<int>(ready.size()), timeout_ms);
  nready = n > 0 ? n : 0;
}

Client::~Client() {
  {
    std::lock_guard lock(_impl->mu);
    _impl->stop = true;
  }
  _impl->wake();
  _impl->loop.join();
  for (CURL* e : _impl->idle_handles) curl_easy_cleanup(e);
  for (auto& p : _impl->pools) curl_multi_cleanup(p->multi);
  curl_share_cleanup(_impl->share);
  if (_impl->epfd >= 0) ::close(_impl->epfd);
  if (_impl->wakefd >= 0) ::close(_impl->wakefd);
}

void Client::submit(Request req, RetryPolicy policy, std::string limit_key, double tokens,
                    Callback cb) {
  auto* j = new Job;
  j->req = std::move(req);
  j->policy = policy;
  j->key = std::move(limit_key);
  j->tokens = tokens;
  j->cb = std::move(cb);
  _impl->submitted.fetch_add(1, std::memory_order_relaxed);
  if (t_loop_owner == _impl.get()) {
    _impl->local.push_back(j);
    return;
  }
  {
    std::lock_guard lock(_impl->mu);
    _impl->incoming.push_back(j);
  }
  _impl->wake();
}

void Client::set_rate_limit(const std::string& key, RateLimit limit) {
  {
    std::lock_guard lock(_impl->mu);
    _impl->new_limits.emplace_back(key, limit);
  }
  _impl->wake();
}

ClientStats Client::stats() const {
  ClientStats s;
  s.submitted = _impl->submitted.load();
  s.completed = _impl->completed.load();
  s.failed = _impl->failed.load();
  s.attempts = _impl->attempts.load();
  s.retries = _impl->retries.load();
  s.throttled = _impl->throttled.load();
  s.in_flight = s.submitted - s.completed - s.failed;
  clockid_t clock;
  timespec ts{};
  if (_impl->loop.joinable() && pthread_getcpuclockid(_impl->loop.native_handle(), &clock) == 0 &&
      clock_gettime(clock, &ts) == 0)
    s.loop_cpu_s = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  for (int i = 0; i < LatencyHistogram::kBuckets; ++i)
    s.latency.add_bucket(i, _impl->latency[static_cast<size_t>(i)].load(std::memory_order_relaxed));
  return s;
}

void Client::Impl::enqueue_ready(Job* j, Clock::time_point now) {
  if (!j->key.empty()) {
    auto it = keys.find(j->key);
    if (it != keys.end() && (it->second.rpm.per_s > 0 || it->second.tpm.per_s > 0)) {
      it->second.waiting.push_back(j);
      return;
    }
  }
  (void)now;
  start(j);
}

void Client::Impl::admit(std::vector<Job*>& fresh, Clock::time_point now) {
  for (Job* j : fresh) {
    j->first = now;
    if (j->req.delay_s > 0)
      timers.emplace(now + std::chrono::microseconds(static_cast<int64_t>(j->req.delay_s * 1e6)),
                     j);
    else enqueue_ready(j, now);
  }
  fresh.clear();
}

void Client::Impl::take_local(std::vector<Job*>& out) {
  out.insert(out.end(), local.begin(), local.end());
  local.clear();
}

bool Client::Impl::take_submitted(std::vector<Job*>& out) {
  {
    std::lock_guard lock(mu);
    out.swap(incoming);
  }
  take_local(out);
  return !out.empty();
}

Clock::time_point Client::Impl::service_keys(Clock::time_point now) {
  Clock::time_point next = Clock::time_point::max();
  for (auto& [name, ks] : keys) {
    while (!ks.waiting.empty()) {
      Job* j = ks.waiting.front();
      ks.rpm.refill(now);
      ks.tpm.refill(now);
      bool ok_r = ks.rpm.per_s <= 0 || ks.rpm.tokens + 1e-9 >= std::min(1.0, ks.rpm.per_s);
      bool ok_t = ks.tpm.per_s <= 0 || ks.tpm.tokens + 1e-9 >= std::min(j->tokens, ks.tpm.per_s);
      if (ok_r && ok_t) {
        ks.rpm.take(1, now);
        ks.tpm.take(j->tokens, now);
        ks.waiting.pop_front();
        start(j);
      } else {
        next = std::min(next, std::max(ok_r ? now : ks.rpm.when(1, now),
                                       ok_t ? now : ks.tpm.when(j->tokens, now)));
        break;
      }
    }
  }
  return next;
}

void Client::Impl::start(Job* j) {
  if (started_this_turn >= kStartsPerTurn) {
    deferred.push_back(j);
    return;
  }
  ++started_this_turn;
  CURL* e;
  if (idle_handles.empty()) {
    e = curl_easy_init();
  } else {
    e = idle_handles.back();
    idle_handles.pop_back();
  }
  j->resp.body.clear();
  j->resp.headers.clear();
  j->too_large = false;
  curl_easy_setopt(e, CURLOPT_URL, j->req.url.c_str());
  curl_easy_setopt(e, CURLOPT_SHARE, share);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PRIVATE, j);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, j->req.connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, j->req.timeout_ms);
  curl_easy_setopt(e, CURLOPT_USERAGENT, opts.user_agent.c_str());
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
  // No CURLOPT_PIPEWAIT: it makes new transfers wait on connections that may multiplex, which
  // starved HTTP/1.1 upstreams of requests (0.66x of ideal at 500 in flight).
  // Templated URLs come from data: never let them reach file:// or other schemes.
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(j->req.max_bytes));
  if (!j->headers)
    for (const auto& h : j->req.headers) j->headers = curl_slist_append(j->headers, h.c_str());
  if (j->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
  if (j->req.method == "GET") {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (j->req.method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(j->req.body.size()));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->req.body.data());
    // libcurl sends a large body one upload buffer (64 KiB by default) per writable event. With
    // hundreds of sockets ready a turn, an 850 KiB _bulk body then took most of a second to leave
    // during the sefaria graph, and the sink's batches piled up until the fetches ended. 2 MiB
    // (libcurl's maximum) sends it in one or two turns. The buffer is as large as the body, at most
    // that, and libcurl frees it when the transfer ends.
    if (j->req.body.size() > (size_t{64} << 10))
      curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE,
                       static_cast<long>(std::min(j->req.body.size(), size_t{2} << 20)));
    if (j->req.method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, j->req.method.c_str());
  }
  attempts.fetch_add(1, std::memory_order_relaxed);
  j->started = Clock::now();
  running_handles.insert(e);
  Pool& p = pick_pool();
  j->pool = p.index;
  ++p.active;
  curl_multi_add_handle(p.multi, e);
}

void Client::Impl::retry_later(Job* j, double delay_s, Clock::time_point now) {
  if (seconds_between(j->first, now) + delay_s > j->policy.max_retry_s) {
    finish(j, "gave up after " + std::to_string(static_cast<int>(j->policy.max_retry_s)) +
                  " s of retries (last: " +
                  (j->resp.status ? "HTTP " + std::to_string(j->resp.status)
                                  : std::string("no response")) +
                  ")");
    return;
  }
  retries.fetch_add(1, std::memory_order_relaxed);
  timers.emplace(now + std::chrono::microseconds(static_cast<int64_t>(delay_s * 1e6)), j);
}

void Client::Impl::finish(Job* j, std::string error) {
  j->resp.error = std::move(error);
  j->resp.elapsed_s = seconds_between(j->first, Clock::now());
  (j->resp.error.empty() ? completed : failed).fetch_add(1, std::memory_order_relaxed);
  try {
    j->cb(std::move(j->resp));
  } catch (...) {
    // A callback must not throw; nothing sensible to do with it on the loop thread.
  }
  delete j;
}

void Client::Impl::on_done(Pool& p, CURL* e, CURLcode rc, Clock::time_point now) {
  Job* j = nullptr;
  curl_easy_getinfo(e, CURLINFO_PRIVATE, reinterpret_cast<char**>(&j));
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  curl_off_t retry_after = -1;
  curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &retry_after);
  curl_multi_remove_handle(p.multi, e);
  --p.active;
  running_handles.erase(e);
  curl_easy_reset(e);
  idle_handles.push_back(e);
  latency[static_cast<size_t>(LatencyHistogram::bucket_of(seconds_between(j->started, now)))]
      .fetch_add(1, std::memory_order_relaxed);
  j->resp.status = status;
  j->resp.attempts++;
  if (j->req.on_attempt) {
    Attempt a;
    a.status = rc == CURLE_OK ? status : 0;
    a.rtt_s = seconds_between(j->started, now);
    j->req.on_attempt(a);
  }
  auto key_it = j->key.empty() ? keys.end() : keys.find(j->key);

  if (j->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    finish(j, "response larger than " + std::to_string(j->req.max_bytes) + " bytes");
    return;
  }
  if (rc == CURLE_OK) {
    if (status >= 200 && status < 300) {
      if (key_it != keys.end()) {
        key_it->second.rpm.pace = std::min(1.0, key_it->second.rpm.pace + 0.02);
        key_it->second.tpm.pace = std::min(1.0, key_it->second.tpm.pace + 0.02);
      }
      finish(j, "");
      return;
    }
    if (status == 429) {
      // Throttling, not failure: slow the key down and retry without using an attempt.
      j->resp.throttled++;
      throttled.fetch_add(1, std::memory_order_relaxed);
      if (key_it != keys.end()) {
        key_it->second.rpm.pace = std::max(0.25, key_it->second.rpm.pace * 0.8);
        key_it->second.tpm.pace = std::max(0.25, key_it->second.tpm.pace * 0.8);
      }
      retry_later(j, retry_after >= 0 ? static_cast<double>(retry_after) : backoff(j) + 0.5, now);
      return;
    }
    if (status == 408 || status >= 500) {
      if (++j->counted >= j->policy.max_attempts) {
        finish(j, "HTTP " + std::to_string(status) + " after " + std::to_string(j->counted) +
                      " attempts");
        return;
      }
      double d = backoff(j);
      if (retry_after >= 0) d = std::max(d, static_cast<double>(retry_after));
      retry_later(j, d, now);
      return;
    }
    finish(j, "HTTP " + std::to_string(status));  // other 4xx (and unresolved 3xx): final
    return;
  }
  // Network error, timeout, reset: retry with backoff.
  std::string why = curl_easy_strerror(rc);
  if (++j->counted >= j->policy.max_attempts) {
    j->resp.status = 0;
    finish(j, why + " after " + std::to_string(j->counted) + " attempts");
    return;
  }
  retry_later(j, backoff(j), now);
}

void Client::Impl::run() {
  pthread_setname_np(pthread_self(), "sluice-http");  // shows in top -H, perf and gdb
  t_outside_arena = true;
  t_loop_owner = this;
  for (;;) {
    std::vector<Job*> fresh;
    std::vector<std::pair<std::string, RateLimit>> limits;
    bool stopping;
    {
      std::lock_guard lock(mu);
      fresh.swap(incoming);
      limits.swap(new_limits);
      stopping = stop;
    }
    take_local(fresh);
    auto now = Clock::now();
    for (auto& [key, lim] : limits) {
      KeyState& ks = keys[key];
      ks.rpm.configure(lim.rpm, now);
      ks.tpm.configure(lim.tpm, now);
    }
    if (stopping) {
      // Callbacks below may submit more (a node starting its next queued request): keep failing
      // whatever arrives until nothing does, so every submit is called back exactly once.
      for (;;) {
        for (Job* j : fresh) finish(j, "HTTP client shut down");
        fresh.clear();
        if (!take_submitted(fresh)) break;
      }
      while (!timers.empty()) {
        finish(timers.top().second, "HTTP client shut down");
        timers.pop();
      }
      for (Job* j : deferred) finish(j, "HTTP client shut down");
      deferred.clear();
      for (auto& [k, ks] : keys)
        for (Job* j : ks.waiting) finish(j, "HTTP client shut down");
      keys.clear();
      std::vector<CURL*> handles(running_handles.begin(), running_handles.end());
      running_handles.clear();
      for (CURL* e : handles) {
        Job* j = nullptr;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, reinterpret_cast<char**>(&j));
        if (j) curl_multi_remove_handle(pools[j->pool]->multi, e);
        curl_easy_cleanup(e);
        if (j) finish(j, "HTTP client shut down");
      }
      // Those callbacks may have submitted too.
      for (std::vector<Job*> late; take_submitted(late); late.clear())
        for (Job* j : late) finish(j, "HTTP client shut down");
      return;
    }
    started_this_turn = 0;
    for (size_t n = deferred.size(); n > 0 && started_this_turn < kStartsPerTurn; --n) {
      Job* j = deferred.front();
      deferred.pop_front();
      start(j);
    }
    admit(fresh, now);
    while (!timers.empty() && timers.top().first <= now) {
      Job* j = timers.top().second;
      timers.pop();
      enqueue_ready(j, now);
    }
    Clock::time_point next = service_keys(now);
    drive();
    if (epfd < 0) complete(*pools.front());
    // Completions may have scheduled retries that are due now.
    now = Clock::now();
    if (!timers.empty()) next = std::min(next, timers.top().first);
    int timeout_ms = 1000;
    if (next != Clock::time_point::max())
      // Rounded up: a token or timer due in 0.3 ms must not turn into a zero timeout, which
      // would spin this thread at 100% between paced requests.
      timeout_ms = static_cast<int>(std::clamp<int64_t>(
          std::chrono::ceil<std::chrono::milliseconds>(next - now).count(), 0, 1000));
    {
      std::lock_guard lock(mu);
      // Submitted by a callback just now, or over this turn's starts.
      if (!incoming.empty() || !local.empty() || stop || !deferred.empty()) timeout_ms = 0;
    }
    wait(timeout_ms);
  }
}

std::string Response::failure() const {
  return body.empty() ? error : error + ": " + body.substr(0, 300);
}

uint64_t raise_open_files_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  if (r.rlim_cur < r.rlim_max) {
    rlimit raised = r;
    raised.rlim_cur = r.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  return r.rlim_cur;
}

bool is_http_url(std::string_view url) {
  return url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
}

std::string host_of(std::string_view url) {
  size_t s = url.find("://");
  size_t start = s == std::string_view::npos ? 0 : s + 3;
  size_t end = url.find_first_of("/?#", start);
  return std::string(
      url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
}

std::string Response::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

double parse_retry_after(const std::string& value, double now_epoch_s) {
  if (value.empty()) return -1;
  char* end = nullptr;
  double secs = std::strtod(value.c_str(), &end);
  if (end && *end == '\0') return secs >= 0 ? secs : -1;
  time_t t = curl_getdate(value.c_str(), nullptr);
  if (t < 0) return -1;
  return std::max(0.0, static_cast<double>(t) - now_epoch_s);
}

}  // namespace sluice::http
