// index.sqlite: upsert semantics, search in every mode, and refusing what is not ours.
#include <atomic>
#include <filesystem>
#include <gtest/gtest.h>
#include <random>
#include <sqlite3.h>

#include "nodes/index_sqlite.hpp"
#include "nodes/index_sqlite_search.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

std::string corpus_graph(const test::TempDir& dir) {
  return R"({
  "nodes": [
    {"id": "files", "type": "source.files", "params": {"dir": ")" +
         (dir / "docs") + R"("}},
    {"id": "chunk", "type": "chunk.recursive", "params": {"size": 120}},
    {"id": "embed", "type": "embed.hash", "params": {"dim": 64}},
    {"id": "index", "type": "index.sqlite", "params": {"path": ")" +
         (dir / "i.db") + R"("}}
  ],
  "edges": [["files", "chunk"], ["chunk", "embed"], ["embed", "index"]]
})";
}

// corpus_graph with chunks of 40 characters: more chunks per document than its 120.
std::string small_chunks_graph(const test::TempDir& dir) {
  std::string g = corpus_graph(dir);
  g.replace(g.find("\"size\": 120"), 11, "\"size\": 40");
  return g;
}

void make_corpus(const test::TempDir& dir) {
  for (int i = 0; i < 20; ++i) {
    std::string text;
    for (int p = 0; p < 5; ++p)
      text += "Paragraph " + std::to_string(p) + " of file " + std::to_string(i) +
              " talks about rivers and hills.\n\n";
    if (i == 13) text += "The quartz heron sings at midnight.\n";
    test::write_file(dir / ("docs/f" + std::to_string(i) + ".txt"), text);
  }
}

// Runs `sql` on the file (a test reaching past the sink, e.g. to stage an interrupted run).
void exec_sql(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  sqlite3_open(db.c_str(), &h);
  char* err = nullptr;
  int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "") << " in " << sql;
  sqlite3_free(err);
  sqlite3_close(h);
}

// FTS5's own check that chunks_fts holds exactly the text of the rows up to the sink's mark.
bool full_text_consistent(const std::string& db) {
  sqlite3* h = nullptr;
  sqlite3_open(db.c_str(), &h);
  int rc = sqlite3_exec(h, "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)",
                        nullptr, nullptr, nullptr);
  sqlite3_close(h);
  return rc == SQLITE_OK;
}

std::string with_sink_params(std::string graph, const std::string& params) {
  size_t at = graph.find("\"path\": ");
  graph.insert(at, params + ", ");
  return graph;
}

std::vector<std::string> rows(const std::string& db) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h,
                     "SELECT id || '|' || doc_id || '|' || seq || '|' || text || '|' || "
                     "length(vector) FROM chunks ORDER BY id",
                     -1, &s, nullptr);
  std::vector<std::string> out;
  while (sqlite3_step(s) == SQLITE_ROW)
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  sqlite3_finalize(s);
  sqlite3_close(h);
  return out;
}

TEST(IndexSqlite, RunningTwiceGivesTheSameRows) {
  test::TempDir dir;
  make_corpus(dir);
  RunReport first = test::run_json(corpus_graph(dir));
  ASSERT_EQ(first.error, "");
  auto a = rows(dir / "i.db");
  RunReport second = test::run_json(corpus_graph(dir), 4);
  ASSERT_EQ(second.error, "");
  auto b = rows(dir / "i.db");
  EXPECT_EQ(a.size(), first.chunks);
  EXPECT_EQ(a, b);
  // The FTS index must not hold stale or doubled entries either.
  auto hits = search_index(dir / "i.db", "\"quartz heron\"", 10, SearchMode::bm25);
  EXPECT_EQ(hits.size(), 1u);
}

