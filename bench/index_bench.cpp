// SQLite: sluice's upsert sink and the whole local-files graph against a bare FTS5 insert of the
// same chunks in one transaction, measured in the same run.
#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>

#include "engine/graph/graph_runner.hpp"
#include "engine/graph/graph_spec.hpp"
#include "engine/text/text.hpp"
#include "engine/vector/float16.hpp"
#include "nodes/builtin_nodes.hpp"
#include "nodes/embed_hash.hpp"
#include "tests/sample_corpus.hpp"

namespace {

using namespace sluice;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The chunks local-files.json makes (chunk.recursive, size 800).
std::vector<std::string> corpus_chunks() {
  std::vector<std::string> chunks;
  for (const auto& t : test::sample_corpus_files())
    for (auto s : text::split_recursive(t, 800, 0, text::default_separators()))
      chunks.push_back(t.substr(s.begin, s.end - s.begin));
  return chunks;
}

// A new database file with the sink's own pragmas and `schema`.
sqlite3* fresh_db(const std::string& path, const std::string& schema) {
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  std::string sql =
      "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; " + schema;
  sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  return db;
}

// Commits, closes (the WAL's checkpoint included) and returns the seconds since t0.
double commit_and_close(sqlite3* db, Clock::time_point t0) {
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// From the first insert to a closed file, as sluice's figure is (its run ends when the index is
// closed): with the sink's own pragmas, so the last checkpoint of the WAL counts on both sides.
double bare_fts5_insert(const std::vector<std::string>& chunks, const std::string& path) {
  sqlite3* db = fresh_db(path, "CREATE VIRTUAL TABLE t USING fts5(text);");
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
  return commit_and_close(db, t0);
}

// The same FTS5 insert plus everything else the sink stores per chunk (id with its unique index,
// document id, meta, a 256-dimension float16 vector), still one transaction: what the index's
// schema costs before any of sluice's own work. Vectors are computed before the clock starts.
double bare_rows_insert(const std::vector<std::string>& chunks, const std::string& path) {
  std::vector<std::vector<uint16_t>> vectors;
  for (const auto& c : chunks) {
    std::vector<uint16_t> half;
    for (float f : hash_embed(c, 256)) half.push_back(float_to_half(f));
    vectors.push_back(std::move(half));
  }
  sqlite3* db = fresh_db(
      path,
      "CREATE TABLE chunks(rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT "
      "NULL, "
      "seq INTEGER NOT NULL, text TEXT NOT NULL, meta TEXT NOT NULL, vector BLOB); "
      "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='rowid');");
  auto t0 = Clock::now();
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  sqlite3_stmt* row = nullptr;
  sqlite3_stmt* fts = nullptr;
  sqlite3_prepare_v2(
      db, "INSERT INTO chunks(id, doc_id, seq, text, meta, vector) VALUES (?, 'doc', ?, ?, ?, ?)",
      -1, &row, nullptr);
  sqlite3_prepare_v2(db, "INSERT INTO chunks_fts(rowid, text) VALUES (?, ?)", -1, &fts, nullptr);
  const std::string meta = R"({"path":"graphs/data/kjv/book.txt"})";
  for (size_t i = 0; i < chunks.size(); ++i) {
    std::string id = "book.txt#";
    id += std::to_string(i);
    sqlite3_bind_text(row, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
    sqlite3_bind_int64(row, 2, static_cast<int64_t>(i));
    sqlite3_bind_text(row, 3, chunks[i].data(), static_cast<int>(chunks[i].size()), SQLITE_STATIC);
    sqlite3_bind_text(row, 4, meta.data(), static_cast<int>(meta.size()), SQLITE_STATIC);
    sqlite3_bind_blob(row, 5, vectors[i].data(),
                      static_cast<int>(vectors[i].size() * sizeof(uint16_t)), SQLITE_STATIC);
    sqlite3_step(row);
    sqlite3_reset(row);
    sqlite3_bind_int64(fts, 1, sqlite3_last_insert_rowid(db));
    sqlite3_bind_text(fts, 2, chunks[i].data(), static_cast<int>(chunks[i].size()), SQLITE_STATIC);
    sqlite3_step(fts);
    sqlite3_reset(fts);
  }
  sqlite3_finalize(row);
  sqlite3_finalize(fts);
  return commit_and_close(db, t0);
}

void BM_LocalFilesVsBareFts5(benchmark::State& state) {
  auto chunks = corpus_chunks();
  std::string dir = (fs::temp_directory_path() / "sluice-bench").string();
  fs::create_directories(dir);
  GraphSpec spec = load_graph(std::string(SLUICE_SOURCE_DIR) + "/graphs/local-files.json",
                              {{"db", dir + "/local-files.db"}}, builtin_registry());
  RunOptions opts;
  opts.threads = 2;
  double bare = 0, rows = 0, ours = 0;
  uint64_t our_chunks = 0;
  for (auto _ : state) {
    bare += bare_fts5_insert(chunks, dir + "/bare.db");
    rows += bare_rows_insert(chunks, dir + "/rows.db");
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
  state.counters["same_rows_chunks_per_s"] = chunks.size() * it / rows;
  state.counters["ratio_same_rows"] = (our_chunks / ours) / (chunks.size() / rows);
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
