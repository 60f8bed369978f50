// index.sqlite's nearest-neighbour graph: built by the sink, kept in step with replaced documents,
// exact about rows it has not taken in yet, and safe on damaged files.
#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <random>
#include <set>

#include "engine/vector/dot.hpp"
#include "nodes/embed_hash.hpp"
#include "nodes/index_sqlite_ann.hpp"
#include "nodes/index_sqlite_bm25.hpp"
#include "nodes/index_sqlite_search.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

// `count` synthetic documents (their text set by `seed`) into `dir`/i.db, whose sink keeps a
// graph as `ann` says.
std::string range_graph(const test::TempDir& dir, int count, int seed, const std::string& ann,
                        const std::string& bm25 = "auto", const std::string& vector_type = "f16") {
  return R"({"nodes": [
    {"id": "s", "type": "source.range", "params": {"count": )" +
         std::to_string(count) + R"(, "size": 1500, "seed": )" + std::to_string(seed) + R"(}},
    {"id": "c", "type": "chunk.recursive", "params": {"size": 300}},
    {"id": "e", "type": "embed.hash", "params": {"dim": 64}},
    {"id": "i", "type": "index.sqlite", "params": {"ann": ")" +
         ann + R"(", "bm25_index": ")" + bm25 + R"(", "vector_type": ")" + vector_type +
         R"(", "path": ")" + (dir / "i.db") + R"("}}],
  "edges": [["s", "c"], ["c", "e"], ["e", "i"]]})";
}

std::vector<std::string> texts(const std::string& db, int n) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, "SELECT text FROM chunks ORDER BY id LIMIT ?1", -1, &s, nullptr);
  sqlite3_bind_int(s, 1, n);
  std::vector<std::string> out;
  while (sqlite3_step(s) == SQLITE_ROW)
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  sqlite3_finalize(s);
  sqlite3_close(h);
  return out;
}

// `good` damaged as round `round` of a mutation test: every tenth round cut short, the others with
// 1 to 8 bytes changed, half of them within the first `head` bytes (a header, the first nodes'
// links), where a change matters most.
std::string mutant(const std::string& good, int round, size_t head, std::mt19937& rng) {
  std::string bytes = good;
  if (round % 10 == 0) {
    bytes.resize(rng() % bytes.size());
    return bytes;
  }
  for (int m = 0; m < 1 + static_cast<int>(rng() % 8); ++m) {
    size_t at = rng() % (m % 2 ? bytes.size() : std::min<size_t>(bytes.size(), head));
    bytes[at] = static_cast<char>(rng());
  }
  return bytes;
}

// Hits of the graph's answer whose score reaches the exact K-th score, over every query.
double recall(const std::string& db, const std::vector<std::string>& queries, int k) {
  size_t found = 0, total = 0;
  for (const auto& q : queries) {
    VectorOptions exact;
    exact.exact = true;
    auto want = search_index(db, q, k, SearchMode::vector, nullptr, -1, {}, exact);
    auto got = search_index(db, q, k, SearchMode::vector);
    if (want.empty()) continue;
    const double kth = want.back().score;
    total += want.size();
    for (const auto& h : got) found += h.score >= kth - 1e-4 ? 1 : 0;
  }
  return total ? static_cast<double>(found) / static_cast<double>(total) : 1.0;
}

TEST(AnnGraph, TheSinkBuildsOneAndSearchFindsWhatAScanFinds) {
  test::TempDir dir;
  RunReport rep = test::run_json(range_graph(dir, 300, 0, "always"));
  ASSERT_EQ(rep.error, "");
  const std::string db = dir / "i.db";
  ASSERT_TRUE(std::filesystem::exists(db + ".hnsw"));
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM ann_key"),
            test::sql_int(db, "SELECT count(*) FROM chunks"));
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM ann_log"), 0);
  const auto qs = texts(db, 40);
  EXPECT_GE(recall(db, qs, 10), 0.95);
  // A chunk's own text finds that chunk first, through the graph.
  auto hits = search_index(db, qs[3], 1, SearchMode::vector);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_NEAR(hits[0].score, 1.0, 1e-3);
  // `auto` keeps no graph for a small index: a scan is as fast.
  test::TempDir small;
  ASSERT_EQ(test::run_json(range_graph(small, 50, 0, "auto")).error, "");
  EXPECT_FALSE(std::filesystem::exists(small / "i.db.hnsw"));
  EXPECT_EQ(test::sql_int(small / "i.db", "SELECT count(*) FROM ann_log"), 0);
}

