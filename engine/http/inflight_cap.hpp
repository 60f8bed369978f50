// Caps an I/O node's requests in flight: work past the cap waits in a FIFO until a request
// finishes. The cap is fixed (`concurrency`: N) or adaptive (`"concurrency": "adaptive"`: AIMD
// between 1 and N, see AimdLimit). Thread-safe (process() on TBB workers, completions on the
// HTTP loop); never blocks.
#pragma once

#include "engine/http/adaptive_limit.hpp"

#include <deque>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace sluice {

template <class Work>
class InflightCap {
 public:
  // cap <= 0: unlimited (adaptive needs a cap).
  explicit InflightCap(int cap, bool adaptive = false) : _cap(cap > 0 ? cap : 1 << 30) {
    if (adaptive) _aimd.emplace(_cap);
  }

  // True: start `w` now. False: it was queued and will come back from done().
  bool admit(Work& w) {
    std::lock_guard lock(_mu);
    if (_inflight < limit()) {
      ++_inflight;
      if (_aimd) _aimd->on_start(_inflight);
      return true;
    }
    _queue.push_back(std::move(w));
    return false;
  }

  // For load sampling: work waiting and work admitted; an adaptive cap's limit now and the
  // highest it reached (0 for a fixed cap).
  struct Figures {
    size_t queued = 0;
    size_t in_flight = 0;
    int limit = 0;
    int peak = 0;
  };
  Figures load() const {
    std::lock_guard lock(_mu);
    return {_queue.size(), static_cast<size_t>(_inflight), _aimd ? _aimd->limit() : 0,
            _aimd ? _aimd->peak() : 0};
  }

  // Adaptive caps learn from every attempt of `req` (an http::Request): its round-trip time and
  // whether the upstream pushed back. Each attempt, not each final result: a request retried
  // after a 503 reports it at once, not after its backoff.
  template <class Request>
  void watch(Request& req) {
    if (_aimd) req.on_attempt = [this](const auto& a) { observe(a.rtt_s, a.pushed_back()); };
  }

  // Feedback without a round trip (rtt_s < 0), e.g. _bulk items refused inside a 200.
  void observe(double rtt_s, bool backpressure) {
    if (!_aimd) return;
    std::lock_guard lock(_mu);
    _aimd->observe(rtt_s, backpressure, AimdLimit::Clock::now());
  }

  // A request finished: `start` is called (outside the lock) with each queued work that now
  // fits under the limit — none, one, or more after an adaptive limit grew.
  template <class Start>
  void done(Start&& start) {
    std::vector<Work> next;
    {
      std::lock_guard lock(_mu);
      --_inflight;
      while (!_queue.empty() && _inflight < limit()) {
        ++_inflight;
        if (_aimd) _aimd->on_start(_inflight);
        next.push_back(std::move(_queue.front()));
        _queue.pop_front();
      }
    }
    for (Work& w : next) start(std::move(w));
  }

 private:
  int limit() const { return _aimd ? _aimd->limit() : _cap; }  // under _mu

  int _cap;
  std::optional<AimdLimit> _aimd;
  mutable std::mutex _mu;
  int _inflight = 0;
  std::deque<Work> _queue;
};

}  // namespace sluice
