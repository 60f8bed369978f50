// Scale-out: shards, the checkpoint ledger and resume, the multi-process launcher, and output from
// many processes (part files merged into one path, one SQLite index).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <rapidjson/document.h>

#include "engine/state/checkpoint_ledger.hpp"
#include "engine/state/shard.hpp"
#include "engine/text/text.hpp"
#include "nodes/index_sqlite.hpp"
#include "nodes/index_sqlite_search.hpp"
#include "sim/sim.hpp"
#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using test::run_sluice;
using Clock = std::chrono::steady_clock;

// ---- shards ------------------------------------------------------------------------------------

TEST(Shard, ParsesIndexOverCountAndRejectsNonsense) {
  ShardSpec s = parse_shard("2/3");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 3);
  auto message = [](const char* text) {
    try {
      parse_shard(text);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message("3/2"), "--shard 3/2: shard 3 is out of range for 2 shards (0 to 1)");
  EXPECT_EQ(message("1/0"), "--shard 1/0: the shard count must be at least 1, got 0");
  EXPECT_EQ(message("abc"), "--shard: expected INDEX/COUNT such as 0/4, got \"abc\"");
  EXPECT_EQ(message("-1/2"), "--shard -1/2: shard -1 is out of range for 2 shards (0 to 1)");
  EXPECT_EQ(message("1/2x"), "--shard: expected INDEX/COUNT such as 0/4, got \"1/2x\"");
}

std::map<std::string, std::string> g_env;
const char* fake_env(const char* name) {
  auto it = g_env.find(name);
  return it == g_env.end() ? nullptr : it->second.c_str();
}

