// The predefined graphs (graphs/*.json) run against the sim, as their README rows say.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <set>
#include <thread>

#include <rapidjson/document.h>

#include "engine/http/adaptive_limit.hpp"
#include "engine/http/client.hpp"
#include "engine/record_template.hpp"
#include "nodes/builtin_nodes.hpp"
#include "nodes/index_sqlite.hpp"
#include "nodes/index_sqlite_search.hpp"
#include "nodes/source_http_list.hpp"
#include "sim/sim.hpp"
#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

// graphs/sefaria.json against the sim, into dir/s.db, dead letters to dir/dlq.jsonl.
GraphSpec sefaria_into_sqlite(const test::RunningSim& server, const test::TempDir& dir) {
  GraphSpec spec = load_graph(test::source_dir() + "/graphs/sefaria.json",
                              {{"base_url", server.url() + "/sefaria"}, {"db", dir / "s.db"}},
                              builtin_registry());
  spec.settings.dead_letter = dir / "dlq.jsonl";
  return spec;
}

TEST(PredefinedGraphs, PapersBackfillAgainstTheSim) {
  sim::SimOptions o;
  o.docs = 3500;  // 100 works a year, 1990..2024
  o.latency_ms = 2;
  test::RunningSim server(o);
  test::TempDir dir;
  // Without has_abstract:true, the works that have none are listed and filtered by the graph.
  GraphSpec spec = load_graph(test::source_dir() + "/graphs/papers-backfill.json",
                              {{"base_url", server.url() + "/openalex"},
                               {"db", dir / "p.db"},
                               {"max_pages", "0"},
                               {"filter", "type:article"}},
                              builtin_registry());
  spec.settings.dead_letter = dir / "dlq.jsonl";
  RunReport rep = run_graph(spec, {});
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs, 100u) << "2024's works, listed month by month";
  EXPECT_EQ(rep.dead_lettered, 0u) << test::read_file(dir / "dlq.jsonl");
  EXPECT_GT(rep.docs_filtered, 0u) << "works without an abstract are filtered";
  EXPECT_EQ(rep.docs_indexed + rep.docs_filtered, 100u);
  EXPECT_EQ(test::sqlite_count(dir / "p.db", "SELECT count(DISTINCT doc_id) FROM chunks"),
            static_cast<int64_t>(rep.docs_indexed));
  EXPECT_EQ(test::sqlite_count(
                dir / "p.db",
                "SELECT count(*) FROM chunks WHERE doc_id NOT LIKE 'https://openalex.org/W%'"),
            0);
  // One short page a month ends each month's cursor.
  EXPECT_EQ(server.stats()["by_endpoint"]["/openalex/works"]["requests"].GetInt64(), 12);
}

TEST(PredefinedGraphs, SefariaAgainstTheSim) {
  sim::SimOptions o;
  o.latency_ms = 2;
  o.error_rate = 0.05;  // retried
  test::RunningSim server(o);
  test::TempDir dir;
  GraphSpec spec = sefaria_into_sqlite(server, dir);
  RunReport rep = run_graph(spec, {});
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  // The complex book answers 400 at book level: dead-lettered with Sefaria's message.
  auto dlq = test::read_lines(dir / "dlq.jsonl");
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_NE(dlq[0].find("\"status\":400"), std::string::npos) << dlq[0];
  EXPECT_NE(dlq[0].find("complex book-level ref"), std::string::npos) << dlq[0];
  // Every other book is in, section by section: ids are refs, meta names book and version.
  EXPECT_EQ(rep.docs_indexed, rep.docs - 1);
  EXPECT_GT(test::sqlite_count(dir / "s.db", "SELECT count(DISTINCT doc_id) FROM chunks"),
            static_cast<int64_t>(rep.docs));
  EXPECT_EQ(test::sqlite_count(dir / "s.db",
                               "SELECT count(*) FROM chunks WHERE meta NOT LIKE '%\"book\":%' OR "
                               "meta NOT LIKE '%\"version\":%'"),
            0);
  // Books expand into sections: the report counts both, and so does the summary.
  const NodeReport* sections = rep.expander();
  ASSERT_NE(sections, nullptr);
  EXPECT_EQ(sections->id, "sections");
  EXPECT_GE(static_cast<int64_t>(sections->docs_out),
            test::sqlite_count(dir / "s.db", "SELECT count(DISTINCT doc_id) FROM chunks"));
  EXPECT_EQ(rep.source_unit(), "books");
  const std::string table = rep.table();
  EXPECT_NE(table.find("books " + std::to_string(rep.docs) + " (indexed "), std::string::npos)
      << table;
  EXPECT_NE(table.find(")  sections "), std::string::npos) << table;
  EXPECT_NE(table.find(" sections/s"), std::string::npos) << table;
  // Footnotes are dropped as a unit and entities decoded.
  EXPECT_EQ(test::sqlite_count(dir / "s.db",
                               "SELECT count(*) FROM chunks WHERE text LIKE '%&nbsp;%' OR text "
                               "LIKE '%<%' OR text LIKE '%footnote%'"),
            0);
}

