// `sluice plan GRAPH --docs N`: what a job will cost and how long it will take, from the graph's
// own limits (I/O concurrency, rpm, tpm, batch sizes, prices), for a table of job × process
// counts, naming the limit that binds in each row. A steady-state model: no retries, no ramp-up.
#pragma once

#include <string>
#include <vector>

#include "engine/graph/graph_spec.hpp"

namespace sluice {

struct PlanInput {
  double docs = 0;
  double latency_s = 0.2;     // per request
  double doc_chars = 2000;    // text per document, for chunk and token counts
  double cpu_ms_per_doc = 0;  // CPU time per document on one thread (0 = not a limit)
  int threads = 1;            // threads per process
  std::vector<int> jobs = {1};
  std::vector<int> processes = {1};
};

struct PlanStage {
  std::string node;
  std::string what;     // "requests", "pages"
  double requests = 0;  // for the whole job
  double tokens = 0;
  double cost_usd = 0;
  bool split = false;  // a listing whose pages are split among the processes
  double parts = 0;    // ... by partitions: how many
};

struct PlanRow {
  int jobs = 1;
  int processes = 1;
  double docs_per_s = 0;
  double wall_s = 0;
  std::string binds;  // the limit that sets docs_per_s
};

struct Plan {
  double chunks_per_doc = 1;
  double tokens = 0;
  double cost_usd = 0;
  std::vector<PlanStage> stages;  // per I/O node, for one job of `jobs` = 1
  std::vector<PlanRow> rows;
};

Plan make_plan(const GraphSpec& spec, const PlanInput& in);
std::string plan_table(const GraphSpec& spec, const PlanInput& in, const Plan& plan);

}  // namespace sluice