TEST(IndexSqlite, ChangedTextReplacesItsOldTermsInFullTextSearch) {
  test::TempDir dir;
  make_corpus(dir);
  ASSERT_EQ(test::run_json(corpus_graph(dir)).error, "");
  auto before = rows(dir / "i.db");
  std::string f13 = test::read_file(dir / "docs/f13.txt");
  f13.replace(f13.find("quartz heron"), 12, "copper finch");
  test::write_file(dir / "docs/f13.txt", f13);
  ASSERT_EQ(test::run_json(corpus_graph(dir)).error, "");
  EXPECT_TRUE(search_index(dir / "i.db", "\"quartz heron\"", 10, SearchMode::bm25).empty());
  auto hits = search_index(dir / "i.db", "\"copper finch\"", 10, SearchMode::bm25);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].doc_id, "f13.txt");
  EXPECT_EQ(rows(dir / "i.db").size(), before.size());
  // The FTS index agrees with its content table (FTS5's own consistency check).
  sqlite3* h = nullptr;
  sqlite3_open((dir / "i.db").c_str(), &h);
  EXPECT_EQ(sqlite3_exec(h,
                         "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(h);
  sqlite3_close(h);
}

TEST(IndexSqlite, FewerChunksPerDocumentReplaceTheOldOnesAsAUnit) {
  test::TempDir dir;
  make_corpus(dir);
  std::string db = dir / "i.db";
  std::string small = small_chunks_graph(dir);
  RunReport many = test::run_json(small);
  ASSERT_EQ(many.error, "");
  ASSERT_EQ(rows(db).size(), many.chunks);
  RunReport fewer = test::run_json(corpus_graph(dir));
  ASSERT_EQ(fewer.error, "");
  EXPECT_LT(fewer.chunks, many.chunks);
  EXPECT_EQ(rows(db).size(), fewer.chunks) << "no chunk of the first run is left over";
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM chunks c JOIN docs d USING (doc_id) "
                              "WHERE c.gen < d.gen"),
            0);
  EXPECT_TRUE(full_text_consistent(db));
  EXPECT_EQ(chunks_awaiting_full_text(db), 0u);
  EXPECT_EQ(search_index(db, "\"quartz heron\"", 10, SearchMode::bm25).size(), 1u);
  // Back to small chunks: rows come back, and a fresh index of the same run agrees.
  RunReport again = test::run_json(small);
  auto after = rows(db);
  EXPECT_EQ(after.size(), again.chunks);
  test::TempDir clean;
  std::filesystem::copy(dir / "docs", clean / "docs");
  ASSERT_EQ(
      test::run_json(small.replace(small.find(dir / "i.db"), (dir / "i.db").size(), clean / "i.db"))
          .error,
      "");
  EXPECT_EQ(rows(clean / "i.db"), after);
}

TEST(IndexSqlite, StaleChunksStayUntilARunCommits) {
  test::TempDir dir;
  make_corpus(dir);
  std::string db = dir / "i.db";
  std::string small = small_chunks_graph(dir);
  ASSERT_EQ(test::run_json(small).error, "");
  const size_t all = rows(db).size();
  // As a run that replaced f3 and f4 and was then interrupted leaves the file: their chunks
  // past the first are older than their documents, and the cleanup is pending.
  exec_sql(db, "UPDATE docs SET gen = gen + 1 WHERE doc_id IN ('f3.txt', 'f4.txt'); "
               "UPDATE chunks SET gen = gen + 1 WHERE seq = 0; "
               "INSERT OR REPLACE INTO sluice_meta(key, value) VALUES ('stale_check', '1')");
  std::atomic<bool> interrupt{true};
  RunOptions opts;
  opts.interrupt = &interrupt;
  RunReport stopped = run_graph(test::spec_from(small), opts);
  EXPECT_TRUE(stopped.interrupted);
  EXPECT_EQ(rows(db).size(), all) << "an interrupted run deletes nothing";
  const int64_t stale =
      test::sql_int(db, "SELECT count(*) FROM chunks c JOIN docs d USING (doc_id) "
                        "WHERE c.gen < d.gen");
  EXPECT_GT(stale, 0);
  // The next run that ends well deletes them, though it writes other documents only.
  std::string others = small;
  others.replace(others.find("\"params\": {\"dir\""), 11, "\"params\": {\"glob\": \"f1*\", ");
  ASSERT_EQ(test::run_json(others).error, "");
  EXPECT_EQ(rows(db).size(), all - static_cast<size_t>(stale));
  EXPECT_TRUE(full_text_consistent(db));
  EXPECT_EQ(test::sql_int(db, "SELECT value FROM sluice_meta WHERE key = 'stale_check'"), 0);
}

