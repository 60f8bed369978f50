// index.sqlite: upsert semantics, search in every mode, and refusing what is not ours.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "nodes/index_sqlite.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

std::string corpus_graph(const test::TempDir& dir) {
  return R"({
  "nodes": [
    {"id": "files", "type": "source.files", "params": {"dir": ")" + (dir / "docs") + R"("}},
    {"id": "chunk", "type": "chunk.recursive", "params": {"size": 120}},
    {"id": "embed", "type": "embed.hash", "params": {"dim": 64}},
    {"id": "index", "type": "index.sqlite", "params": {"path": ")" + (dir / "i.db") + R"("}}
  ],
  "edges": [["files", "chunk"], ["chunk", "embed"], ["embed", "index"]]
})";
}

void make_corpus(const test::TempDir& dir) {
  for (int i = 0; i < 20; ++i) {
    std::string text;
    for (int p = 0; p < 5; ++p) text += "Paragraph " + std::to_string(p) + " of file " + std::to_string(i) + " talks about rivers and hills.\n\n";
    if (i == 13) text += "The quartz heron sings at midnight.\n";
    test::write_file(dir / ("docs/f" + std::to_string(i) + ".txt"), text);
  }
}

std::vector<std::string> rows(const std::string& db) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, "SELECT id || '|' || doc_id || '|' || seq || '|' || text || '|' || length(vector) FROM chunks ORDER BY id", -1, &s, nullptr);
  std::vector<std::string> out;
  while (sqlite3_step(s) == SQLITE_ROW) out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
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
  EXPECT_EQ(sqlite3_exec(h, "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)", nullptr, nullptr, nullptr),
            SQLITE_OK) << sqlite3_errmsg(h);
  sqlite3_close(h);
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
    EXPECT_EQ(std::string(e.what()), "no index at \"" + (dir / "none.db") + "\" (run a graph with an index.sqlite sink first)");
  }
  sqlite3* h = nullptr;
  sqlite3_open((dir / "other.db").c_str(), &h);
  sqlite3_exec(h, "CREATE TABLE users(name TEXT)", nullptr, nullptr, nullptr);
  sqlite3_close(h);
  EXPECT_THROW(search_index(dir / "other.db", "x", 3, SearchMode::bm25), std::runtime_error);
  // Writing into it is refused too, and the foreign table is untouched.
  RunReport rep = test::run_json(R"({
  "nodes": [{"id": "s", "type": "source.range", "params": {"count": 3}},
            {"id": "k", "type": "index.sqlite", "params": {"path": ")" + (dir / "other.db") + R"("}}],
  "edges": [["s", "k"]]})");
  EXPECT_NE(rep.error.find("is an SQLite database but not a sluice index"), std::string::npos) << rep.error;
}

TEST(IndexSqlite, VectorSearchWithoutVectorsSaysSo) {
  test::TempDir dir;
  RunReport rep = test::run_json(R"({
  "nodes": [{"id": "s", "type": "source.range", "params": {"count": 3}},
            {"id": "k", "type": "index.sqlite", "params": {"path": ")" + (dir / "nv.db") + R"("}}],
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

}  // namespace
}  // namespace sluice
