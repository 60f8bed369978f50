// `sluice run GRAPH --processes P`: forks and execs P workers of this binary, each running one
// sub-shard of this process's shard with its own TBB arena and curl loop, and supervises them.
// Runs on the calling thread and blocks until every worker ended.
//
// - Workers stay in the launcher's process group and get SIGKILL when the launcher dies
//   (PR_SET_PDEATHSIG), so a kill -9 of the launcher or of its group leaves no worker running.
// - Each worker writes JSON-lines events (progress, then its report) to fd 3, a pipe read here;
//   the launcher shows one progress line and returns one report with a `workers` array.
// - A worker that dies (signal or non-zero exit) is started again (it resumes from the shared
//   checkpoint ledger) up to `max_restarts` times.
// - `interrupt` set (SIGINT/SIGTERM to the launcher): workers get SIGINT, drain and end; the
//   report says interrupted.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "engine/graph/graph_runner.hpp"

namespace sluice {

struct LaunchPlan {
  std::string self_exe;                  // this binary (/proc/self/exe)
  std::vector<std::string> worker_args;  // "run GRAPH ... --shard i/N": --worker w/P is appended
  int processes = 2;
  int threads_per_worker = 1;
  int max_restarts = 3;
  bool progress_line = false;    // redraw one progress line on stderr (a TTY)
  double events_interval_s = 0;  // > 0: JSON-lines progress events on stderr
  const std::atomic<bool>* interrupt = nullptr;
  // Set at a second Ctrl-C: workers are told again (they stop where they stand and report) and
  // those still running 3 s later are killed.
  const std::atomic<bool>* abort = nullptr;
  // Called about twice a second with the job's figures so far (the workers' latest snapshots
  // folded together, with what crashed attempts had done): what --metrics-addr serves.
  std::function<void(const RunReport&)> on_totals;
};

RunReport launch_workers(const GraphSpec& spec, const LaunchPlan& plan);

// The job's figures while it runs (what --metrics-addr serves under -P): each worker's latest
// (its final report once it ended, else its latest snapshot), plus what its earlier attempts
// had counted by their last snapshot, so that a restarted worker's counters never go back.
class JobTotals {
 public:
  explicit JobTotals(size_t workers) : _workers(workers) {}
  void snapshot(size_t worker, RunReport r);  // a running attempt's figures so far
  void report(size_t worker, RunReport r);    // an attempt's final report
  void restarted(size_t worker);              // the attempt ended; the next starts from zero
  RunReport totals(const GraphSpec& spec, double elapsed_s, int threads) const;

 private:
  struct Slot {
    bool have_latest = false, have_earlier = false;
    RunReport latest, earlier;
    int restarts = 0;
  };
  std::vector<Slot> _workers;
};

// The event a worker writes last: its report, on one line.
std::string report_event(const RunReport& report);
// The event a worker writes twice a second while it runs: its report so far.
std::string snapshot_event(const RunReport& report);

}  // namespace sluice