// Two chunkers without an id_tag make the same chunk ids for each document: every sink takes
// the first of each and the report counts the rest.
TEST(DuplicateIds, EverySinkKeepsTheFirstAndTheReportCountsTheRest) {
  test::TempDir dir;
  test::write_file(dir / "in.jsonl", "{\"id\": \"a\", \"text\": \"first a\"}\n"
                                     "{\"id\": \"b\", \"text\": \"only b\"}\n");
  std::string g = R"({"nodes": [
    {"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                  (dir / "in.jsonl") + R"("}},
    {"id": "c1", "type": "chunk.recursive", "params": {"size": 100}},
    {"id": "c2", "type": "chunk.recursive", "params": {"size": 100}},
    {"id": "jsonl", "type": "index.jsonl", "params": {"path": ")" +
                  (dir / "out.jsonl") + R"("}},
    {"id": "db", "type": "index.sqlite", "params": {"path": ")" +
                  (dir / "i.db") + R"("}}],
  "edges": [["src", "c1"], ["src", "c2"], ["c1", "jsonl"], ["c2", "jsonl"], ["c1", "db"],
            ["c2", "db"]]})";
  RunReport rep = test::run_json(g);
  ASSERT_EQ(rep.error, "");
  EXPECT_EQ(rep.duplicate_ids, 4u) << "a#0 and b#0 once more, at each of two sinks";
  EXPECT_TRUE(rep.duplicate_id_example == "a#0" || rep.duplicate_id_example == "b#0")
      << rep.duplicate_id_example;
  EXPECT_EQ(rep.indexed, 2u) << "a#0 and b#0, once in each sink: counted once";
  EXPECT_EQ(rep.filtered, 4u);
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 2u);
  EXPECT_NE(rep.table().find("duplicate ids 4: records with an id already written in this run "
                             "were dropped, the first of each kept"),
            std::string::npos)
      << rep.table();
  EXPECT_NE(rep.to_json().find("\"duplicate_ids\":4"), std::string::npos);
  EXPECT_EQ(test::read_lines(dir / "out.jsonl").size(), 2u);
  EXPECT_EQ(test::sql_int(dir / "i.db", "SELECT count(*) FROM chunks"), 2);
}

TEST(IndexSqlite, SearchFindsPlantedPhraseInEveryMode) {
  test::TempDir dir;
  make_corpus(dir);
  ASSERT_EQ(test::run_json(corpus_graph(dir)).error, "");
  for (SearchMode mode : {SearchMode::bm25, SearchMode::vector, SearchMode::hybrid}) {
    auto hits = search_index(dir / "i.db", "quartz heron midnight", 3, mode);
    ASSERT_FALSE(hits.empty());
    EXPECT_EQ(hits[0].doc_id, "f13.txt") << "mode " << static_cast<int>(mode);
    EXPECT_LE(hits.size(), 3u);
  }
  EXPECT_TRUE(search_index(dir / "i.db", "zzzyyyxxx", 3, SearchMode::bm25).empty());
  // FTS5 syntax in a user's query must not be an error.
  EXPECT_NO_THROW(search_index(dir / "i.db", "rivers AND (\"hills* NEAR", 3, SearchMode::bm25));
}