// A process that searches a graph again and again holds its bottom layer in memory from the
// kResidentAfter-th search on, and finds exactly what it found reading node by node: in halves
// from an index of halves (where the CPU converts them in hardware), in floats from one of floats.
TEST(AnnGraph, RepeatedSearchesHoldTheGraphInMemoryAndFindTheSame) {
  for (const std::string type : {"f16", "f32"}) {
    SCOPED_TRACE(type);
    test::TempDir dir;
    ASSERT_EQ(test::run_json(range_graph(dir, 300, 0, "always", "auto", type)).error, "");
    const sqlite_index::AnnGraph g(dir / "i.db.hnsw", 64);
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    std::vector<std::vector<float>> queries(sqlite_index::AnnGraph::kResidentAfter);
    for (auto& q : queries) {
      q.resize(64);
      float norm = 0;
      for (float& x : q) {
        x = normal(rng);
        norm += x * x;
      }
      for (float& x : q) x /= std::sqrt(norm);
    }
    std::vector<std::vector<std::pair<float, int64_t>>> read_node_by_node;
    for (size_t i = 0; i + 1 < queries.size(); ++i)
      read_node_by_node.push_back(g.search(queries[i].data(), 10, 64));
    EXPECT_FALSE(g.resident());
    EXPECT_EQ(g.default_ef(), sqlite_index::kAnnEfSearch);
    EXPECT_EQ(g.search(queries.back().data(), 10, 64).size(), 10u);
    ASSERT_TRUE(g.resident()) << "a small graph fits: held from the 16th search on";
    EXPECT_EQ(g.default_ef(), sqlite_index::kAnnEfSearchHeld) << "held, a search keeps more";
    // Hash vectors in floats are seldom halves exactly (1/sqrt(words)).
    EXPECT_EQ(g.resident_in_halves(), type == "f16" && halves_are_fast());
    for (size_t i = 0; i + 1 < queries.size(); ++i) {
      EXPECT_EQ(read_node_by_node[i].size(), 10u);
      EXPECT_EQ(g.search(queries[i].data(), 10, 64), read_node_by_node[i]) << "query " << i;
    }
  }
}

TEST(AnnGraph, ReplacedDocumentsAreTakenInAndTheirOldChunksNeverReturned) {
  test::TempDir dir;
  const std::string db = dir / "i.db";
  ASSERT_EQ(test::run_json(range_graph(dir, 200, 0, "always")).error, "");
  const auto old_texts = texts(db, 30);
  // The same ids with other text: every document replaced, its chunks changed or gone.
  ASSERT_EQ(test::run_json(range_graph(dir, 200, 1, "always")).error, "");
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM ann_log"), 0);
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM ann_key"),
            test::sql_int(db, "SELECT count(*) FROM chunks"));
  const auto new_texts = texts(db, 30);
  ASSERT_NE(old_texts, new_texts);
  EXPECT_GE(recall(db, new_texts, 10), 0.95);
  // An old chunk's text no longer scores 1 against anything: its vector left the graph.
  for (size_t i = 0; i < 10; ++i) {
    auto hits = search_index(db, old_texts[i], 1, SearchMode::vector);
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_LT(hits[0].score, 0.999) << old_texts[i];
  }
}

