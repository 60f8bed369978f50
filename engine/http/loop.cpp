// The HTTP loop thread: connection pools of up to kPoolTransfers transfers each, driven by our
// own epoll set (LoopKind::epoll) or by curl_multi_poll, and the turn that admits, starts and
// completes transfers.
#include "engine/http/client_impl.hpp"

namespace sluice::http {

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
      budget.paused.clear();  // their jobs are finished below, without on_done
      budget.lead = nullptr;
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
    // The callbacks' follow-up requests under a rate-limited key wait in its queue (drive()
    // admits them): start what the bucket allows now, and wake for the rest when it will. Left
    // for the next turn, they waited for a socket event or the 1 s timeout: a chain with one
    // request in flight (a listing, a serial fetch) took a second a link.
    next = std::min(next, service_keys(now));
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

}  // namespace sluice::http
