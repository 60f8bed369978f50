// Caps an I/O node's requests in flight: work past the cap waits in a FIFO until a request
// finishes. Thread-safe (process() on TBB workers, completions on the HTTP loop); never blocks.
#pragma once

#include <deque>
#include <mutex>
#include <optional>
#include <utility>

namespace sluice {

template <class Work>
class InflightCap {
 public:
  explicit InflightCap(int cap) : _cap(cap > 0 ? cap : 1 << 30) {}

  // True: start `w` now. False: it was queued and will come back from done().
  bool admit(Work& w) {
    std::lock_guard lock(_mu);
    if (_inflight < _cap) {
      ++_inflight;
      return true;
    }
    _queue.push_back(std::move(w));
    return false;
  }

  // Work waiting and work admitted, for load sampling.
  std::pair<size_t, size_t> load() const {
    std::lock_guard lock(_mu);
    return {_queue.size(), static_cast<size_t>(_inflight)};
  }

  // A request finished: the next queued work to start in its place, if any.
  std::optional<Work> done() {
    std::lock_guard lock(_mu);
    if (_queue.empty()) {
      --_inflight;
      return std::nullopt;
    }
    Work w = std::move(_queue.front());
    _queue.pop_front();
    return w;
  }

 private:
  int _cap;
  mutable std::mutex _mu;
  int _inflight = 0;
  std::deque<Work> _queue;
};

}  // namespace sluice
