// The record ids one sink has taken, per document in flight: the engine's one rule for duplicate
// ids. The first record with an id reaches the sink; a later one of the same document (two
// branches that make the same chunk ids, or two documents with one id in flight at once) is
// filtered as "duplicate id" and counted (RunReport::duplicate_ids). A document's ids are
// forgotten when it completes, so memory stays bounded by the documents in flight; a document
// id that comes again after its first completed is written again (an upsert). Hashes
// (stable_hash64) stand for the ids: two ids of one document collide with probability about
// n^2 / 2^65. Thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/text/text.hpp"

namespace sluice {

class IdSet {
 public:
  // True if `id` was not taken yet for this document (it is now).
  bool insert(std::string_view doc_id, std::string_view id) {
    const uint64_t d = text::stable_hash64(doc_id), h = text::stable_hash64(id);
    std::lock_guard lock(_mu);
    std::vector<uint64_t>& ids = _by_doc[d];
    if (std::find(ids.begin(), ids.end(), h) != ids.end()) return false;
    ids.push_back(h);
    return true;
  }

  // The document completed: its ids go.
  void forget(std::string_view doc_id) {
    const uint64_t d = text::stable_hash64(doc_id);
    std::lock_guard lock(_mu);
    _by_doc.erase(d);
  }

 private:
  std::mutex _mu;
  std::unordered_map<uint64_t, std::vector<uint64_t>> _by_doc;
};

}  // namespace sluice
