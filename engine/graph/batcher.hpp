// Collects records for batching nodes (sinks, embedders) and decides when a batch is due: full
// (items or bytes), older than linger, or forced at end of input. Thread-safe: process() on a
// worker and flush() on the runner's thread may race; whoever takes a batch owns it alone.
//
// A sink that writes bytes (index.jsonl) hands each record's text to add(); the batch then
// carries them appended in order, and recycle() gives the written buffer back so the next batch
// reuses its capacity (a fresh buffer per batch, megabytes grown by doubling and freed on
// whichever thread wrote it, made peak RSS vary run to run).
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/record.hpp"

namespace sluice {

class Batcher {
 public:
  using Clock = std::chrono::steady_clock;
  struct Batch {
    std::vector<RecordPtr> items;
    std::string text;  // what add() was given to append, in the items' order
    size_t bytes = 0;  // what add() counted for the items
    bool empty() const { return items.empty(); }
  };

  Batcher(size_t max_items, int linger_ms)
      : _max(max_items), _linger(std::chrono::milliseconds(linger_ms)) {}

  // Adds `r`, counting `bytes` against set_max_bytes; returns a full batch to write now, or an
  // empty one.
  Batch add(RecordPtr r, size_t bytes = 0) { return add(std::move(r), bytes, {}); }
  // Adds `r` and appends `text` to the batch's text.
  Batch add(RecordPtr r, std::string_view text) { return add(std::move(r), text.size(), text); }

  // The pending batch if it waited `linger` (or `force`), else an empty one.
  Batch take_due(bool force) {
    std::lock_guard lock(_mu);
    if (_pending.items.empty()) return {};
    if (!force && Clock::now() - _oldest < _linger) return {};
    return take_locked();
  }

  // Gives a written batch's text buffer back for the next batch to reuse.
  void recycle(std::string&& text) {
    text.clear();
    std::lock_guard lock(_mu);
    if (_spare.capacity() < text.capacity()) _spare.swap(text);
  }

  bool pending() const {
    std::lock_guard lock(_mu);
    return !_pending.items.empty();
  }
  void set_max_bytes(size_t b) { _max_bytes = b; }
  // Before records arrive: a sink that learns its server's batch limit when it opens.
  void set_max_items(size_t n) { _max = n; }

 private:
  Batch add(RecordPtr r, size_t bytes, std::string_view text) {
    std::lock_guard lock(_mu);
    if (_pending.items.empty()) _oldest = Clock::now();
    _pending.items.push_back(std::move(r));
    _pending.text += text;
    _bytes += bytes;
    if (_pending.items.size() >= _max || (_max_bytes && _bytes >= _max_bytes)) return take_locked();
    return {};
  }

  Batch take_locked() {
    Batch out;
    std::swap(out, _pending);
    out.bytes = _bytes;
    _pending.items.reserve(out.items.size());
    _pending.text.swap(_spare);
    _bytes = 0;
    return out;
  }

  size_t _max;
  size_t _max_bytes = 0;
  std::chrono::milliseconds _linger;
  mutable std::mutex _mu;
  Batch _pending;
  std::string _spare;  // an empty buffer with capacity, for the next batch's text
  size_t _bytes = 0;
  Clock::time_point _oldest;
};

}  // namespace sluice
