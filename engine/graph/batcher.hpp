// Collects records for batching nodes (sinks, embedders) and decides when a batch is due: full,
// older than linger, or forced at end of input. Thread-safe: process() on a worker and flush() on
// the runner's thread may race; whoever takes a batch owns it alone.
#pragma once

#include <chrono>
#include <mutex>
#include <vector>

#include "engine/record.hpp"

namespace sluice {

class Batcher {
 public:
  using Clock = std::chrono::steady_clock;
  Batcher(size_t max_items, int linger_ms)
      : _max(max_items), _linger(std::chrono::milliseconds(linger_ms)) {}

  // Adds `r`; returns a full batch to write now, or an empty vector.
  std::vector<RecordPtr> add(RecordPtr r, size_t bytes = 0) {
    std::lock_guard lock(_mu);
    if (_items.empty()) _oldest = Clock::now();
    _items.push_back(std::move(r));
    _bytes += bytes;
    if (_items.size() >= _max || (_max_bytes && _bytes >= _max_bytes)) return take_locked();
    return {};
  }

  // The pending batch if it waited `linger` (or `force`), else empty.
  std::vector<RecordPtr> take_due(bool force) {
    std::lock_guard lock(_mu);
    if (_items.empty()) return {};
    if (!force && Clock::now() - _oldest < _linger) return {};
    return take_locked();
  }

  bool pending() const {
    std::lock_guard lock(_mu);
    return !_items.empty();
  }
  void set_max_bytes(size_t b) { _max_bytes = b; }

 private:
  std::vector<RecordPtr> take_locked() {
    std::vector<RecordPtr> out;
    out.swap(_items);
    _items.reserve(out.size());
    _bytes = 0;
    return out;
  }

  size_t _max;
  size_t _max_bytes = 0;
  std::chrono::milliseconds _linger;
  mutable std::mutex _mu;
  std::vector<RecordPtr> _items;
  size_t _bytes = 0;
  Clock::time_point _oldest;
};

}  // namespace sluice
