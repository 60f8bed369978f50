// `sluice bench GRAPH`: runs the graph fresh for every (threads, processes) combination, each
// `repeat` times after `warmup` discarded runs, as child processes of this binary
// (`sluice run ... --report`), and writes DIR/results.csv, DIR/results.json and
// DIR/throughput.svg. When the graph declares a `sim` var and `--set sim=...` is not given, a
// `sluice sim` (in this process, on its own thread) is started fresh for every run and the graph
// is pointed at it. Runs on the calling thread; blocks until the sweep ends or `interrupt` is set.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "engine/graph/graph_runner.hpp"
#include "sim/sim.hpp"

namespace sluice {

struct BenchOptions {
  std::string graph;
  std::vector<int> threads;  // empty: 1, 2, 4 ... up to the cores
  std::vector<int> processes = {1};
  int repeat = 3;
  int warmup = 1;
  std::string sim;  // "latency-ms=50,rpm=60000,error-rate=0.01"
  std::vector<std::string> sets;
  std::string out_dir;          // empty: out/bench-<graph name>
  double run_timeout_s = 1800;  // a run still going after this is interrupted and counted failed
  std::string self_exe;         // this binary, for the child runs
  std::string command_line;     // recorded in results.json
  bool quiet = false;
  const std::atomic<bool>* interrupt = nullptr;
};

// Parses --sim "k=v,k=v" into sim options (the `sluice sim` flag names without dashes).
// Throws std::invalid_argument naming the bad key or value.
sim::SimOptions parse_sim_flags(const std::string& text);

// One finished run of a combination.
struct BenchRun {
  RunReport report;
  double cpu_s = 0;  // user + system of the child and its workers (wait4)
  int exit_code = 0;
  std::string failure;  // empty when the run succeeded
};

struct BenchRow {
  int threads = 1;
  int processes = 1;
  std::vector<BenchRun> runs;  // measured runs (warmups excluded)
  size_t median = 0;           // index into runs: the run with the median docs/s
  double docs_per_s_min = 0, docs_per_s_max = 0;
  double ideal_docs_per_s = 0;  // 0 = unknown
  std::string ideal_from;       // what sets the ideal
  std::string bottleneck;
  std::string busiest_node;
  double busiest_utilization = 0;
  int failed_runs = 0;
};

// The CSV columns, in order (documented in README "Benchmarking").
const std::vector<std::string>& bench_csv_columns();

int run_bench(const BenchOptions& options);

// Exposed for tests: the files bench writes from finished rows.
std::string bench_csv(const std::vector<BenchRow>& rows);
std::string bench_svg(const std::string& title, const std::vector<BenchRow>& rows);

}  // namespace sluice
