// What the sinks writing to a store of their own share (index.elasticsearch, index.chroma,
// index.postgres): the replace_docs rule, and their cost for `sluice plan`.
#pragma once

#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/node.hpp"

namespace sluice {

// replace_docs: every chunk a process writes carries its run mark; after a run that settled,
// each document it wrote loses the chunks that carry another mark (an earlier run's, which this
// one did not write again). A document with a chunk refused in this run is left out: the
// earlier copy of that chunk is all the store has. Thread-safe.
class ReplacedDocs {
 public:
  ReplacedDocs();  // a fresh mark: 16 hex digits, different for every process and run
  const std::string& mark() const { return _mark; }
  void written(const std::string& doc_id);
  void refused(const std::string& doc_id);
  // The documents whose other-marked chunks go (written and never refused), sorted, in groups
  // of at most `per_group` (one delete request each).
  std::vector<std::vector<std::string>> to_clean(size_t per_group = 500) const;

 private:
  std::string _mark;
  mutable std::mutex _mu;
  std::unordered_set<std::string> _written, _refused;  // doc ids, under _mu
};

// A sink that sends `batch` records a request: its requests per source document.
NodeCost batched_sink_cost(const Params& p, const CostInput& in);

}  // namespace sluice
