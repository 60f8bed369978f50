// What a run reports: per node, the HTTP client and the whole run. Serialised as JSON for
// --report and for a worker's report to its launcher, folded over workers by the launcher, and
// shown as a table. Every field is listed once (run_report.cpp's visit_* functions): to_json,
// from_json and add_worker all walk that list.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
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
  // Outputs that began a document of their own, under another doc_id than their input's (a
  // Sefaria book followed into its sections by fetch.http, elements split off by expand.json).
  uint64_t docs_out = 0;
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
  // The last sample of both: what a metrics scrape shows while the run goes on.
  uint64_t queue_now = 0;
  uint64_t in_flight_now = 0;
  bool io = false;  // an I/O node: `concurrency` caps requests in flight
  // Adaptive concurrency: `concurrency` is the ceiling; the limit the node had at the end of the
  // run and the highest it reached (sums over workers, as `concurrency`).
  bool adaptive = false;
  int limit = 0;
  int limit_peak = 0;
  // Share of capacity used: an I/O node's mean in flight / concurrency; a CPU node's busy time /
  // (elapsed x parallel bodies it could run, at most the threads).
  double utilization(double elapsed_s, int threads) const;
};

// HTTP client counters of a run (all I/O nodes of a process share one client).
struct HttpReport {
  uint64_t requests = 0;  // submitted requests that finished, successful or not
  uint64_t attempts = 0;  // transfers, retries included
  uint64_t retries = 0;
  uint64_t throttled = 0;  // 429 answers
  uint64_t failed = 0;     // requests that finally failed
  // Requests that waited for a rate limit (an rpm, else a tpm): what tells that it bound.
  uint64_t rpm_waited = 0;
  uint64_t tpm_waited = 0;
  double loop_cpu_s = 0;     // CPU time of the HTTP loop thread (summed over processes)
  LatencyHistogram latency;  // per attempt
  double latency_sum_s = 0;  // the attempts' durations summed
  // Attempts by the status they ended with, in order of status; 0 = no response.
  std::vector<std::pair<int, uint64_t>> by_status;

  double loop_cpu_us_per_request() const {
    return requests > 0 ? 1e6 * loop_cpu_s / static_cast<double>(requests) : 0;
  }
  // Adds another process's figures (the launcher's sum over its workers).
  void merge(const HttpReport& other);
  // Adds `n` attempts that ended with `code`, keeping by_status in order.
  void add_status(int code, uint64_t n);
};

// Dead letters of one node for one reason (OutcomeLog::reason_key).
struct ReasonCount {
  std::string node;
  std::string reason;
  uint64_t count = 0;
};
// The most frequent first; ties by node, then reason.
void sort_reasons(std::vector<ReasonCount>& reasons);

struct RunReport {
  std::string graph;
  std::string config_hash;
  int threads = 0;
  int max_inflight_docs = 0;
  std::string shard;               // "i/N" this run handled; "0/1" = everything
  uint64_t docs = 0;               // source documents admitted
  uint64_t docs_skipped_done = 0;  // skipped: done in an earlier run (--resume)
  uint64_t chunks = 0;             // records the chunkers produced
  uint64_t indexed = 0;  // records indexed by the sink that took the most (per sink: its `out`)
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
  int64_t inflight_docs = 0;  // admitted and not yet done, as the report was taken
  double elapsed_s = 0;
  uint64_t peak_rss_bytes = 0;
  uint64_t tokens = 0;
  double cost_usd = 0;
  double cpu_s = 0;  // user + system CPU time of the run (all workers of a launcher)
  uint64_t peak_rss_total_bytes =
      0;  // the sum of every worker's peak (= peak_rss_bytes for one process)
  HttpReport http;
  // Where dead letters went ("" = nowhere), and how many per node and reason.
  std::string dead_letter_file;
  std::vector<ReasonCount> dead_letter_reasons;
  // What the run noticed that the user should know (a pointer that matched nothing), once each.
  std::vector<std::string> warnings;
  bool interrupted = false;
  std::string error;  // fatal run error, empty on success
  std::vector<NodeReport> nodes;
  // Multi-process runs (the launcher): worker restarts and each worker's own report as JSON.
  int restarts = 0;
  std::vector<std::string> workers_json;

  double docs_per_s() const { return elapsed_s > 0 ? docs / elapsed_s : 0; }
  // Graphs whose source items expand into documents (books into sections): the last node that
  // began documents of its own, or null when none did.
  const NodeReport* expander() const;
  // What a source item is called in the summary and progress line: the source node's id when
  // the graph has one source and its items expand, else "docs".
  std::string source_unit() const;
  std::string to_json() const;
  // Reads what to_json wrote (a worker's report, in the launcher). False if it is not a report.
  static bool from_json(std::string_view text, RunReport& out);
  std::string table() const;  // human summary
  // What bound the run, a line each with what to do about it (empty when nothing stood out): an
  // I/O node at its cap with work queued behind it, a rate limit most requests waited for,
  // 429s with no rate limit set, CPU, settings.max_inflight_docs.
  std::vector<std::string> binding_limits() const;
  // Folds one worker's report into this job's (the launcher): counts and CPU add up, peak RSS is
  // the largest worker's (and peak_rss_total_bytes their sum), the first error is kept.
  void add_worker(const RunReport& worker);
  // 0 ok; 1 failed or lost > 0; 130 interrupted.
  int exit_code() const;
  // Fails a finished run (sets `error`) whose share of dead-lettered documents is above
  // `max_ratio`, and always one in which every document was dead-lettered.
  void judge_dead_letters(double max_ratio);
};

}  // namespace sluice
