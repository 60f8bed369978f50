// The record ids one sink has taken in this run: the engine's one rule for duplicate ids. The
// first record with an id reaches the sink; a later one is filtered as "duplicate id" and counted
// (RunReport::duplicate_ids). Documents are sharded by id, so a process sees every record of its
// documents and the rule holds job-wide.
//
// Holds 64-bit hashes of the ids (stable_hash64), 16 bytes per id at most: two different ids
// collide with probability about n^2 / 2^65 (3e-6 at ten million ids). Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string_view>
#include <vector>

#include "engine/text/text.hpp"

namespace sluice {

class IdSet {
 public:
  // True if `id` was not in the set (it is now).
  bool insert(std::string_view id) {
    uint64_t h = text::stable_hash64(id);
    if (h == 0) h = 1;  // 0 marks an empty slot
    std::lock_guard lock(_mu);
    if ((_size + 1) * 2 > _slots.size()) grow();
    if (!place(_slots, h)) return false;
    ++_size;
    return true;
  }

  size_t size() const {
    std::lock_guard lock(_mu);
    return _size;
  }

 private:
  // Linear probing in a power-of-two table; false if `h` is there already.
  static bool place(std::vector<uint64_t>& slots, uint64_t h) {
    const size_t mask = slots.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      if (slots[i] == h) return false;
      if (slots[i] == 0) {
        slots[i] = h;
        return true;
      }
    }
  }

  void grow() {
    std::vector<uint64_t> bigger(_slots.empty() ? 1024 : _slots.size() * 2, 0);
    for (uint64_t h : _slots)
      if (h != 0) place(bigger, h);
    _slots.swap(bigger);
  }

  mutable std::mutex _mu;
  std::vector<uint64_t> _slots;
  size_t _size = 0;
};

}  // namespace sluice
