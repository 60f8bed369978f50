// deploy/slurm's templates on a real one-node Slurm (scripts/slurm-local: munged, slurmctld and
// slurmd from Debian, started on loopback in a temp dir): the array job and the srun variant,
// unchanged but for paths, give the index of one process; an array cancelled mid-run and
// submitted again resumes to the same index.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Runs `cmd` in a shell; its stdout (trailing newlines dropped), and its exit status.
std::string shell(const std::string& cmd, int* status = nullptr) {
  test::TempDir tmp;
  int rc = std::system((cmd + " > '" + tmp / "out" + "' 2>&1").c_str());
  if (status) *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::string out = test::read_file(tmp / "out");
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class LocalSlurm {
 public:
  LocalSlurm() {
    int rc = 0;
    _start = shell(
        "'" + test::source_dir() + "/scripts/slurm-local' start '" + _dir / "slurm" + "' 16", &rc);
    _up = rc == 0;
  }
  ~LocalSlurm() {
    (void)!std::system(
        ("'" + test::source_dir() + "/scripts/slurm-local' stop '" + _dir / "slurm" + "'").c_str());
  }
  bool up() const { return _up; }
  std::string why() const { return _start; }
  // `cmd` with this cluster's config.
  std::string with_conf(const std::string& cmd) const {
    return "SLURM_CONF='" + _dir / "slurm/slurm.conf" + "' " + cmd;
  }
  // Waits until job `id` has left the queue (false after `timeout`).
  bool wait_done(const std::string& id, std::chrono::seconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (shell(with_conf("squeue -h -j " + id)).empty()) return true;
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }
  std::string logs() const {
    return test::read_file(_dir / "slurm/log/slurmctld.log") +
           test::read_file(_dir / "slurm/log/slurmd.log");
  }

 private:
  test::TempDir _dir;
  std::string _start;
  bool _up = false;
};

// Every chunk (id and text) of the SQLite indexes named.
std::set<std::string> chunks(const std::vector<std::string>& dbs) {
  std::set<std::string> out;
  for (const auto& db : dbs) {
    sqlite3* h = nullptr;
    sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(h, "SELECT id, text FROM chunks", -1, &s, nullptr);
    while (s && sqlite3_step(s) == SQLITE_ROW)
      out.insert(std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) + "\t" +
                 reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
    sqlite3_finalize(s);
    sqlite3_close(h);
  }
  return out;
}

class Slurm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1")) {
      if (std::getenv("CI")) FAIL() << "slurm-wlm and munge are not installed (scripts/setup)";
      GTEST_SKIP() << "slurm-wlm and munge are not installed: run scripts/setup";
    }
    slurm = std::make_unique<LocalSlurm>();
    // Where the machine forbids daemons of its own, say so rather than fail; in CI only when
    // told (SLUICE_NO_SLURM=1), so that a start that merely broke is a failure.
    if (!slurm->up()) {
      if (std::getenv("CI") && !std::getenv("SLUICE_NO_SLURM"))
        FAIL() << "the local Slurm did not start: " << slurm->why();
      GTEST_SKIP() << "this machine cannot run a local Slurm: " << slurm->why();
    }
  }

  // A job directory with the template copied as it is, the graph (ids from the sim, fetched,
  // chunked, into index.sqlite at var db), and the logs/ folder the array's --output names.
  std::string job_dir(const std::string& name, const test::RunningSim& sim, int docs,
                      int concurrency) {
    std::string dir = work / name;
    fs::create_directories(dir + "/logs");
    fs::copy_file(test::source_dir() + "/deploy/slurm/array.sbatch", dir + "/array.sbatch");
    fs::copy_file(test::source_dir() + "/deploy/slurm/srun.sbatch", dir + "/srun.sbatch");
    test::write_file(dir + "/g.json", R"({"vars": {"db": "out/index.db"},
      "nodes": [
        {"id": "ids", "type": "source.lines", "params": {"path": ")" +
                                          test::ids_file(work, docs) + R"("}},
        {"id": "fetch", "type": "fetch.http", "concurrency": )" +
                                          std::to_string(concurrency) + R"(, "params": {"url": ")" +
                                          sim.url("/docs/{id}") + R"("}},
        {"id": "extract", "type": "extract.json", "params": {"text": "/text"}},
        {"id": "chunk", "type": "chunk.recursive", "params": {"size": 400}},
        {"id": "index", "type": "index.sqlite", "params": {"path": "${db}"}}],
      "edges": [["ids", "fetch"], ["fetch", "extract"], ["extract", "chunk"], ["chunk", "index"]]})");
    return dir;
  }

  // sbatch in `dir` with sluice on PATH and GRAPH set; the job id.
  std::string submit(const std::string& dir, const std::string& args) {
    std::string bin = fs::path(SLUICE_BIN).parent_path().string();
    std::string path = std::string(std::getenv("PATH") ? std::getenv("PATH") : "");
    int rc = 0;
    std::string id =
        shell(slurm->with_conf("sbatch --parsable --chdir='" + dir + "' --export=ALL,PATH='" + bin +
                               ":" + path + "',GRAPH='" + dir + "/g.json' " + args),
              &rc);
    if (rc != 0) ADD_FAILURE() << id;
    return rc == 0 ? id.substr(0, id.find(';')) : "";
  }

  // The one-process index of the same graph.
  std::set<std::string> clean(const std::string& dir) {
    auto r = test::run_sluice("run '" + dir + "/g.json' --quiet --set db='" + dir +
                              "/clean.db' --state '" + dir + "/clean-state'");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return chunks({dir + "/clean.db"});
  }

  // The two shards' indexes: each non-empty, disjoint, and together exactly `want`.
  void expect_shards(const std::string& dir, const std::set<std::string>& want) {
    const auto s0 = chunks({dir + "/out/papers-0.db"}), s1 = chunks({dir + "/out/papers-1.db"});
    EXPECT_FALSE(s0.empty()) << outputs(dir);
    EXPECT_FALSE(s1.empty()) << outputs(dir);
    EXPECT_EQ(s0.size() + s1.size(), want.size()) << "a chunk in both shards, or one missing";
    EXPECT_EQ(chunks({dir + "/out/papers-0.db", dir + "/out/papers-1.db"}), want) << outputs(dir);
  }

  // Array task i's report (out/report-i.json), read back; false when there is none.
  static bool task_report(const std::string& dir, int i, RunReport& out) {
    return RunReport::from_json(test::read_file(dir + "/out/report-" + std::to_string(i) + ".json"),
                                out);
  }

  std::string outputs(const std::string& dir) {
    std::string all;
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.path().extension() == ".out" || e.path().filename().string().rfind("slurm-", 0) == 0)
        all += e.path().string() + ":\n" + test::read_file(e.path().string()) + "\n";
    return all;
  }

  test::TempDir work;
  std::unique_ptr<LocalSlurm> slurm;
};

