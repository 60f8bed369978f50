#include "engine/http/client_impl.hpp"

namespace sluice::http {

namespace {

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* job = static_cast<Job*>(user);
  size_t len = size * n;
  if (job->resp.body.size() + len > job->req.max_bytes) {
    job->too_large = true;
    return 0;  // makes libcurl stop with CURLE_WRITE_ERROR
  }
  if (BodyBudget* b = job->budget; b && b->cap > 0 && b->held + len > b->cap) {
    if (!b->lead) b->lead = job;
    if (b->lead != job) {
      // libcurl keeps these bytes and hands them over again once release_body() resumes us.
      if (!job->paused) {
        job->paused = true;
        b->paused.push_back(job);
        ++b->pauses;
      }
      return CURL_WRITEFUNC_PAUSE;
    }
  }
  if (BodyBudget* b = job->budget) {
    b->held += len;
    b->peak = std::max(b->peak, b->held);
    job->held += len;
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

Client::Client(ClientOptions options) : _impl(std::make_unique<Impl>()) {
  global_init();
  _impl->opts = std::move(options);
  _impl->budget.cap = _impl->opts.max_body_bytes;
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
  s.rpm_waited = _impl->rpm_waited.load(std::memory_order_relaxed);
  s.tpm_waited = _impl->tpm_waited.load(std::memory_order_relaxed);
  s.in_flight = s.submitted - s.completed - s.failed;
  s.body_bytes_peak = _impl->body_peak.load(std::memory_order_relaxed);
  s.paused = _impl->pauses.load(std::memory_order_relaxed);
  clockid_t clock;
  timespec ts{};
  if (_impl->loop.joinable() && pthread_getcpuclockid(_impl->loop.native_handle(), &clock) == 0 &&
      clock_gettime(clock, &ts) == 0)
    s.loop_cpu_s = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  for (int i = 0; i < LatencyHistogram::kBuckets; ++i)
    s.latency.add_bucket(i, _impl->latency[static_cast<size_t>(i)].load(std::memory_order_relaxed));
  s.latency_sum_s =
      static_cast<double>(_impl->latency_sum_us.load(std::memory_order_relaxed)) / 1e6;
  for (int code = 0; code < kStatusSlots; ++code)
    if (uint64_t n = _impl->by_status[static_cast<size_t>(code)].load(std::memory_order_relaxed))
      s.by_status.emplace_back(code, n);
  return s;
}

namespace {

// Why `req` must not leave at all ("" when it may): a header that would inject more headers, or a
// URL with control characters (a request line split the same way).
std::string refused(const Request& req) {
  for (const auto& h : req.headers)
    if (std::string why = header_problem(h); !why.empty()) return why;
  for (char c : req.url)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return "the URL has a control character (CR, LF, NUL, ...): not requested";
  return {};
}

}  // namespace

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
    j->origin = origin_of(j->req.url);
    if (std::string why = refused(j->req); !why.empty()) {
      finish(j, why);
      continue;
    }
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
        if (!j->rate_waited) {
          j->rate_waited = true;
          (ok_r ? tpm_waited : rpm_waited).fetch_add(1, std::memory_order_relaxed);
        }
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
  j->budget = &budget;
  j->easy = e;
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
  // Redirects are followed by on_done, not libcurl: headers a config attached must not follow
  // one to another origin, and libcurl strips only Authorization and cookies.
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
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

// Refused, permanently: a chain past kMaxRedirects (loops included), a scheme other than http(s),
// and another origin when the request carries headers, unless that origin is trusted. A 303, and
// a 301 or 302 answering a POST, continue as a GET without the body (what browsers and libcurl
// do); 307 and 308 keep the method and body.
void Client::Impl::follow_redirect(Job* j, long status, const std::string& target,
                                   Clock::time_point now) {
  const std::string& from = j->origin;
  if (++j->redirects > kMaxRedirects) {
    finish(j, "HTTP " + std::to_string(status) + ": more than " + std::to_string(kMaxRedirects) +
                  " redirects (a loop?); not followed");
    return;
  }
  if (!is_http_url(target)) {
    finish(j, "HTTP " + std::to_string(status) + ": redirect to a refused scheme (\"" +
                  target.substr(0, std::min<size_t>(target.find(':'), 16)) +
                  "\"; only http and https); not followed");
    return;
  }
  const std::string to = origin_of(target);
  if (!j->req.headers.empty() && !headers_may_go(from, to, j->req.trusted_origins)) {
    finish(j, "HTTP " + std::to_string(status) + ": redirect from " + from + " to " + to +
                  " refused: the request carries headers configured for " + from +
                  " (add the origin to the node's trusted_origins to send them there)");
    return;
  }
  if ((status == 303 && j->req.method != "HEAD") ||
      ((status == 301 || status == 302) && j->req.method == "POST")) {
    j->req.method = "GET";
    j->req.body.clear();
  }
  j->req.url = target;
  timers.emplace(now, j);
}

void Client::Impl::release_body(Job* j) {
  budget.held -= j->held;
  j->held = 0;
  j->easy = nullptr;
  if (budget.lead == j) budget.lead = nullptr;
  if (j->paused) {
    j->paused = false;
    budget.paused.erase(std::find(budget.paused.begin(), budget.paused.end(), j));
  }
  body_peak.store(budget.peak, std::memory_order_relaxed);
  pauses.store(budget.pauses, std::memory_order_relaxed);
  // Every paused transfer tries again (one may become the lead); unpausing may call on_write at
  // once, which may pause it again, so the list is taken first.
  std::vector<Job*> waiting;
  waiting.swap(budget.paused);
  for (Job* w : waiting) {
    w->paused = false;
    if (w->easy) curl_easy_pause(w->easy, CURLPAUSE_CONT);
  }
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
  std::string location;  // where a 3xx points, resolved against the request's URL
  if (status >= 300 && status < 400) {
    char* u = nullptr;
    if (curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &u) == CURLE_OK && u) location = u;
  }
  curl_multi_remove_handle(p.multi, e);
  --p.active;
  running_handles.erase(e);
  release_body(j);
  curl_easy_reset(e);
  idle_handles.push_back(e);
  const double took = seconds_between(j->started, now);
  latency[static_cast<size_t>(LatencyHistogram::bucket_of(took))].fetch_add(
      1, std::memory_order_relaxed);
  latency_sum_us.fetch_add(static_cast<uint64_t>(took * 1e6), std::memory_order_relaxed);
  {
    long code = status;  // what came back, even if the transfer then failed (too large)
    by_status[static_cast<size_t>(code >= 100 && code < kStatusSlots ? code : 0)].fetch_add(
        1, std::memory_order_relaxed);
  }
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
    if (!location.empty()) {
      follow_redirect(j, status, location, now);
      return;
    }
    finish(j, "HTTP " + std::to_string(status));  // other 4xx (and a 3xx without Location): final
    return;
  }
  std::string why = curl_easy_strerror(rc);
  // A URL libcurl cannot use fails the same way every time: no retry.
  if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT ||
      rc == CURLE_TOO_MANY_REDIRECTS) {
    j->resp.status = 0;
    finish(j, why);
    return;
  }
  // Network error, timeout, reset: retry with backoff.
  if (++j->counted >= j->policy.max_attempts) {
    j->resp.status = 0;
    finish(j, why + " after " + std::to_string(j->counted) + " attempts");
    return;
  }
  retry_later(j, backoff(j), now);
}

}  // namespace sluice::http