// The progress of a graph whose source items expand: books done out of the books the index
// listed (known once its one response is in), sections found so far.
TEST(PredefinedGraphs, SefariaProgressCountsBooksAndSections) {
  sim::SimOptions o;
  o.latency_ms = 10;
  o.sefaria_books = 16;  // 20 sections each, fetched one after the other: about 0.7 s in all
  test::RunningSim server(o);
  test::TempDir dir;
  GraphSpec spec = sefaria_into_sqlite(server, dir);
  std::vector<std::string> events;
  RunReport rep = test::run_with_events(spec, dir, events);
  EXPECT_EQ(rep.error, "");
  ASSERT_FALSE(events.empty());
  rapidjson::Document last;
  last.Parse(events.back().c_str());
  ASSERT_FALSE(last.HasParseError()) << events.back();
  EXPECT_STREQ(last["unit"].GetString(), "books") << events.back();
  EXPECT_STREQ(last["expanded_unit"].GetString(), "sections") << events.back();
  EXPECT_EQ(last["total"].GetUint64(), rep.docs) << events.back();
  EXPECT_GT(last["expanded"].GetUint64(), 0u) << events.back();
  EXPECT_LE(last["expanded"].GetUint64(), rep.expander()->docs_out);
}

// The predefined graphs switch embedder and sink by vars alone: Sefaria → sim /v1/embeddings →
// sim _bulk, and OpenAlex → sim Gemini → SQLite, with nothing but --set.
TEST(PredefinedGraphs, VarsSwitchTheEmbedderAndTheSink) {
  sim::SimOptions o;
  o.latency_ms = 2;
  test::RunningSim server(o);
  test::TempDir dir;
  GraphSpec spec = load_graph(test::source_dir() + "/graphs/sefaria.json",
                              {{"base_url", server.url() + "/sefaria"},
                               {"embedder", "embed.openai"},
                               {"openai_url", server.url() + "/v1/embeddings"},
                               {"sink", "index.elasticsearch"},
                               {"es_url", server.url()}},
                              builtin_registry());
  spec.settings.dead_letter = dir / "dlq.jsonl";
  EXPECT_EQ(spec.nodes[4].type, "embed.openai");
  EXPECT_EQ(spec.nodes[5].type, "index.elasticsearch");
  RunReport rep = run_graph(spec, {});
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, rep.docs - 1) << "all but the complex book";
  auto st = server.stats();
  EXPECT_EQ(st["bulk"]["distinct_ids"].GetUint64(), rep.chunks);
  EXPECT_GE(st["embeddings"]["inputs"].GetUint64(), rep.chunks);
  EXPECT_EQ(st["bulk"]["ids_indexed_more_than_once"].GetUint64(), 0u);

  ::setenv("GEMINI_API_KEY", "test-key", 1);
  GraphSpec papers = load_graph(test::source_dir() + "/graphs/papers-backfill.json",
                                {{"base_url", server.url() + "/openalex"},
                                 {"embedder", "embed.gemini"},
                                 {"gemini_url", server.url() + "/v1beta"},
                                 {"db", dir / "p.db"},
                                 {"max_pages", "1"}},
                                builtin_registry());
  ::unsetenv("GEMINI_API_KEY");
  papers.settings.dead_letter = dir / "pdlq.jsonl";
  RunReport prep = run_graph(papers, {});
  EXPECT_EQ(prep.error, "");
  EXPECT_EQ(prep.dead_lettered, 0u) << test::read_file(dir / "pdlq.jsonl");
  EXPECT_GT(prep.docs_indexed, 0u);
  EXPECT_EQ(test::sqlite_count(dir / "p.db",
                               "SELECT count(*) FROM sluice_meta WHERE key = 'embedder' AND value "
                               "LIKE '%embed.gemini%'"),
            1);
}

}  // namespace
}  // namespace sluice