// A few documents changed: the graph is updated in place (their old vectors marked deleted, the
// new ones added), not rebuilt.
TEST(AnnGraph, AFewChangedDocumentsUpdateTheGraphInPlace) {
  test::TempDir dir;
  auto text = [](int i, int version) {
    std::string t;
    for (int s = 0; s < 4; ++s)
      t += "File " + std::to_string(i) + " version " + std::to_string(version) + " sentence " +
           std::to_string(s) + " about " + (s % 2 ? "rivers" : "hills") + ". ";
    return t;
  };
  for (int i = 0; i < 30; ++i)
    test::write_file(dir / ("docs/f" + std::to_string(i) + ".txt"), text(i, 1));
  const std::string graph = R"({"nodes": [
    {"id": "f", "type": "source.files", "params": {"dir": ")" +
                            (dir / "docs") + R"("}},
    {"id": "c", "type": "chunk.recursive", "params": {"size": 60}},
    {"id": "e", "type": "embed.hash", "params": {"dim": 32}},
    {"id": "i", "type": "index.sqlite", "params": {"ann": "always", "path": ")" +
                            (dir / "i.db") + R"("}}],
    "edges": [["f", "c"], ["c", "e"], ["e", "i"]]})";
  ASSERT_EQ(test::run_json(graph).error, "");
  const std::string db = dir / "i.db";
  const std::string before = test::read_file(db + ".hnsw");
  const size_t nodes_before = sqlite_index::AnnGraph(db + ".hnsw", 32).size();
  // Two files rewritten, one with fewer chunks.
  test::write_file(dir / "docs/f3.txt", text(3, 2));
  test::write_file(dir / "docs/f7.txt", "File 7 now says one short thing.");
  ASSERT_EQ(test::run_json(graph).error, "");
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM ann_log"), 0);
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM ann_key"),
            test::sql_int(db, "SELECT count(*) FROM chunks"));
  // Updated in place: the old nodes are still in the file (marked deleted), the new ones added.
  EXPECT_GT(sqlite_index::AnnGraph(db + ".hnsw", 32).size(), nodes_before);
  EXPECT_NE(test::read_file(db + ".hnsw"), before);
  for (const std::string& q :
       {text(3, 2).substr(0, 40), std::string("File 7 now says one short thing.")}) {
    auto hits = search_index(db, q, 3, SearchMode::vector);
    ASSERT_FALSE(hits.empty());
    VectorOptions exact;
    exact.exact = true;
    auto want = search_index(db, q, 3, SearchMode::vector, nullptr, -1, {}, exact);
    EXPECT_EQ(hits[0].id, want[0].id) << q;
    EXPECT_NEAR(hits[0].score, want[0].score, 1e-3);
  }
  // Nothing of the old f7 is found: its rows are gone and its vectors deleted from the graph.
  for (const auto& h : search_index(db, text(7, 1), 10, SearchMode::vector))
    EXPECT_EQ(h.text.find("File 7 version 1"), std::string::npos) << h.id;
  // Held in memory, the graph leaves the deleted nodes out as it does read node by node: a search
  // as wide as the graph finds every live vector, and only those.
  const sqlite_index::AnnGraph g(db + ".hnsw", 32);
  const std::vector<float> q = hash_embed(text(7, 1), 32);
  const auto node_by_node = g.search(q.data(), g.size(), g.size());
  EXPECT_EQ(static_cast<int64_t>(node_by_node.size()),
            test::sql_int(db, "SELECT count(DISTINCT key) FROM ann_key"));
  EXPECT_LT(node_by_node.size(), g.size());
  for (uint32_t i = 1; i < sqlite_index::AnnGraph::kResidentAfter; ++i)
    ASSERT_EQ(g.search(q.data(), g.size(), g.size()), node_by_node);
  ASSERT_TRUE(g.resident());
  EXPECT_EQ(g.search(q.data(), g.size(), g.size()), node_by_node);
}

TEST(AnnGraph, RowsTheGraphHasNotTakenInAreScoredExactly) {
  test::TempDir dir;
  const std::string db = dir / "i.db";
  ASSERT_EQ(test::run_json(range_graph(dir, 200, 0, "always")).error, "");
  // A run whose sink leaves the graph alone (as an interrupted run does): its rows wait in the
  // log, and search must answer as if the graph had them.
  ASSERT_EQ(test::run_json(range_graph(dir, 200, 1, "never")).error, "");
  EXPECT_GT(test::sql_int(db, "SELECT count(*) FROM ann_log"), 0);
  const auto new_texts = texts(db, 20);
  for (const auto& t : new_texts) {
    auto hits = search_index(db, t, 1, SearchMode::vector);
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_NEAR(hits[0].score, 1.0, 1e-3) << t;
  }
  EXPECT_GE(recall(db, new_texts, 10), 0.95);
  // `sluice build-search` takes them in (every row changed: past a third of the graph, it
  // starts over rather than leave most nodes as deleted detours).
  auto r = test::run_sluice("build-search " + db);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("built the nearest-neighbour graph"), std::string::npos) << r.out;
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM ann_log"), 0);
  EXPECT_GE(recall(db, new_texts, 10), 0.95);
  r = test::run_sluice("build-search " + db);
  EXPECT_NE(r.out.find("up to date"), std::string::npos) << r.out;
}