TEST(Shard, ComesFromTheSchedulersEnvironment) {
  g_env = {{"SLURM_ARRAY_TASK_ID", "3"},
           {"SLURM_ARRAY_TASK_COUNT", "10"},
           {"SLURM_PROCID", "0"},
           {"SLURM_NTASKS", "1"}};
  ShardSpec s = resolve_shard("", 0, fake_env);
  EXPECT_EQ(s.text(), "3/10");
  EXPECT_EQ(s.origin, "SLURM_ARRAY_TASK_ID=3, SLURM_ARRAY_TASK_COUNT=10");
  EXPECT_EQ(resolve_shard("1/4", 0, fake_env).text(), "1/4") << "an explicit --shard wins";
  g_env = {{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}};
  EXPECT_EQ(resolve_shard("", 0, fake_env).text(), "1/2");
  g_env = {{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"}};
  EXPECT_EQ(resolve_shard("", 0, fake_env).text(), "5/8");
  g_env = {{"PMI_RANK", "0"}, {"PMI_SIZE", "3"}};
  EXPECT_EQ(resolve_shard("", 0, fake_env).text(), "0/3");
  g_env = {{"JOB_COMPLETION_INDEX", "7"}};
  EXPECT_EQ(resolve_shard("", 20, fake_env).text(), "7/20");
  EXPECT_THROW(resolve_shard("", 0, fake_env), std::invalid_argument)
      << "an Indexed Job needs --shards";
  EXPECT_THROW(resolve_shard("", 5, fake_env), std::invalid_argument) << "index 7 of 5";
  g_env = {{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "8"}};
  EXPECT_THROW(resolve_shard("", 0, fake_env), std::invalid_argument);
  g_env = {};
  EXPECT_EQ(resolve_shard("", 0, fake_env).text(), "0/1");
  EXPECT_THROW(resolve_shard("", 4, fake_env), std::invalid_argument)
      << "--shards without an index";
}

TEST(Shard, EveryDocumentHasExactlyOneShardAndWorkersSplitTheirShard) {
  const int n = 4, p = 3;
  std::vector<int> per_shard(n);
  for (int d = 0; d < 20000; ++d) {
    std::string id = "doc-" + std::to_string(d);
    int owners = 0;
    for (int i = 0; i < n; ++i) {
      ShardSpec s{i, n, ""};
      if (!s.owns(id)) continue;
      ++owners;
      ++per_shard[static_cast<size_t>(i)];
      int workers = 0;
      for (int w = 0; w < p; ++w) workers += s.split(w, p).owns(id);
      EXPECT_EQ(workers, 1) << id;
    }
    ASSERT_EQ(owners, 1) << id;
  }
  for (int c : per_shard) EXPECT_NEAR(c, 5000, 300) << "the hash spreads ids evenly";
  // Pinned: the shard of an id must never change between versions, machines or runs.
  EXPECT_EQ(shard_of("01-Genesis.txt", 10), shard_of(std::string("01-Genesis.txt"), 10));
  EXPECT_EQ(shard_of("W2741809807", 16), static_cast<int>(text::stable_hash64("W2741809807") % 16));
}

// ---- the ledger
// ----------------------------------------------------------------------------------

TEST(Ledger, RemembersDoneDocumentsAndRefusesAnotherConfig) {
  test::TempDir dir;
  std::string path = CheckpointLedger::file_for(dir.path().string(), 0, 1);
  {
    CheckpointLedger l(path, "hash-a", CheckpointLedger::Mode::fresh, false);
    l.record("a", Outcome::indexed);
    l.record("b", Outcome::filtered);
    l.record("c", Outcome::dead_lettered);
    l.commit();
  }
  {
    CheckpointLedger l(path, "hash-a", CheckpointLedger::Mode::resume, false);
    auto done = l.done_ids();
    EXPECT_EQ(done, (std::unordered_set<std::string>{"a", "b"}))
        << "dead-lettered documents are tried again";
    EXPECT_EQ(l.done_count(), 3u);
  }
  try {
    CheckpointLedger l(path, "hash-b", CheckpointLedger::Mode::resume, false);
    FAIL() << "a changed config must be refused";
  } catch (const LedgerError& e) {
    EXPECT_NE(
        std::string(e.what()).find("different graph config (hash hash-a, this one is hash-b)"),
        std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos);
  }
  {
    CheckpointLedger l(path, "hash-b", CheckpointLedger::Mode::resume, true);
    EXPECT_EQ(l.done_ids().size(), 2u) << "--force keeps the ledger";
  }
  {
    CheckpointLedger l(path, "hash-b", CheckpointLedger::Mode::fresh, false);
    EXPECT_EQ(l.done_count(), 0u) << "a fresh run forgets";
  }
}

TEST(Ledger, ADamagedFileIsAClearErrorNamingIt) {
  test::TempDir dir;
  std::string path = (dir.path() / "ledger-0-of-1.db").string();
  std::ofstream(path) << std::string(4096, 'x');
  try {
    CheckpointLedger l(path, "hash-a", CheckpointLedger::Mode::resume, false);
    FAIL() << "a file that is not SQLite must be refused";
  } catch (const LedgerError& e) {
    EXPECT_NE(std::string(e.what()).find("the checkpoint ledger \"" + path + "\""),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("not a database"), std::string::npos) << e.what();
  }
}

// ---- helpers for whole runs
// ------------------------------------------------------------------------

std::set<std::string> jsonl_chunks(const std::string& path, size_t* lines = nullptr) {
  std::set<std::string> out;
  size_t n = 0;
  for (const auto& line : test::read_lines(path)) {
    if (line.empty()) continue;
    ++n;
    rapidjson::Document d;
    d.Parse(line.c_str());
    if (d.HasParseError()) {
      out.insert("<malformed line>");
      continue;
    }
    out.insert(std::string(d["id"].GetString()) + "\t" + d["text"].GetString());
  }
  if (lines) *lines = n;
  return out;
}

std::set<std::string> sqlite_chunks(const std::string& db, size_t* rows = nullptr) {
  std::set<std::string> out;
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, "SELECT id, text FROM chunks", -1, &s, nullptr);
  size_t n = 0;
  while (s && sqlite3_step(s) == SQLITE_ROW) {
    ++n;
    out.insert(std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) + "\t" +
               reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
  }
  sqlite3_finalize(s);
  sqlite3_close(h);
  if (rows) *rows = n;
  return out;
}

rapidjson::Document report(const std::string& path) {
  rapidjson::Document d;
  d.Parse(test::read_file(path).c_str());
  EXPECT_FALSE(d.HasParseError()) << path;
  return d;
}

// Starts `sluice args` in the background (stdout/stderr to files in `dir`).
pid_t spawn_sluice(const std::string& args, const test::TempDir& dir) {
  std::string cmd = "cd '" + test::source_dir() + "' && exec '" + std::string(SLUICE_BIN) + "' " +
                    args + " </dev/null >>'" + (dir / "out.txt") + "' 2>>'" + (dir / "err.txt") +
                    "'";
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid, double timeout_s) {
  auto t0 = Clock::now();
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::duration<double>(Clock::now() - t0).count() > timeout_s) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  pid_t c;
  while (in >> c) out.push_back(c);
  return out;
}

bool alive(pid_t pid) { return kill(pid, 0) == 0; }

// Waits up to `timeout_s` for `pid` to handle SIGINT itself (its SigCgt mask in /proc): before
// then a SIGINT ends it outright, with no report (a slow start on a loaded machine).
bool handles_sigint(pid_t pid, double timeout_s) {
  const auto t0 = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - t0).count() < timeout_s) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("SigCgt:", 0) == 0 &&
          (std::stoull(line.substr(7), nullptr, 16) & (1ull << (SIGINT - 1))) != 0)
        return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// The launcher's workers, once `n` of them have started (empty after 3 s without).
