#include "nodes/replaced_docs.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

namespace sluice {

ReplacedDocs::ReplacedDocs() {
  std::random_device rd;
  uint64_t v = (uint64_t{rd()} << 32) ^ rd() ^
               static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  _mark = buf;
}

void ReplacedDocs::written(const std::string& doc_id) {
  std::lock_guard lock(_mu);
  _written.insert(doc_id);
}

void ReplacedDocs::refused(const std::string& doc_id) {
  std::lock_guard lock(_mu);
  _refused.insert(doc_id);
}

std::vector<std::vector<std::string>> ReplacedDocs::to_clean(size_t per_group) const {
  std::vector<std::string> docs;
  {
    std::lock_guard lock(_mu);
    for (const auto& d : _written)
      if (!_refused.count(d)) docs.push_back(d);
  }
  std::sort(docs.begin(), docs.end());
  std::vector<std::vector<std::string>> groups;
  for (size_t i = 0; i < docs.size(); i += per_group)
    groups.emplace_back(docs.begin() + static_cast<std::ptrdiff_t>(i),
                        docs.begin() +
                            static_cast<std::ptrdiff_t>(std::min(i + per_group, docs.size())));
  return groups;
}

NodeCost batched_sink_cost(const Params& p, const CostInput& in) {
  NodeCost c;
  c.io = true;
  c.requests_per_doc = in.chunks_per_doc / std::max(1.0, p.number("batch"));
  return c;
}

}  // namespace sluice
