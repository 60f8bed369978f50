// What a run reports: per node, the HTTP client and the whole run. Serialised as JSON for
// --report and for a worker's report to its launcher, folded over workers by the launcher, and
// shown as a table. Every field is listed once (run_report.cpp's visit_* functions): to_json,
// from_json and add_worker all walk that list.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/metrics/histogram.hpp"
#include "engine/node.hpp"

namespace sluice {

struct NodeReport {
  std::string id;
  std::string type;
  NodeRole role = NodeRole::transform;
  int concurrency = 0;
  uint64_t in = 0;
  uint64_t out = 0;
  uint64_t errors = 0;
  double busy_s = 0;
  uint64_t tokens = 0;  // upstream usage (embedding tokens)
  double cost_usd = 0;
  // Sampled every 100 ms: records waiting at the node's input (in the flow graph, plus work an
  // I/O node holds for a slot under its concurrency), and an I/O node's requests in flight.
  // Summed over workers in a multi-process report.
  double queue_mean = 0;
  uint64_t queue_peak = 0;
  double in_flight_mean = 0;
  uint64_t in_flight_peak = 0;
  bool io = false;  // an I/O node: `concurrency` caps requests in flight
  // Share of capacity used: an I/O node's mean in flight / concurrency; a CPU node's busy time /
  // (elapsed x parallel bodies it could run, at most the threads).
  double utilization(double elapsed_s, int threads) const;
};

// HTTP client counters of a run (all I/O nodes of a process share one client).
struct HttpReport {
  uint64_t requests = 0;  // submitted requests that finished, successful or not
  uint64_t attempts = 0;  // transfers, retries included
  uint64_t retries = 0;
  uint64_t throttled = 0;    // 429 answers
  uint64_t failed = 0;       // requests that finally failed
  double loop_cpu_s = 0;     // CPU time of the HTTP loop thread (summed over processes)
  LatencyHistogram latency;  // per attempt

  double loop_cpu_us_per_request() const {
    return requests > 0 ? 1e6 * loop_cpu_s / static_cast<double>(requests) : 0;
  }
  // Adds another process's figures (the launcher's sum over its workers).
  void merge(const HttpReport& other);
};

struct RunReport {
  std::string graph;
  std::string config_hash;
  int threads = 0;
  int max_inflight_docs = 0;
  std::string shard;               // "i/N" this run handled; "0/1" = everything
  uint64_t docs = 0;               // source documents admitted
  uint64_t docs_skipped_done = 0;  // skipped: done in an earlier run (--resume)
  uint64_t chunks = 0;             // records the chunkers produced
  uint64_t indexed = 0;            // record outcomes
  uint64_t filtered = 0;
  uint64_t dead_lettered = 0;
  uint64_t lost = 0;  // documents with a record that vanished without an outcome
  uint64_t docs_indexed = 0;
  uint64_t docs_filtered = 0;
  uint64_t docs_dead_lettered = 0;
  // Records a sink did not take because one with their id reached it before in this run (the
  // first is kept; the rest are counted in `filtered`), and one such id.
  uint64_t duplicate_ids = 0;
  std::string duplicate_id_example;
  int64_t peak_inflight_docs = 0;
  double elapsed_s = 0;
  uint64_t peak_rss_bytes = 0;
  uint64_t tokens = 0;
  double cost_usd = 0;
  double cpu_s = 0;  // user + system CPU time of the run (all workers of a launcher)
  uint64_t peak_rss_total_bytes =
      0;  // the sum of every worker's peak (= peak_rss_bytes for one process)
  HttpReport http;
  bool interrupted = false;
  std::string error;  // fatal run error, empty on success
  std::vector<NodeReport> nodes;
  // Multi-process runs (the launcher): worker restarts and each worker's own report as JSON.
  int restarts = 0;
  std::vector<std::string> workers_json;

  double docs_per_s() const { return elapsed_s > 0 ? docs / elapsed_s : 0; }
  std::string to_json() const;
  // Reads what to_json wrote (a worker's report, in the launcher). False if it is not a report.
  static bool from_json(std::string_view text, RunReport& out);
  std::string table() const;  // human summary
  // Folds one worker's report into this job's (the launcher): counts and CPU add up, peak RSS is
  // the largest worker's (and peak_rss_total_bytes their sum), the first error is kept.
  void add_worker(const RunReport& worker);
  // 0 ok; 1 failed or lost > 0; 130 interrupted.
  int exit_code() const;
};

}  // namespace sluice