// A launcher's workers share one index: each one's sink ends by taking the rows in, one at a time
// (a lock file), so the last to finish leaves a graph that holds every row.
TEST(AnnGraph, ALaunchersWorkersLeaveOneGraphThatHoldsEveryRow) {
  test::TempDir dir;
  test::write_file(dir / "g.json", range_graph(dir, 300, 0, "always"));
  auto r = test::run_sluice("run " + (dir / "g.json") + " -P 2 --quiet --state " + (dir / "st"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string db = dir / "i.db";
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM ann_log"), 0);
  EXPECT_EQ(test::sql_int(db, "SELECT count(*) FROM ann_key"),
            test::sql_int(db, "SELECT count(*) FROM chunks"));
  EXPECT_GE(recall(db, texts(db, 30), 10), 0.95);
}

TEST(AnnGraph, IdenticalChunksAreOneNodeAndEveryOneIsFound) {
  test::TempDir dir;
  for (int i = 0; i < 12; ++i)
    test::write_file(dir / ("docs/d" + std::to_string(i) + ".txt"),
                     i < 8 ? "The same boilerplate paragraph in every file."
                           : "Text of its own, number " + std::to_string(i) + ".");
  RunReport rep = test::run_json(R"({"nodes": [
    {"id": "f", "type": "source.files", "params": {"dir": ")" +
                                 (dir / "docs") + R"("}},
    {"id": "e", "type": "embed.hash", "params": {"dim": 32}},
    {"id": "i", "type": "index.sqlite", "params": {"ann": "always", "path": ")" +
                                 (dir / "i.db") + R"("}}],
    "edges": [["f", "e"], ["e", "i"]]})");
  ASSERT_EQ(rep.error, "");
  const std::string db = dir / "i.db";
  EXPECT_EQ(test::sql_int(db, "SELECT count(DISTINCT key) FROM ann_key"), 5);
  auto hits =
      search_index(db, "The same boilerplate paragraph in every file.", 10, SearchMode::vector);
  std::set<std::string> docs;
  for (const auto& h : hits)
    if (h.score > 0.999) docs.insert(h.doc_id);
  EXPECT_EQ(docs.size(), 8u);
}

TEST(AnnGraph, AGraphThatIsNotTheIndexsOwnIsNotUsed) {
  test::TempDir a, b;
  ASSERT_EQ(test::run_json(range_graph(a, 200, 0, "always")).error, "");
  ASSERT_EQ(test::run_json(range_graph(b, 200, 1, "always")).error, "");
  // b's graph copied over a's: search notices, scans, and says so.
  std::filesystem::copy_file(b / "i.db.hnsw", a / "i.db.hnsw",
                             std::filesystem::copy_options::overwrite_existing);
  const auto qs = texts(a / "i.db", 5);
  std::string note;
  auto hits = search_index(a / "i.db", qs[0], 3, SearchMode::vector, &note);
  ASSERT_FALSE(hits.empty());
  EXPECT_NEAR(hits[0].score, 1.0, 1e-3);
  EXPECT_NE(note.find("is not the one the index records"), std::string::npos) << note;
  // The next upkeep rebuilds it.
  auto r = test::run_sluice("build-search " + (a / "i.db"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("built"), std::string::npos) << r.out;
  note.clear();
  search_index(a / "i.db", qs[0], 3, SearchMode::vector, &note);
  EXPECT_EQ(note, "");
}

// Every byte of a graph file is untrusted: a truncated or mutated file is refused or searched
// within its bounds, never read past (the sanitizers of the test build would say so).
TEST(AnnGraph, DamagedFilesAreRefusedOrSearchedSafely) {
  test::TempDir dir;
  ASSERT_EQ(test::run_json(range_graph(dir, 60, 0, "always")).error, "");
  const std::string good = test::read_file(dir / "i.db.hnsw");
  ASSERT_GT(good.size(), 200u);
  const std::vector<float> q = hash_embed("kato mire sanor", 64);
  const std::string path = dir / "mutant.hnsw";
  std::mt19937 rng(11);
  int refused = 0, searched = 0, bad_links = 0;
  for (int round = 0; round < 300; ++round) {
    test::write_file(path, mutant(good, round, 2048, rng));
    try {
      sqlite_index::AnnGraph g(path, 64);
      if (!g.links_ok()) ++bad_links;
      auto hits = g.search(q.data(), 5, 50);
      EXPECT_LE(hits.size(), 5u);
      ++searched;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(searched, 0);
  EXPECT_GT(bad_links, 0);
  // A graph of other dimensions is refused with the reason.
  try {
    sqlite_index::AnnGraph g(dir / "i.db.hnsw", 32);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not 32 floats"), std::string::npos) << e.what();
  }
}

// bm25 through the postings, and through FTS5 (`exact`): the same hits, score for score.
void expect_same_bm25(const std::string& db, const std::vector<std::string>& queries) {
  VectorOptions fts5;
  fts5.exact = true;
  for (const auto& q : queries) {
    const auto a = search_index(db, q, 10, SearchMode::bm25);
    const auto b = search_index(db, q, 10, SearchMode::bm25, nullptr, -1, {}, fts5);
    ASSERT_EQ(a.size(), b.size()) << q;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].id, b[i].id) << q << " #" << i;
      EXPECT_NEAR(a[i].score, b[i].score, 1e-6 * b[i].score) << q;
    }
  }
}