TEST(IndexSqlite, MissingAndForeignDatabasesAreClearErrors) {
  test::TempDir dir;
  try {
    search_index(dir / "none.db", "x", 3, SearchMode::bm25);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "no index at \"" + (dir / "none.db") +
                                         "\" (run a graph with an index.sqlite sink first)");
  }
  sqlite3* h = nullptr;
  sqlite3_open((dir / "other.db").c_str(), &h);
  sqlite3_exec(h, "CREATE TABLE users(name TEXT)", nullptr, nullptr, nullptr);
  sqlite3_close(h);
  EXPECT_THROW(search_index(dir / "other.db", "x", 3, SearchMode::bm25), std::runtime_error);
  // Writing into it is refused too, and the foreign table is untouched.
  RunReport rep = test::run_json(R"({
  "nodes": [{"id": "s", "type": "source.range", "params": {"count": 3}},
            {"id": "k", "type": "index.sqlite", "params": {"path": ")" +
                                 (dir / "other.db") + R"("}}],
  "edges": [["s", "k"]]})");
  EXPECT_NE(rep.error.find("is an SQLite database but not a sluice index"), std::string::npos)
      << rep.error;
}

TEST(IndexSqlite, VectorSearchWithoutVectorsSaysSo) {
  test::TempDir dir;
  RunReport rep = test::run_json(R"({
  "nodes": [{"id": "s", "type": "source.range", "params": {"count": 3}},
            {"id": "k", "type": "index.sqlite", "params": {"path": ")" +
                                 (dir / "nv.db") + R"("}}],
  "edges": [["s", "k"]]})");
  ASSERT_EQ(rep.error, "");
  try {
    search_index(dir / "nv.db", "x", 3, SearchMode::vector);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("has no vectors"), std::string::npos);
  }
}

TEST(IndexSqlite, ChangingTheEmbedderOfAnIndexIsRefused) {
  test::TempDir dir;
  make_corpus(dir);
  ASSERT_EQ(test::run_json(corpus_graph(dir)).error, "");
  std::string g = corpus_graph(dir);
  g.replace(g.find("\"dim\": 64"), 9, "\"dim\": 32");
  RunReport rep = test::run_json(g);
  EXPECT_NE(rep.error.find("write to a new path"), std::string::npos) << rep.error;
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_GT(rep.dead_lettered, 0u);
}

TEST(IndexSqlite, FullTextFollowsTheRowsInStepsAndIsCompleteAtTheEnd) {
  test::TempDir dir;
  make_corpus(dir);
  // Steps of 7 rows: many catch-ups, each inside a batch's transaction, plus the last at close.
  RunReport rep =
      test::run_json(with_sink_params(corpus_graph(dir), R"("fts_batch": 7, "batch": 5)"));
  ASSERT_EQ(rep.error, "");
  std::string db = dir / "i.db";
  EXPECT_EQ(chunks_awaiting_full_text(db), 0u);
  EXPECT_EQ(
      test::sql_int(db, "SELECT CAST(value AS INTEGER) FROM sluice_meta WHERE key = 'fts_rowid'"),
      test::sql_int(db, "SELECT max(rowid) FROM chunks"));
  EXPECT_TRUE(full_text_consistent(db));
  // Every file's paragraph is found once per chunk holding it: no row missed or indexed twice.
  EXPECT_EQ(search_index(db, "\"quartz heron\"", 10, SearchMode::bm25).size(), 1u);
  EXPECT_EQ(static_cast<int64_t>(search_index(db, "rivers", 1000, SearchMode::bm25).size()),
            test::sql_int(db, "SELECT count(*) FROM chunks WHERE text LIKE '%rivers%'"));
}

