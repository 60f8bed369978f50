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
};

RunReport launch_workers(const GraphSpec& spec, const LaunchPlan& plan);

// The event a worker writes last: its report, on one line.
std::string report_event(const RunReport& report);

}  // namespace sluice
