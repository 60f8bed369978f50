// The deploy/ templates against `sluice plan`: each one's layout (jobs x processes, read from
// the template itself) is predicted no slower than one process for the graph it runs, and the
// state and dead letters it writes land where the template keeps them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "engine/graph/graph_spec.hpp"
#include "nodes/builtin_nodes.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

struct Layout {
  int jobs = 0, processes = 0;
};

// The integer right after the first `key` in `text`; fails the test when there is none.
int number_after(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  int n = 0;
  if (at == std::string::npos || std::sscanf(text.c_str() + at + key.size(), "%d", &n) != 1) {
    ADD_FAILURE() << "no number after \"" << key << "\"";
    return 0;
  }
  return n;
}

// The plan's row for `jobs` x `procs`: its docs/s and the limit that binds.
struct Row {
  double docs_per_s = 0;
  std::string binds;
};
Row plan_row(const std::string& table, int jobs, int procs) {
  size_t start = 0;
  while (start < table.size()) {
    size_t end = table.find('\n', start);
    if (end == std::string::npos) end = table.size();
    const std::string line = table.substr(start, end - start);
    int j = 0, p = 0, workers = 0, used = 0;
    double rate = 0;
    if (std::sscanf(line.c_str(), "%d %d %d %lf %n", &j, &p, &workers, &rate, &used) == 4 &&
        j == jobs && p == procs)
      return {rate, line};
    start = end + 1;
  }
  ADD_FAILURE() << "no row " << jobs << " x " << procs << " in\n" << table;
  return {};
}

void expect_no_slower_than_one_process(const std::string& name, const std::string& graph,
                                       Layout l) {
  ASSERT_GT(l.jobs, 0) << name;
  ASSERT_GT(l.processes, 0) << name;
  // The backfill the seed plans: 34,000 works.
  auto r = test::run_sluice("plan " + graph + " --docs 34000 --jobs 1," + std::to_string(l.jobs) +
                            " --processes 1," + std::to_string(l.processes));
  ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
  const double one = plan_row(r.out, 1, 1).docs_per_s;
  const Row layout = plan_row(r.out, l.jobs, l.processes);
  EXPECT_GT(one, 0) << r.out;
  EXPECT_GE(layout.docs_per_s, one) << name << "'s " << l.jobs << " x " << l.processes
                                    << " is predicted slower than one process:\n"
                                    << r.out;
  EXPECT_EQ(layout.binds.find("pages the whole listing"), std::string::npos)
      << name << ": every process would page the whole listing\n"
      << r.out;
}

TEST(Deploy, EveryTemplatesLayoutIsPredictedNoSlowerThanOneProcess) {
  const std::string dir = test::source_dir() + "/deploy/";
  const std::string graph = "graphs/papers-backfill.json";

  const std::string gha = test::read_file(dir + "github-actions/papers-backfill.yml");
  const size_t list = gha.find("shard: [");
  ASSERT_NE(list, std::string::npos);
  const std::string shards = gha.substr(list, gha.find(']', list) - list);
  const int matrix = 1 + static_cast<int>(std::count(shards.begin(), shards.end(), ','));
  EXPECT_EQ(number_after(gha, "SHARDS: "), matrix) << "SHARDS = the matrix";
  expect_no_slower_than_one_process("github-actions", graph,
                                    {matrix, number_after(gha, "/$SHARDS --processes ")});

  const std::string k8s = test::read_file(dir + "kubernetes/indexed-job.yaml");
  const int completions = number_after(k8s, "completions: ");
  EXPECT_EQ(number_after(k8s, "\"--shards\", \""), completions);
  expect_no_slower_than_one_process("kubernetes", graph,
                                    {completions, number_after(k8s, "\"--processes\", \"")});

  const std::string array = test::read_file(dir + "slurm/array.sbatch");
  expect_no_slower_than_one_process(
      "slurm array", graph,
      {1 + number_after(array, "--array=0-"), number_after(array, "--cpus-per-task=")});

  const std::string srun = test::read_file(dir + "slurm/srun.sbatch");
  expect_no_slower_than_one_process(
      "slurm srun", graph,
      {number_after(srun, "sbatch -N "), number_after(srun, "--cpus-per-task=")});

  const std::string mpi = test::read_file(dir + "mpi/run.sh");
  expect_no_slower_than_one_process("mpi", graph, {number_after(mpi, "NP=${1:-"), 1});
}

// A job that is retried or resumed needs its ledger and its dead letters where the next
// attempt finds them: on the template's volume or in its saved artifact, one file per shard.
TEST(Deploy, StateAndDeadLettersLiveOnWhatTheTemplatesKeep) {
  GraphSpec spec =
      load_graph(test::source_dir() + "/graphs/papers-backfill.json", {}, builtin_registry());
  EXPECT_EQ(spec.settings.dead_letter, "")
      << "papers-backfill names no dead-letter file: the default is per shard, beside db";

  const std::string dir = test::source_dir() + "/deploy/";
  const std::string gha = test::read_file(dir + "github-actions/papers-backfill.yml");
  // The saved state artifact holds the ledger and the shard's dead letters (beside db in out/),
  // and is restored to the same place.
  EXPECT_NE(gha.find("--state out/state"), std::string::npos);
  EXPECT_NE(gha.find("db=out/papers-${shard}.db"), std::string::npos);
  const size_t save = gha.find("name: Save state"), restore = gha.find("name: Restore state");
  ASSERT_NE(save, std::string::npos);
  ASSERT_NE(restore, std::string::npos);
  EXPECT_NE(gha.find("path: |\n            out/state\n            "
                     "out/papers-backfill.dead-letter.*.jsonl\n",
                     save),
            std::string::npos)
      << gha;
  EXPECT_EQ(gha.find("path: out\n", restore), gha.find("path:", restore))
      << "restored where the run reads it";

  const std::string k8s = test::read_file(dir + "kubernetes/indexed-job.yaml");
  EXPECT_NE(k8s.find("mountPath: /data"), std::string::npos);
  EXPECT_NE(k8s.find(R"("--state", "/data/state")"), std::string::npos);
  EXPECT_NE(k8s.find("db=/data/papers-${shard}.db"), std::string::npos)
      << "db, and with it the dead letters, on the volume";

  for (const char* f : {"slurm/array.sbatch", "slurm/srun.sbatch", "mpi/run.sh"}) {
    const std::string t = test::read_file(dir + f);
    EXPECT_NE(t.find("db=out/papers-${shard}.db"), std::string::npos) << f;
    EXPECT_TRUE(t.find("$PWD/out/state") != std::string::npos ||
                t.find("--state out/state") != std::string::npos)
        << f << ": state beside the index, on the shared directory the job runs in";
  }
}

}  // namespace
}  // namespace sluice
