// Simulated HTTP upstream: one epoll loop thread, non-blocking sockets, HTTP/1.1 keep-alive
// with pipelining. Responses on one connection leave in request order: each request gets a slot
// in its connection's queue, a timer (min-heap) marks the slot ready after its latency and the
// ready prefix of the queue is moved to the output buffer. Latency 0 with nothing queued skips
// the slot and writes straight into the output buffer (the hot path allocates nothing).
// This file: lifecycle, the event loop, /stats, and the SimServer interface.
#include "sim/server_impl.hpp"

namespace sluice::sim {

int SimServer::Impl::start() {
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

void SimServer::Impl::stop() {
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

void SimServer::Impl::loop() {
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
int SimServer::Impl::wait_events(epoll_event* events, int max) {
  int64_t wait = -1;
  if (!timers.empty())
    wait = std::clamp<int64_t>(timers.top().due_ns - mono_ns(), 0, 60'000'000'000);
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

void SimServer::Impl::mark_dirty(Conn& c) {
  if (!c.dirty) {
    c.dirty = true;
    c.dirty_idx = dirty.size();
    dirty.push_back(&c);
  }
}

void SimServer::Impl::accept_all() {
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

void SimServer::Impl::close_conn(Conn& c, bool rst) {
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
bool SimServer::Impl::on_readable(Conn& c) {
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
  if (c.eof &&
      (c.draining || (c.slots.empty() && c.out_off >= c.out.size() && !has_complete_request(c)))) {
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

bool SimServer::Impl::has_complete_request(const Conn& c) const {
  return c.in.size() > c.in_off &&
         std::string_view(c.in).substr(c.in_off).find("\r\n\r\n") != std::string_view::npos;
}

void SimServer::Impl::update_interest(Conn& c) {
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
void SimServer::Impl::flush(Conn& c) {
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
bool SimServer::Impl::write_some(Conn& c) {
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

void SimServer::Impl::stats_json_locked(std::string& out) const {
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
  out.append(",\"live\":");
  append_uint(out, stats.bulk_live);
  out.append("},\"embeddings\":{\"inputs\":");
  append_uint(out, stats.emb_inputs);
  out.append(",\"tokens\":");
  append_uint(out, stats.emb_tokens);
  out.append("}}");
}

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
  struct sigaction sa {
  }, old_int{}, old_term{};
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