std::vector<pid_t> wait_for_workers(pid_t launcher, size_t n) {
  for (int i = 0; i < 300; ++i) {
    auto w = children_of(launcher);
    if (w.size() >= n) return w;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return {};
}

// A started sim serving `docs` documents at `latency_ms`.
std::unique_ptr<test::RunningSim> started_sim(int docs, int latency_ms) {
  sim::SimOptions o;
  o.docs = docs;
  o.latency_ms = latency_ms;
  return std::make_unique<test::RunningSim>(o);
}

using test::ids_file;

// Requests the sim has received so far.
uint64_t sim_requests(const sim::SimServer& server) {
  rapidjson::Document d;
  d.Parse(server.stats_json().c_str());
  return d["requests"].GetUint64();
}

// ids → fetch from the sim → extract → chunk → both a JSONL file and an SQLite index.
std::string fetch_graph(const test::TempDir& dir, int port, int concurrency, int max_inflight) {
  std::string g = R"({"name": "scale",
  "vars": {"jsonl": ")" +
                  (dir / "out.jsonl") + R"(", "db": ")" + (dir / "out.db") + R"("},
  "settings": {"max_inflight_docs": )" +
                  std::to_string(max_inflight) + R"(},
  "nodes": [
    {"id": "ids", "type": "source.lines", "params": {"path": ")" +
                  (dir / "ids.txt") + R"("}},
    {"id": "fetch", "type": "fetch.http", "params": {"url": "http://127.0.0.1:)" +
                  std::to_string(port) + R"(/docs/{id}"},
     "concurrency": )" +
                  std::to_string(concurrency) + R"(},
    {"id": "extract", "type": "extract.json", "params": {"text": "/text"}},
    {"id": "chunk", "type": "chunk.recursive", "params": {"size": 200}},
    {"id": "jsonl", "type": "index.jsonl", "params": {"path": "${jsonl}"}},
    {"id": "db", "type": "index.sqlite", "params": {"path": "${db}"}}],
  "edges": [["ids", "fetch"], ["fetch", "extract"], ["extract", "chunk"], ["chunk", "jsonl"], ["chunk", "db"]]})";
  test::write_file(dir / "g.json", g);
  return dir / "g.json";
}

