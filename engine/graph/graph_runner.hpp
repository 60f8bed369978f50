// Runs a validated GraphSpec on a oneTBB flow graph inside a task_arena of `threads` threads.
// Sources are pulled through a limiter_node on in-flight documents; a document's slot is released
// when its completion ticket closes. run_graph() blocks the calling thread until the graph drains.
#pragma once

#include <sys/resource.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/graph/graph_spec.hpp"
#include "engine/graph/progress.hpp"
#include "engine/graph/run_report.hpp"
#include "engine/metrics/process_stats.hpp"
#include "engine/state/file_lock.hpp"
#include "engine/state/shard.hpp"

namespace sluice {

class CheckpointLedger;

struct RunOptions {
  int threads = 0;               // > 0 overrides settings.threads
  bool progress_line = false;    // redraw a progress line on stderr (a TTY)
  bool quiet = false;            // say nothing on stderr (warnings go to the report only)
  double events_interval_s = 0;  // > 0: JSON-lines progress events on stderr
  const std::atomic<bool>* interrupt = nullptr;  // set (e.g. by SIGINT) to stop pulling sources
  int events_fd = -1;  // >= 0: JSON-lines events go to this fd (a worker's pipe to its launcher)

  // Scale-out (all optional). Sources skip documents outside this process's part of the job
  // (`shard`, split among `workers` local processes, this one being `worker`) and those in `skip`
  // before admission, so they cost no slot, no fetch and no record.
  ShardSpec shard;
  int worker = 0;
  int workers = 1;
  // How many processes the caller divided the spec's job-total limits among (split_job_limits),
  // for nodes that take a share of their own (a partitioned listing): 1 = not divided.
  int limit_sharers = 1;
  CheckpointLedger* ledger = nullptr;  // done documents are recorded here
  std::string state_dir;               // the job's state directory (NodeInit::state_dir); "" = none
  const std::unordered_set<std::string>* skip = nullptr;  // done in an earlier run (--resume)
  bool reset_outputs =
      true;  // call NodeTypeInfo::reset_outputs before the run (fresh, one process)
  bool merge_outputs = true;  // call NodeTypeInfo::merge_outputs after it (one process, no worker)
  // Called from the runner's ticker thread about four times a second with the report's counts
  // so far: what a run stopped at once (a second Ctrl-C) can still report.
  std::function<void(const RunReport&)> on_snapshot;
};

RunReport run_graph(const GraphSpec& spec, const RunOptions& options = {});

// The NodeTypeInfo::reset_outputs / merge_outputs hooks of every node in `spec`; reset_outputs
// also empties the dead-letter file. The launcher calls these once per job; a single-process
// run_graph calls them itself. Throw on failure.
void reset_outputs(const GraphSpec& spec, const ShardSpec& shard);
// `finished`: the run ended without an error or an interrupt.
void merge_outputs(const GraphSpec& spec, const ShardSpec& shard, bool finished);

// Locks, for one job (one shard of it), every output a fresh run replaces and a merge writes
// (index.jsonl's file): PATH.lock, or PATH.sI-of-N.lock for a shard, removed when released.
// Taken by the job's owner (the single process or the launcher) before anything is reset.
// Throws std::runtime_error naming the process that holds one.
std::vector<FileLock> lock_outputs(const GraphSpec& spec, const ShardSpec& shard);

}  // namespace sluice
