// SQLite: sluice's upsert sink and the whole local-files graph against a bare FTS5 insert of the
// same chunks in one transaction, measured in the same run.
#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>

#include "engine/graph_runner.hpp"
#include "engine/graph_spec.hpp"
#include "engine/text.hpp"
#include "tests/sample_corpus.hpp"

namespace {

using namespace sluice;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The chunks local-files.json makes (chunk.recursive, size 800).
std::vector<std::string> corpus_chunks() {
  std::vector<std::string> chunks;
  for (const auto& t : test::sample_corpus_files())
    for (auto s : text::split_recursive(t, 800, 0, text::default_separators())) chunks.push_back(t.substr(s.begin, s.end - s.begin));
  return chunks;
}

double bare_fts5_insert(const std::vector<std::string>& chunks, const std::string& path) {
  fs::remove(path);
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE VIRTUAL TABLE t USING fts5(text);",
               nullptr, nullptr, nullptr);
  auto t0 = Clock::now();
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t(text) VALUES (?)", -1, &s, nullptr);
  for (const auto& c : chunks) {
    sqlite3_bind_text(s, 1, c.data(), static_cast<int>(c.size()), SQLITE_STATIC);
    sqlite3_step(s);
    sqlite3_reset(s);
  }
  sqlite3_finalize(s);
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  double el = std::chrono::duration<double>(Clock::now() - t0).count();
  sqlite3_close(db);
  return el;
}

void BM_LocalFilesVsBareFts5(benchmark::State& state) {
  auto chunks = corpus_chunks();
  std::string dir = (fs::temp_directory_path() / "sluice-bench").string();
  fs::create_directories(dir);
  GraphSpec spec = load_graph(std::string(SLUICE_SOURCE_DIR) + "/graphs/local-files.json",
                              {{"db", dir + "/local-files.db"}}, builtin_registry());
  RunOptions opts;
  opts.threads = 2;
  double bare = 0, ours = 0;
  uint64_t our_chunks = 0;
  for (auto _ : state) {
    bare += bare_fts5_insert(chunks, dir + "/bare.db");
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(dir + "/local-files.db" + suffix);
    RunReport rep = run_graph(spec, opts);
    if (!rep.error.empty() || rep.lost) state.SkipWithError("run failed");
    ours += rep.elapsed_s;
    our_chunks = rep.chunks;
  }
  double it = static_cast<double>(state.iterations());
  state.counters["bare_chunks_per_s"] = chunks.size() * it / bare;
  state.counters["sluice_chunks_per_s"] = our_chunks * it / ours;
  state.counters["ratio"] = (our_chunks / ours) / (chunks.size() / bare);
  fs::remove_all(dir);
}
BENCHMARK(BM_LocalFilesVsBareFts5)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

// Upserting rows that already exist unchanged (a re-run): the WHERE clause skips the write.
void BM_SqliteRerunUpsert(benchmark::State& state) {
  std::string dir = (fs::temp_directory_path() / "sluice-bench-rerun").string();
  fs::create_directories(dir);
  GraphSpec spec = load_graph(std::string(SLUICE_SOURCE_DIR) + "/graphs/local-files.json",
                              {{"db", dir + "/local-files.db"}}, builtin_registry());
  RunOptions opts;
  opts.threads = 2;
  run_graph(spec, opts);
  double el = 0;
  uint64_t rows = 0;
  for (auto _ : state) {
    RunReport rep = run_graph(spec, opts);
    el += rep.elapsed_s;
    rows += rep.indexed;
  }
  state.counters["rows_per_s"] = rows / el;
  fs::remove_all(dir);
}
BENCHMARK(BM_SqliteRerunUpsert)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

}  // namespace