TEST(IndexSqlite, RowsAnInterruptedRunLeftOutOfFullTextAreAddedByTheNextRun) {
  test::TempDir dir;
  make_corpus(dir);
  std::string db = dir / "i.db";
  ASSERT_EQ(test::run_json(corpus_graph(dir)).error, "");
  // What a run killed before its catch-up leaves: rows committed, chunks_fts without them.
  exec_sql(db, "INSERT INTO chunks_fts(chunks_fts) VALUES ('delete-all'); "
               "UPDATE sluice_meta SET value = '0' WHERE key = 'fts_rowid'");
  uint64_t all = static_cast<uint64_t>(test::sql_int(db, "SELECT count(*) FROM chunks"));
  EXPECT_EQ(chunks_awaiting_full_text(db), all);
  EXPECT_TRUE(search_index(db, "\"quartz heron\"", 10, SearchMode::bm25).empty());
  // The next run changes one of those rows' text: only the new text may be found.
  std::string f13 = test::read_file(dir / "docs/f13.txt");
  f13.replace(f13.find("quartz heron"), 12, "copper finch");
  test::write_file(dir / "docs/f13.txt", f13);
  ASSERT_EQ(test::run_json(corpus_graph(dir)).error, "");
  EXPECT_EQ(chunks_awaiting_full_text(db), 0u);
  EXPECT_TRUE(full_text_consistent(db));
  EXPECT_TRUE(search_index(db, "\"quartz heron\"", 10, SearchMode::bm25).empty());
  EXPECT_EQ(search_index(db, "\"copper finch\"", 10, SearchMode::bm25).size(), 1u);
  EXPECT_EQ(static_cast<uint64_t>(test::sql_int(db, "SELECT count(*) FROM chunks")), all);
}

TEST(IndexSqlite, VectorsAreHalfFloatsUnlessTheFileOrTheGraphSaysFloat32) {
  test::TempDir dir;
  make_corpus(dir);
  std::string g = corpus_graph(dir);  // dim 64
  ASSERT_EQ(test::run_json(g).error, "");
  std::string db = dir / "i.db";
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM chunks WHERE length(vector) != 64 * 2"), 0);
  EXPECT_EQ(search_index(db, "quartz heron midnight", 3, SearchMode::vector).at(0).doc_id,
            "f13.txt");
  // Asking for the other type of an existing file is refused, with the way out.
  RunReport rep = test::run_json(with_sink_params(g, R"("vector_type": "f32")"));
  EXPECT_NE(rep.error.find("stores vectors as f16, not f32: leave vector_type out"),
            std::string::npos)
      << rep.error;

  std::string g32 = g;
  g32.replace(g32.find("i.db"), 4, "f32.db");
  ASSERT_EQ(test::run_json(with_sink_params(g32, R"("vector_type": "f32")")).error, "");
  std::string db32 = dir / "f32.db";
  EXPECT_EQ(test::sql_int(db32, "SELECT count(*) FROM chunks WHERE length(vector) != 64 * 4"), 0);
  // Half floats keep about three significant digits: the same best hit, scores within 1e-3.
  auto h16 = search_index(db, "quartz heron midnight", 3, SearchMode::vector);
  auto h32 = search_index(db32, "quartz heron midnight", 3, SearchMode::vector);
  ASSERT_EQ(h16.size(), h32.size());
  EXPECT_EQ(h16[0].id, h32[0].id);
  for (size_t i = 0; i < h16.size(); ++i) EXPECT_NEAR(h16[i].score, h32[i].score, 1e-3);
  // A later run without vector_type follows the file: float32 rows stay float32.
  ASSERT_EQ(test::run_json(g32).error, "");
  EXPECT_EQ(test::sql_int(db32, "SELECT count(*) FROM chunks WHERE length(vector) != 64 * 4"), 0);
}

TEST(IndexSqlite, AVersionTwoFileIsUpgradedInPlaceAndANewerOneRefused) {
  test::TempDir dir;
  make_corpus(dir);
  std::string g = with_sink_params(corpus_graph(dir), R"("vector_type": "f32")");
  ASSERT_EQ(test::run_json(g).error, "");
  std::string db = dir / "i.db";
  // Version 2 had no mark (chunks_fts always in step) and float32 vectors only.
  exec_sql(db, "DELETE FROM sluice_meta WHERE key IN ('fts_rowid', 'vector_type'); "
               "UPDATE sluice_meta SET value = '2' WHERE key = 'schema_version'");
  auto before = rows(db);
  ASSERT_EQ(test::run_json(corpus_graph(dir)).error, "");
  EXPECT_EQ(rows(db), before);
  EXPECT_EQ(test::sql_int(db, "SELECT value FROM sluice_meta WHERE key = 'schema_version'"), 5);
  EXPECT_EQ(chunks_awaiting_full_text(db), 0u);
  EXPECT_TRUE(full_text_consistent(db));
  EXPECT_EQ(search_index(db, "\"quartz heron\"", 10, SearchMode::bm25).size(), 1u);
  EXPECT_EQ(search_index(db, "quartz heron midnight", 3, SearchMode::vector).at(0).doc_id,
            "f13.txt");

  exec_sql(db, "UPDATE sluice_meta SET value = '9' WHERE key = 'schema_version'");
  RunReport rep = test::run_json(corpus_graph(dir));
  EXPECT_NE(
      rep.error.find("was written by a newer sluice (index schema 9; this one knows up to 5)"),
      std::string::npos)
      << rep.error;
  EXPECT_THROW(search_index(db, "heron", 3, SearchMode::bm25), std::runtime_error);
}