// The chunk set a clean single-process run of the same graph gives.
std::set<std::string> clean_chunks(int docs, int port) {
  test::TempDir dir;
  ids_file(dir, docs);
  auto r = run_sluice("run " + fetch_graph(dir, port, 50, 256) + " --quiet --report " +
                      (dir / "r.json"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(report(dir / "r.json")["docs_indexed"].GetUint64(), static_cast<uint64_t>(docs));
  auto chunks = jsonl_chunks(dir / "out.jsonl");
  EXPECT_GT(chunks.size(), static_cast<size_t>(docs));
  return chunks;
}

// ---- the launcher and many-process output ---------------------------------------------------

TEST(ScaleOut, OneTwoAndThreeProcessesGiveTheSameChunks) {
  test::TempDir dir;
  std::set<std::string> first_jsonl, first_db;
  for (int p : {1, 2, 3}) {
    std::string jl = dir / ("p" + std::to_string(p) + ".jsonl"),
                db = dir / ("p" + std::to_string(p) + ".db");
    std::string rep = dir / ("r" + std::to_string(p) + ".json");
    auto a = run_sluice("run graphs/bench-cpu.json --quiet -P " + std::to_string(p) +
                        " --set count=1500 --set size=3000 --set out=" + jl + " --report " + rep);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    auto b = run_sluice("run graphs/local-files.json --quiet --processes " + std::to_string(p) +
                        " --set db=" + db);
    ASSERT_EQ(b.exit_code, 0) << b.err;
    size_t lines = 0, rows = 0;
    auto jset = jsonl_chunks(jl, &lines);
    auto dset = sqlite_chunks(db, &rows);
    EXPECT_EQ(lines, jset.size()) << "P=" << p << ": no chunk twice in the JSONL file";
    EXPECT_EQ(rows, dset.size());
    // Each process adds to the full-text index what is committed when it catches up, under the
    // write lock: together every row exactly once (FTS5's check against the content table).
    EXPECT_EQ(chunks_awaiting_full_text(db), 0u) << "P=" << p;
    sqlite3* h = nullptr;
    sqlite3_open(db.c_str(), &h);
    EXPECT_EQ(sqlite3_exec(h,
                           "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK)
        << "P=" << p << ": " << sqlite3_errmsg(h);
    sqlite3_close(h);
    EXPECT_FALSE(std::filesystem::exists(jl + ".parts")) << "part files are merged and removed";
    auto r = report(rep);
    EXPECT_EQ(r["lost"].GetUint64(), 0u);
    EXPECT_EQ(r["docs"].GetUint64(), 1500u);
    EXPECT_EQ(r["chunks"].GetUint64(), lines);
    if (p == 1) {
      first_jsonl = jset;
      first_db = dset;
      EXPECT_GT(jset.size(), 1500u);
      EXPECT_FALSE(r.HasMember("workers"));
    } else {
      EXPECT_EQ(jset, first_jsonl) << "P=" << p;
      EXPECT_EQ(dset, first_db) << "P=" << p;
      ASSERT_TRUE(r.HasMember("workers"));
      EXPECT_EQ(r["workers"].Size(), static_cast<unsigned>(p));
      EXPECT_EQ(r["restarts"].GetInt(), 0);
    }
  }
}

TEST(ScaleOut, ShardsSharingAFilesystemEndInOneFile) {
  test::TempDir dir;
  auto one = run_sluice("run graphs/bench-cpu.json --quiet --set count=900 --set out=" +
                        (dir / "one.jsonl"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i)
    pids.push_back(spawn_sluice("run graphs/bench-cpu.json --quiet --set count=900 --shard " +
                                    std::to_string(i) + "/3 --state " + (dir / "state") +
                                    " --set out=" + (dir / "all.jsonl"),
                                dir));
  for (pid_t p : pids) EXPECT_EQ(wait_exit(p, 120), 0) << test::read_file(dir / "err.txt");
  size_t lines = 0;
  EXPECT_EQ(jsonl_chunks(dir / "all.jsonl", &lines), jsonl_chunks(dir / "one.jsonl"));
  EXPECT_EQ(lines, jsonl_chunks(dir / "one.jsonl").size());
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(std::filesystem::exists(CheckpointLedger::file_for(dir / "state", i, 3)))
        << "a ledger per shard";
  EXPECT_FALSE(std::filesystem::exists(dir / "all.jsonl.parts"))
      << "a finished job leaves only its outputs, no parts directory or merge lock";
}

// util.dedup drops a duplicate once across the whole job: 10,000 records, 464 of which repeat an
// earlier text under another id, give exactly the 9,536 distinct texts under -P 2, under two
// shards running at once, and again after a shard's fresh re-run and a --resume.
TEST(ScaleOut, DedupDropsEachDuplicateOnceAcrossProcessesAndShards) {
  test::TempDir dir;
  std::string rows;
  for (int i = 0; i < 10000; ++i) {
    const int t = i < 9536 ? i : (i * 7919) % 9536;
    rows += "{\"id\": \"r" + std::to_string(i) + "\", \"text\": \"text number " +
            std::to_string(t) + "\"}\n";
  }
  test::write_file(dir / "in.jsonl", rows);
  test::write_file(dir / "g.json", R"({"name": "dedup", "vars": {"out": "out.jsonl"},
    "nodes": [{"id": "rows", "type": "source.jsonl", "params": {"path": ")" +
                                       (dir / "in.jsonl") + R"("}},
      {"id": "dedup", "type": "util.dedup"},
      {"id": "out", "type": "index.jsonl", "params": {"path": "${out}"}}],
    "edges": [["rows", "dedup"], ["dedup", "out"]]})");
  // The texts in a JSONL output, and how many lines it has.
  auto texts = [](const std::string& path, size_t& lines) {
    std::set<std::string> seen;
    lines = 0;
    for (const auto& line : test::read_lines(path)) {
      if (line.empty()) continue;
      rapidjson::Document d;
      d.Parse(line.c_str());
      seen.insert(d["text"].GetString());
      ++lines;
    }
    return seen;
  };
  size_t lines = 0;
  auto p2 = run_sluice("run " + (dir / "g.json") + " --quiet -P 2 --state " + (dir / "s1") +
                       " --set out=" + (dir / "p.jsonl"));
  ASSERT_EQ(p2.exit_code, 0) << p2.err;
  EXPECT_EQ(texts(dir / "p.jsonl", lines).size(), 9536u);
  EXPECT_EQ(lines, 9536u) << "-P 2: no duplicate survives";

  auto shards = [&](const std::string& extra) {
    std::vector<pid_t> pids;
    for (int i = 0; i < 2; ++i)
      pids.push_back(spawn_sluice("run " + (dir / "g.json") + " --quiet --shard " +
                                      std::to_string(i) + "/2 --state " + (dir / "s2") +
                                      " --set out=" + (dir / "sh.jsonl") + extra,
                                  dir));
    for (pid_t p : pids) EXPECT_EQ(wait_exit(p, 120), 0) << test::read_file(dir / "err.txt");
  };
  shards("");
  EXPECT_EQ(texts(dir / "sh.jsonl", lines).size(), 9536u);
  EXPECT_EQ(lines, 9536u) << "two shards at once: no duplicate survives";
  // Again, fresh: each record finds the key it claimed before and keeps it.
  shards("");
  EXPECT_EQ(texts(dir / "sh.jsonl", lines).size(), 9536u);
  EXPECT_EQ(lines, 9536u) << "a fresh re-run of the shards";
  shards(" --resume");
  EXPECT_EQ(texts(dir / "sh.jsonl", lines).size(), 9536u);
  EXPECT_EQ(lines, 9536u) << "after --resume";
}

TEST(ScaleOut, ShardAndProcessArgumentsAreChecked) {
  auto bad = run_sluice("run graphs/local-files.json --shard 3/2");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err, "error: --shard 3/2: shard 3 is out of range for 2 shards (0 to 1)\n");
  auto word = run_sluice("run graphs/local-files.json --shard first");
  EXPECT_EQ(word.exit_code, 2);
  EXPECT_NE(word.err.find("expected INDEX/COUNT such as 0/4"), std::string::npos) << word.err;
  auto zero = run_sluice("run graphs/local-files.json --processes 0");
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.err.find("--processes"), std::string::npos) << zero.err;
  auto indexed = test::run_sluice("run graphs/local-files.json --shards 4");
  EXPECT_EQ(indexed.exit_code, 2);
  EXPECT_NE(indexed.err.find("--shards 4 needs --shard i/N or a scheduler's index"),
            std::string::npos)
      << indexed.err;
}

TEST(ScaleOut, ShardInAPathNamesTheShardsOwnFile) {
  test::TempDir dir;
  auto r = run_sluice("run graphs/bench-cpu.json --quiet --set count=90 --shard 1/3 --state " +
                      (dir / "st") + " --set 'out=" + (dir / "part-${shard}.jsonl") + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "part-1.jsonl"));
  for (const auto& line : test::read_lines(dir / "part-1.jsonl")) {
    if (line.empty()) continue;
    rapidjson::Document d;
    d.Parse(line.c_str());
    EXPECT_EQ(shard_of(d["doc_id"].GetString(), 3), 1) << "only shard 1's documents";
  }
}

TEST(ScaleOut, LimitsAreJobTotalsSplitAcrossProcesses) {
  GraphSpec g = test::spec_from(R"({
    "nodes": [{"id": "ids", "type": "source.lines", "params": {"path": "ids.txt"}},
              {"id": "fetch", "type": "fetch.http", "params": {"url": "http://x/{id}", "rpm": 600}, "concurrency": 10},
              {"id": "chunk", "type": "chunk.recursive", "concurrency": 3},
              {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
    "edges": [["ids", "fetch"], ["fetch", "chunk"], ["chunk", "out"]]})");
  const std::string hash = g.config_hash;
  split_job_limits(g, 4);
  EXPECT_DOUBLE_EQ(g.nodes[1].params.number("rpm"), 150.0);
  EXPECT_EQ(g.nodes[1].concurrency, 3)
      << "10 requests in flight over 4 processes: 3 each, rounded up";
  EXPECT_EQ(g.nodes[2].concurrency, 3) << "a CPU node's parallelism is per process";
  EXPECT_EQ(g.config_hash, hash) << "every worker has the job's config hash";
  split_job_limits(g, 100);
  EXPECT_EQ(g.nodes[1].concurrency, 1) << "at least 1";
}

TEST(ScaleOut, SigintToTheLauncherDrainsEveryWorker) {
  auto sim = started_sim(3000, 100);
  sim::SimServer& server = *sim;
  test::TempDir dir;
  ids_file(dir, 3000);
  std::string g = fetch_graph(dir, server.port(), 20, 40);
  pid_t launcher = spawn_sluice("run " + g + " --quiet -P 2 --report " + (dir / "r.json"), dir);
  // Once the workers are well under way (a fixed wait saw none on a loaded machine).
  auto t0 = Clock::now();
  while (sim_requests(server) < 200 &&
         std::chrono::duration<double>(Clock::now() - t0).count() < 30)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  kill(launcher, SIGINT);  // the launcher alone, as `kill -INT` from a script would
  EXPECT_EQ(wait_exit(launcher, 60), 130) << test::read_file(dir / "err.txt");
  auto r = report(dir / "r.json");
  EXPECT_TRUE(r["interrupted"].GetBool());
  EXPECT_EQ(r["lost"].GetUint64(), 0u);
  EXPECT_EQ(r["restarts"].GetInt(), 0) << "an interrupted worker is not restarted";
  EXPECT_LT(r["docs"].GetUint64(), 3000u);
  EXPECT_EQ(r["docs_indexed"].GetUint64(), r["docs"].GetUint64()) << "admitted documents finish";
  size_t lines = 0;
  jsonl_chunks(dir / "out.jsonl", &lines);
  EXPECT_GT(lines, 0u) << "the interrupted run's parts are merged too";
}

TEST(Interrupt, TheFirstCtrlCStopsARunWaitingOnAFifo) {
  test::TempDir dir;
  const std::string fifo = dir / "ids.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  test::write_file(dir / "g.json", R"({"nodes": [
    {"id": "ids", "type": "source.lines", "params": {"path": ")" +
                                       fifo + R"("}},
    {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
                                       (dir / "o.jsonl") + R"("}}],
  "edges": [["ids", "out"]]})");
  // No writer ever comes.
  pid_t run =
      spawn_sluice("run " + (dir / "g.json") + " --quiet --report " + (dir / "r.json"), dir);
  ASSERT_TRUE(handles_sigint(run, 30));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(alive(run));
  kill(run, SIGINT);
  EXPECT_EQ(wait_exit(run, 10), 130) << test::read_file(dir / "err.txt");
  EXPECT_TRUE(report(dir / "r.json")["interrupted"].GetBool());
  // A writer that sends three lines and then holds the FIFO open.
  run = spawn_sluice("run " + (dir / "g.json") + " --quiet --report " + (dir / "r.json"), dir);
  int w = -1;
  auto t0 = Clock::now();
  while ((w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK)) < 0 &&
         std::chrono::duration<double>(Clock::now() - t0).count() < 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(w, 0) << "sluice opened the FIFO";
  ASSERT_EQ(::write(w, "a\nb\nc\n", 6), 6);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  kill(run, SIGINT);
  EXPECT_EQ(wait_exit(run, 10), 130) << test::read_file(dir / "err.txt");
  ::close(w);
  auto r = report(dir / "r.json");
  EXPECT_TRUE(r["interrupted"].GetBool());
  EXPECT_EQ(r["docs_indexed"].GetUint64(), 3u);
  EXPECT_EQ(r["lost"].GetUint64(), 0u);
}

// A second Ctrl-C stops a run that is draining slow requests at once, and the report is written.
void second_ctrl_c_reports(const std::string& procs) {
  auto sim = started_sim(300, 20000);  // every response takes 20 s: the drain would too
  sim::SimServer& server = *sim;
  test::TempDir dir;
  ids_file(dir, 300);
  std::string g = fetch_graph(dir, server.port(), 20, 40);
  pid_t run = spawn_sluice("run " + g + " --quiet" + procs + " --report " + (dir / "r.json"), dir);
  auto started = Clock::now();
  while (sim_requests(server) < 10 &&
         std::chrono::duration<double>(Clock::now() - started).count() < 30)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a snapshot with those documents
  ASSERT_TRUE(alive(run));
  kill(run, SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(alive(run)) << "still draining";
  kill(run, SIGINT);
  auto t0 = Clock::now();
  EXPECT_EQ(wait_exit(run, 15), 130) << test::read_file(dir / "err.txt");
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 8.0);
  auto r = report(dir / "r.json");
  EXPECT_TRUE(r["interrupted"].GetBool());
  EXPECT_GT(r["docs"].GetUint64(), 0u) << "the counts of the last snapshot";
  EXPECT_NE(std::string(r["error"].GetString()).find("stopped at a second interrupt"),
            std::string::npos)
      << r["error"].GetString();
}

TEST(Interrupt, ASecondCtrlCStopsAtOnceAndStillWritesTheReport) { second_ctrl_c_reports(""); }

TEST(Interrupt, ASecondCtrlCToALauncherStopsEveryWorkerAndWritesTheReport) {
  second_ctrl_c_reports(" -P 2");
}

TEST(ScaleOut, ResumeRefusesAChangedConfigUnlessForced) {
  test::TempDir dir;
  std::string base = "run graphs/bench-cpu.json --quiet --state " + (dir / "st") +
                     " --set count=200 --set out=" + (dir / "o.jsonl");
  ASSERT_EQ(run_sluice(base).exit_code, 0);
  auto same = run_sluice(base + " --resume --report " + (dir / "r.json"));
  EXPECT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(report(dir / "r.json")["docs_skipped_done"].GetUint64(), 200u) << "everything was done";
  EXPECT_EQ(report(dir / "r.json")["docs"].GetUint64(), 0u);
  EXPECT_EQ(!jsonl_chunks(dir / "o.jsonl").empty(), true) << "a resume keeps the earlier output";
  auto changed = run_sluice(base + " --set size=100 --resume");
  EXPECT_EQ(changed.exit_code, 2);
  EXPECT_NE(changed.err.find("was written by a different graph config"), std::string::npos)
      << changed.err;
  auto forced = run_sluice(base + " --set size=100 --resume --force");
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
}

TEST(ScaleOut, AKilledWorkerIsRestartedAndNothingIsMissingOrTwice) {
  auto sim = started_sim(1200, 20);
  sim::SimServer& server = *sim;
  const auto expected = clean_chunks(1200, server.port());
  test::TempDir dir;
  ids_file(dir, 1200);
  std::string g = fetch_graph(dir, server.port(), 16, 32);
  // The job's metrics are scraped all along: they count the restart, and no counter goes back.
  const std::string addr = "127.0.0.1:" + std::to_string(test::free_port());
  pid_t launcher = spawn_sluice(
      "run " + g + " --quiet -P 2 --report " + (dir / "r.json") + " --metrics-addr " + addr, dir);
  std::atomic<bool> running{true};
  std::vector<std::string> scrapes;
  std::thread scraper([&] {
    while (running.load()) {
      if (auto got = test::http_get("http://" + addr + "/metrics"); got.status == 200)
        scrapes.push_back(got.body);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  // Wait until the workers made progress, then kill one of them.
  std::vector<pid_t> workers = wait_for_workers(launcher, 2);
  ASSERT_EQ(workers.size(), 2u);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  ASSERT_TRUE(alive(workers[0])) << "the run ended before the kill: make it longer\n"
                                 << test::read_file(dir / "err.txt");
  kill(workers[0], SIGKILL);
  EXPECT_EQ(wait_exit(launcher, 120), 0) << test::read_file(dir / "err.txt");
  running = false;
  scraper.join();
  ASSERT_GE(scrapes.size(), 5u);
  double last_done = 0, last_requests = 0;
  for (const auto& text : scrapes) {
    double done = test::metric_value(text, "sluice_documents_total{outcome=\"indexed\"}");
    double requests = test::metric_value(text, "sluice_http_requests_total");
    EXPECT_GE(done, last_done) << "a counter went back";
    EXPECT_GE(requests, last_requests) << "a counter went back";
    last_done = done;
    last_requests = requests;
  }
  // The restart shows (the run may end before a later scrape): once, never more.
  double restarts = 0;
  for (const auto& text : scrapes)
    restarts = std::max(restarts, test::metric_value(text, "sluice_worker_restarts_total"));
  EXPECT_EQ(restarts, 1) << scrapes.back();
  EXPECT_GT(last_done, 0);
  EXPECT_NE(test::read_file(dir / "err.txt")
                .find("worker 0 killed by signal 9; restarting it with resume (1 of 3)"),
            std::string::npos)
      << test::read_file(dir / "err.txt");
  auto r = report(dir / "r.json");
  EXPECT_EQ(r["restarts"].GetInt(), 1) << test::read_file(dir / "err.txt");
  EXPECT_EQ(r["lost"].GetUint64(), 0u);
  size_t lines = 0, rows = 0;
  EXPECT_EQ(jsonl_chunks(dir / "out.jsonl", &lines), expected);
  EXPECT_EQ(lines, expected.size());
  EXPECT_EQ(sqlite_chunks(dir / "out.db", &rows), expected);
  EXPECT_EQ(rows, expected.size());
}

TEST(ScaleOut, KillNineThenResumeGivesTheCleanIndexAndRefetchesWithinTheBound) {
  auto sim = started_sim(1500, 40);
  sim::SimServer& server = *sim;
  const auto expected = clean_chunks(1500, server.port());
  test::TempDir dir;
  ids_file(dir, 1500);
  const int max_inflight = 24;
  std::string g = fetch_graph(dir, server.port(), 12, max_inflight);  // about 300 documents/s
  auto before = [&] { return sim_requests(server); };
  const uint64_t base_requests = before();
  auto t0 = Clock::now();
  pid_t run = spawn_sluice("run " + g + " --quiet", dir);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  ASSERT_TRUE(alive(run));
  kill(run, SIGKILL);
  double at_kill = std::chrono::duration<double>(Clock::now() - t0).count();
  wait_exit(run, 10);
  const uint64_t first = before() - base_requests;
  ASSERT_GT(first, 200u);
  ASSERT_LT(first, 1500u) << "the kill came after the end: make the run longer";
  auto resumed = run_sluice("run " + g + " --quiet --resume --report " + (dir / "r.json"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const uint64_t total = before() - base_requests;
  const uint64_t refetched = total - 1500;
  // The bound: documents in flight at the kill (at most max_inflight_docs) plus about one second
  // of completions (the ledger commits twice a second).
  const double rate = first / at_kill;
  EXPECT_LE(static_cast<double>(refetched), max_inflight + rate * 1.0)
      << "first run " << first << " requests in " << at_kill << " s";
  auto r = report(dir / "r.json");
  EXPECT_GT(r["docs_skipped_done"].GetUint64(), first - max_inflight - rate * 1.0);
  EXPECT_EQ(r["lost"].GetUint64(), 0u);
  size_t lines = 0, rows = 0;
  EXPECT_EQ(jsonl_chunks(dir / "out.jsonl", &lines), expected);
  EXPECT_EQ(lines, expected.size()) << "no duplicate chunks";
  EXPECT_EQ(sqlite_chunks(dir / "out.db", &rows), expected);
  EXPECT_EQ(rows, expected.size());
  std::printf("kill -9 after %.1f s: %llu requests; resume refetched %llu (bound %.0f)\n", at_kill,
              static_cast<unsigned long long>(first), static_cast<unsigned long long>(refetched),
              max_inflight + rate * 1.0);
}

TEST(ScaleOut, ASecondRunOnTheSameOutputIsRefusedWhileTheFirstRuns) {
  test::TempDir dir;
  const std::string out = dir / "o.jsonl";
  test::write_file(out, "{\"id\":\"earlier\"}\n");
  pid_t first =
      spawn_sluice("run graphs/bench-cpu.json --quiet --set count=2000000 --set out=" + out, dir);
  auto t0 = Clock::now();
  while (!std::filesystem::exists(out + ".lock") &&
         std::chrono::duration<double>(Clock::now() - t0).count() < 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(std::filesystem::exists(out + ".lock"));
  for (const char* procs : {"", " -P 2"}) {
    auto second =
        run_sluice("run graphs/bench-cpu.json --quiet --set count=10 --set out=" + out + procs);
    EXPECT_EQ(second.exit_code, 2) << procs;
    EXPECT_NE(second.err.find("\"" + out + "\" is in use by another sluice run (pid " +
                              std::to_string(first) + "): wait for it to end"),
              std::string::npos)
        << second.err;
  }
  ASSERT_TRUE(alive(first)) << "the refused runs left the first one alone";
  kill(first, SIGINT);
  EXPECT_EQ(wait_exit(first, 30), 130);
  EXPECT_EQ(test::read_file(out), "{\"id\":\"earlier\"}\n") << "an interrupted fresh run keeps it";
  EXPECT_FALSE(std::filesystem::exists(out + ".lock")) << "a run leaves no lock behind";
  auto third = run_sluice("run graphs/bench-cpu.json --quiet --set count=10 --set out=" + out);
  EXPECT_EQ(third.exit_code, 0) << third.err;
  auto lines = test::read_lines(out);
  EXPECT_GT(lines.size(), 10u);
  EXPECT_EQ(lines[0].find("earlier"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(out + ".lock"));
  EXPECT_FALSE(std::filesystem::exists(out + ".parts"));
}

TEST(ScaleOut, KillingTheLauncherLeavesNoWorkerRunning) {
  test::TempDir dir;
  pid_t launcher = spawn_sluice(
      "run graphs/bench-cpu.json --quiet -P 2 --set count=2000000 --set out=" + (dir / "o.jsonl"),
      dir);
  std::vector<pid_t> workers = wait_for_workers(launcher, 2);
  ASSERT_EQ(workers.size(), 2u);
  kill(launcher, SIGKILL);
  wait_exit(launcher, 10);
  auto t0 = Clock::now();
  bool any = true;
  while (any && std::chrono::duration<double>(Clock::now() - t0).count() < 5) {
    any = false;
    for (pid_t w : workers) {
      std::ifstream st("/proc/" + std::to_string(w) + "/stat");
      std::string pid, comm, state;
      st >> pid >> comm >> state;
      any = any || (st && state != "Z");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(any) << "workers outlived their launcher";
}

TEST(ScaleOut, MpirunRanksEachTakeAShard) {
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0)
    GTEST_FAIL() << "mpirun missing: scripts/setup installs openmpi-bin";
  test::TempDir dir;
  auto one = run_sluice("run graphs/bench-cpu.json --quiet --set count=600 --set out=" +
                        (dir / "one.jsonl"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  std::string cmd = "cd '" + test::source_dir() +
                    "' && timeout 120 mpirun -np 2 --oversubscribe --allow-run-as-root '" +
                    std::string(SLUICE_BIN) +
                    "' run graphs/bench-cpu.json --quiet --set count=600 --state " + (dir / "st") +
                    " --set out=" + (dir / "mpi.jsonl") + " >'" + (dir / "mpi.log") + "' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_file(dir / "mpi.log");
  EXPECT_EQ(jsonl_chunks(dir / "mpi.jsonl"), jsonl_chunks(dir / "one.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(CheckpointLedger::file_for(dir / "st", 1, 2)))
      << test::read_file(dir / "mpi.log");
}

}  // namespace
}  // namespace sluice