TEST_F(Slurm, TheArrayJobAndTheSrunVariantGiveTheIndexOfOneProcess) {
  sim::SimOptions o;
  o.docs = 300;
  o.latency_ms = 5;
  test::RunningSim sim(o);
  std::string dir = job_dir("array", sim, 300, 16);
  const auto want = clean(dir);
  ASSERT_GT(want.size(), 300u);

  std::string id = submit(dir, "--array=0-1 array.sbatch");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(slurm->wait_done(id, 180s)) << slurm->logs();
  expect_shards(dir, want);
  for (int i = 0; i < 2; ++i) {
    // Each task took its own shard and ended well.
    RunReport r;
    ASSERT_TRUE(task_report(dir, i, r)) << outputs(dir);
    EXPECT_EQ(r.shard, std::to_string(i) + "/2");
    EXPECT_EQ(r.error, "") << outputs(dir);
  }

  // The srun variant: two tasks of one step, shard PROCID/NTASKS.
  std::string step = job_dir("srun", sim, 300, 16);
  std::string sid = submit(step, "-n 2 srun.sbatch");
  ASSERT_FALSE(sid.empty());
  ASSERT_TRUE(slurm->wait_done(sid, 180s)) << slurm->logs();
  expect_shards(step, want);
}

TEST_F(Slurm, ACancelledArrayResumesToTheSameIndexWhenSubmittedAgain) {
  sim::SimOptions o;
  o.docs = 600;
  o.latency_ms = 60;
  test::RunningSim sim(o);
  std::string dir = job_dir("cancel", sim, 600, 8);
  const auto want = clean(dir);
  std::string id = submit(dir, "--array=0-1 array.sbatch");
  ASSERT_FALSE(id.empty());
  // Cancelled once the first shard's ledger holds done documents (rows reach the index before
  // the ledger's commit, twice a second): the resubmitted array then has something to skip.
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while (test::sql_int(dir + "/out/state/ledger-0-of-2.db", "SELECT count(*) FROM done") <= 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << outputs(dir) << slurm->logs();
    std::this_thread::sleep_for(50ms);
  }
  shell(slurm->with_conf("scancel " + id));
  ASSERT_TRUE(slurm->wait_done(id, 120s)) << slurm->logs();
  const auto partial = chunks({dir + "/out/papers-0.db", dir + "/out/papers-1.db"});
  EXPECT_LT(partial.size(), want.size()) << "the cancel came after the end: make it longer";
  std::string again = submit(dir, "--array=0-1 array.sbatch");
  ASSERT_FALSE(again.empty());
  ASSERT_TRUE(slurm->wait_done(again, 180s)) << slurm->logs();
  expect_shards(dir, want);
  // It resumed: documents done before the cancel were skipped, not fetched again.
  uint64_t skipped = 0;
  for (int i = 0; i < 2; ++i) {
    RunReport r;
    ASSERT_TRUE(task_report(dir, i, r)) << outputs(dir);
    skipped += r.docs_skipped_done;
  }
  EXPECT_GT(skipped, 0u) << outputs(dir);
}

}  // namespace
}  // namespace sluice