TEST(IndexSqlite, SearchOnDamagedOrCraftedFilesIsAnErrorOrAnAnswerNeverACrash) {
  test::TempDir dir;
  make_corpus(dir);
  ASSERT_EQ(test::run_json(corpus_graph(dir)).error, "");
  const std::string good = test::read_file(dir / "i.db");
  ASSERT_GT(good.size(), 4096u);
  // Byte-flipped copies: every search answers or throws a runtime_error, whatever the damage.
  std::mt19937_64 rng(7);
  int errors = 0, answers = 0;
  for (int copy = 0; copy < 60; ++copy) {
    std::string bad = good;
    const int flips = 1 + copy % 8;
    for (int f = 0; f < flips; ++f)
      bad[static_cast<size_t>(rng() % bad.size())] ^= static_cast<char>(1 + rng() % 255);
    const std::string path = dir / ("bad" + std::to_string(copy) + ".db");
    test::write_file(path, bad);
    for (SearchMode mode : {SearchMode::bm25, SearchMode::vector, SearchMode::hybrid}) {
      try {
        search_index(path, "quartz heron midnight", 3, mode);
        chunks_awaiting_full_text(path);
        ++answers;
      } catch (const std::runtime_error&) {
        ++errors;
      }
    }
  }
  EXPECT_EQ(errors + answers, 180);

  // A crafted embedder record: dim 0 once divided by zero.
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "i.db").c_str(), &h), SQLITE_OK);
  sqlite3_exec(h,
               "UPDATE sluice_meta SET value = '{\"type\": \"embed.hash\", \"dim\": 0}' "
               "WHERE key = 'embedder'; UPDATE sluice_meta SET value = 'x' WHERE key = "
               "'fts_rowid'; UPDATE chunks SET text = NULL WHERE rowid % 2 = 0;",
               nullptr, nullptr, nullptr);
  sqlite3_close(h);
  EXPECT_THROW(search_index(dir / "i.db", "quartz", 3, SearchMode::vector), std::runtime_error);
  EXPECT_THROW(chunks_awaiting_full_text(dir / "i.db"), std::runtime_error);
  EXPECT_NO_THROW(search_index(dir / "i.db", "quartz heron", 3, SearchMode::bm25));
}

TEST(IndexSqlite, ALongQueryIsSearchedOnceAWordAndCapped) {
  test::TempDir dir;
  make_corpus(dir);
  ASSERT_EQ(test::run_json(corpus_graph(dir)).error, "");
  std::string query;
  for (int i = 0; i < 1000; ++i) query += "the ";
  for (int i = 0; i < 100; ++i) query += "word" + std::to_string(i) + " ";
  query += "quartz heron";
  std::string note;
  auto hits = search_index(dir / "i.db", query, 3, SearchMode::bm25, &note);
  EXPECT_NE(note.find("103 distinct words; searched the first 32"), std::string::npos) << note;
  note.clear();
  search_index(dir / "i.db", "the the the quartz", 3, SearchMode::bm25, &note);
  EXPECT_EQ(note, "") << "repeats are searched once, with no note";
}

}  // namespace
}  // namespace sluice