// Whether search would use the index's postings now.
bool postings_in_use(const std::string& db) {
  sqlite::Db h;
  h.open(db, SQLITE_OPEN_READONLY, 1000);
  return sqlite_index::open_bm25(h, db, nullptr) != nullptr;
}

std::vector<std::string> word_queries(const std::string& db) {
  std::vector<std::string> out;
  for (const auto& t : texts(db, 12)) {
    const size_t cut = t.find(' ', t.find(' ', t.find(' ') + 1) + 1);
    out.push_back(t.substr(0, cut));  // three words
    out.push_back(t.substr(0, t.find(' ')));
  }
  out.push_back("\"" + out[0] + "\"");  // a phrase: FTS5 answers it
  return out;
}

TEST(Bm25Postings, RankAsFts5DoesAndStaleOnesAreNeverUsed) {
  test::TempDir dir;
  const std::string db = dir / "i.db";
  ASSERT_EQ(test::run_json(range_graph(dir, 200, 0, "never", "always")).error, "");
  ASSERT_TRUE(std::filesystem::exists(db + ".bm25"));
  ASSERT_TRUE(postings_in_use(db));
  expect_same_bm25(db, word_queries(db));
  // Every document replaced by a run that leaves the postings alone: they are stale, and search
  // must answer from FTS5 (stale postings would rank the old text).
  ASSERT_EQ(test::run_json(range_graph(dir, 200, 1, "never", "never")).error, "");
  EXPECT_FALSE(postings_in_use(db));
  std::string note;
  search_index(db, "kato mire", 3, SearchMode::bm25, &note);
  EXPECT_NE(note.find("were written before the index's last change"), std::string::npos) << note;
  expect_same_bm25(db, word_queries(db));
  auto r = test::run_sluice("build-search " + db);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("wrote the bm25 postings"), std::string::npos) << r.out;
  EXPECT_TRUE(postings_in_use(db));
  expect_same_bm25(db, word_queries(db));
  r = test::run_sluice("build-search " + db);
  EXPECT_NE(r.out.find("the bm25 postings are up to date"), std::string::npos) << r.out;
  // `auto` writes none for a small index.
  test::TempDir small;
  ASSERT_EQ(test::run_json(range_graph(small, 50, 0, "auto")).error, "");
  EXPECT_FALSE(std::filesystem::exists(small / "i.db.bm25"));
}

TEST(Bm25Postings, DamagedFilesAreRefusedOrSearchedSafely) {
  test::TempDir dir;
  ASSERT_EQ(test::run_json(range_graph(dir, 40, 0, "never", "always")).error, "");
  const std::string good = test::read_file(dir / "i.db.bm25");
  ASSERT_GT(good.size(), 200u);
  const std::string path = dir / "mutant.bm25";
  std::mt19937 rng(5);
  int refused = 0, searched = 0;
  for (int round = 0; round < 300; ++round) {
    test::write_file(path, mutant(good, round, 160, rng));
    try {
      sqlite_index::Bm25Postings p(path);
      auto hits = p.search({"ka", "lo", "mi", "ren", "zzz"}, 5);
      EXPECT_LE(hits.size(), 5u);
      ++searched;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(searched, 0);
}

TEST(AnnGraph, SearchQueriesFileGivesOneJsonLineAQuery) {
  test::TempDir dir;
  ASSERT_EQ(test::run_json(range_graph(dir, 100, 0, "always")).error, "");
  test::write_file(dir / "q.txt", "kato mire\n\n" + texts(dir / "i.db", 1)[0] + "\n");
  auto r = test::run_sluice("search " + (dir / "i.db") + " --mode vector --k 3 --queries " +
                            (dir / "q.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = 0;
  for (size_t at = 0; (at = r.out.find("{\"query\":", at)) != std::string::npos; ++at) ++lines;
  EXPECT_EQ(lines, 2) << r.out;
  EXPECT_NE(r.out.find("\"ms\":"), std::string::npos);
  EXPECT_NE(r.out.find("\"hits\":[{\"id\":\"range-"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace sluice
