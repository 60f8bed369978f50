// embed.openai, embed.gemini and index.elasticsearch against the sim: batching, keys, partial
// bulk failures, every chunk embedded and indexed once.
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

TEST(EmbedAndBulk, EveryChunkEmbeddedAndIndexedOnceThroughBulkFailures) {
  sim::SimOptions o;
  o.bulk_fail_rate = 0.1;  // items answered 429 inside a 200: retried alone
  o.error_rate = 0.02;     // whole requests answered 500: retried by the client
  o.latency_ms = 3;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = test::run_json(R"({"settings": {"max_inflight_docs": 64, "dead_letter": ")" +
                                 (dir / "dlq.jsonl") + R"("},
  "nodes": [{"id": "docs", "type": "source.range", "params": {"count": 120, "size": 1500}},
    {"id": "chunk", "type": "chunk.recursive", "params": {"size": 300}},
    {"id": "embed", "type": "embed.openai", "params": {"url": ")" +
                                 server.url() + R"(/v1/embeddings", "model": "m",
      "batch": 16, "price_per_mtok": 0.02, "api_key": "${env:SLUICE_TEST_NO_SUCH_KEY}"}, "concurrency": 4},
    {"id": "es", "type": "index.elasticsearch", "params": {"url": ")" +
                                 server.url() + R"(", "index": "docs", "batch": 50}}],
  "edges": [["docs", "chunk"], ["chunk", "embed"], ["embed", "es"]]})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 0u) << test::read_file(dir / "dlq.jsonl");
  EXPECT_EQ(rep.docs_indexed, 120u);
  auto st = server.stats();
  EXPECT_EQ(st["bulk"]["distinct_ids"].GetUint64(), rep.chunks)
      << "every chunk id reached the index";
  EXPECT_EQ(rep.indexed, rep.chunks);
  EXPECT_EQ(st["embeddings"]["inputs"].GetUint64() >= rep.chunks, true);
  // Tokens come from the server's usage; cost from price_per_mtok.
  EXPECT_GT(rep.tokens, 0u);
  EXPECT_LE(rep.tokens, st["embeddings"]["tokens"].GetUint64());
  EXPECT_NEAR(rep.cost_usd, rep.tokens / 1e6 * 0.02, 1e-9);
  EXPECT_NE(rep.to_json().find("\"tokens\":"), std::string::npos);
}

// A re-run that makes fewer chunks per document leaves only its own chunks in the index: the
// earlier run's others go by _delete_by_query once the run settled; replace_docs: false keeps
// them (plain upserts).
TEST(EmbedAndBulk, ARerunWithFewerChunksLeavesNoStaleChunkInTheIndex) {
  test::RunningSim server(sim::SimOptions{});
  auto graph = [&](int chunk_size, const std::string& extra) {
    return R"({"nodes": [{"id": "docs", "type": "source.range", "params": {"count": 40, "size": 1200}},
    {"id": "chunk", "type": "chunk.recursive", "params": {"size": )" +
           std::to_string(chunk_size) + R"(}},
    {"id": "es", "type": "index.elasticsearch", "params": {"url": ")" +
           server.url() + R"(", "index": "docs", "batch": 64)" + extra + R"(}}],
  "edges": [["docs", "chunk"], ["chunk", "es"]]})";
  };
  auto live = [&] { return server.stats()["bulk"]["live"].GetUint64(); };
  RunReport many = test::run_json(graph(100, ""));
  ASSERT_EQ(many.error, "");
  EXPECT_EQ(live(), many.chunks);
  RunReport fewer = test::run_json(graph(400, ""));
  ASSERT_EQ(fewer.error, "");
  ASSERT_LT(fewer.chunks, many.chunks);
  EXPECT_EQ(live(), fewer.chunks) << "only the chunks of the last run are left";
  RunReport again = test::run_json(graph(100, R"(, "replace_docs": false)"));
  ASSERT_EQ(again.error, "");
  EXPECT_EQ(live(), many.chunks) << "upserts: the ids of both runs (the larger run covers them)";
  RunReport fewer_kept = test::run_json(graph(400, R"(, "replace_docs": false)"));
  ASSERT_EQ(fewer_kept.error, "");
  EXPECT_EQ(live(), many.chunks) << "without replace_docs, the longer run's extra chunks stay";
}

TEST(EmbedAndBulk, PartialBatchesLeaveAtTheEndOfInputNotAfterLinger) {
  // 10 documents, batches of 64 that linger 20 s: the last partial batch of each node must go out
  // as soon as nothing upstream can add to it. Waiting out linger_ms would take 40 s.
  test::RunningSim server;
  RunReport rep = test::run_json(
      R"({"nodes": [{"id": "docs", "type": "source.range", "params": {"count": 10, "size": 200}},
    {"id": "embed", "type": "embed.openai", "params": {"url": ")" +
      server.url() + R"(/v1/embeddings", "model": "m",
      "batch": 64, "linger_ms": 20000}},
    {"id": "es", "type": "index.elasticsearch", "params": {"url": ")" +
      server.url() + R"(", "index": "docs",
      "batch": 64, "linger_ms": 20000}}],
  "edges": [["docs", "embed"], ["embed", "es"]]})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.docs_indexed, 10u);
  EXPECT_LT(rep.elapsed_s, 10.0);
  EXPECT_EQ(rep.http.requests, 2u)
      << "one embedding request and one _bulk, each a whole partial batch";
}

TEST(EmbedAndBulk, OpenAIVectorsAreRecordedWithTheirEmbedder) {
  test::RunningSim server;
  test::TempDir dir;
  RunReport rep = test::run_json(
      R"({"nodes": [{"id": "docs", "type": "source.range", "params": {"count": 10, "size": 200}},
    {"id": "embed", "type": "embed.openai", "params": {"url": ")" +
      server.url() + R"(/v1/embeddings", "model": "m", "dimensions": 32}},
    {"id": "db", "type": "index.sqlite", "params": {"path": ")" +
      (dir / "e.db") + R"("}}],
  "edges": [["docs", "embed"], ["embed", "db"]]})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.docs_indexed, 10u);
  EXPECT_EQ(
      test::sqlite_count(dir / "e.db", "SELECT count(*) FROM chunks WHERE length(vector) = 32 * 2"),
      10);
  EXPECT_EQ(test::sqlite_count(
                dir / "e.db", "SELECT count(*) FROM sluice_meta WHERE key = 'embedder' AND value = "
                              "'{\"type\":\"embed.openai\",\"model\":\"m\",\"dim\":32}'"),
            1);
  try {
    search_index(dir / "e.db", "x", 3, SearchMode::vector);
    FAIL() << "an API embedder cannot be run locally for a query";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--mode bm25"), std::string::npos);
  }
}

TEST(EmbedAndBulk, GeminiSendsAtMost100PerCallWithTheKeyInAHeader) {
  test::RunningSim server;
  test::TempDir dir;
  ::setenv("SLUICE_TEST_GEMINI_KEY", "secret-test-key", 1);
  RunReport rep = test::run_json(
      R"({"nodes": [{"id": "docs", "type": "source.range", "params": {"count": 250, "size": 200}},
    {"id": "embed", "type": "embed.gemini", "params": {"base_url": ")" +
      server.url() + R"(/v1beta/",
      "model": "gemini-embedding-001", "dimensions": 48, "api_key": "${env:SLUICE_TEST_GEMINI_KEY}", "price_per_mtok": 0.15}},
    {"id": "db", "type": "index.sqlite", "params": {"path": ")" +
      (dir / "g.db") + R"("}}],
  "edges": [["docs", "embed"], ["embed", "db"]]})");
  ::unsetenv("SLUICE_TEST_GEMINI_KEY");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.dead_lettered, 0u) << "the sim refuses calls without x-goog-api-key (403)";
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 250u);
  EXPECT_EQ(
      test::sqlite_count(dir / "g.db", "SELECT count(*) FROM chunks WHERE length(vector) = 48 * 2"),
      250);
  EXPECT_EQ(test::sqlite_count(
                dir / "g.db",
                "SELECT count(*) FROM sluice_meta WHERE key = 'embedder' AND value = "
                "'{\"type\":\"embed.gemini\",\"model\":\"gemini-embedding-001\",\"dim\":48}'"),
            1);
  auto st = server.stats();
  const auto& ep = st["by_endpoint"]["/v1beta/models/{model}:batchEmbedContents"];
  EXPECT_GE(ep["requests"].GetUint64(), 3u) << "250 inputs need at least 3 calls of at most 100";
  EXPECT_EQ(st["embeddings"]["inputs"].GetUint64(), 250u);
  // Gemini does not count tokens: the report's are the 4-characters-a-token estimate, priced.
  EXPECT_EQ(rep.tokens,
            static_cast<uint64_t>(test::sqlite_count(
                dir / "g.db", "SELECT sum((length(CAST(text AS BLOB)) + 3) / 4) FROM chunks")));
  EXPECT_NEAR(rep.cost_usd, rep.tokens / 1e6 * 0.15, 1e-9);
}

TEST(EmbedAndBulk, GeminiWithoutAKeyIsDeadLetteredWithTheApisMessage) {
  test::RunningSim server;
  test::TempDir dir;
  RunReport rep = test::run_json(R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") + R"("},
    "nodes": [{"id": "docs", "type": "source.range", "params": {"count": 5, "size": 100}},
    {"id": "embed", "type": "embed.gemini", "params": {"base_url": ")" +
                                 server.url() + R"(/v1beta", "model": "m",
      "api_key": "${env:SLUICE_TEST_NO_SUCH_KEY}"}},
    {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
  "edges": [["docs", "embed"], ["embed", "out"]]})");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 5u);
  auto dlq = test::read_lines(dir / "dlq.jsonl");
  ASSERT_EQ(dlq.size(), 5u);
  EXPECT_NE(dlq[0].find("\"status\":403"), std::string::npos) << dlq[0];
  EXPECT_NE(dlq[0].find("unregistered callers"), std::string::npos) << dlq[0];
}

TEST(EmbedAndBulk, GeminiParamsAreCheckedBeforeAnyRequest) {
  auto error_of = [](const std::string& params) {
    return test::config_errors(
        R"({"nodes": [{"id": "docs", "type": "source.range", "params": {"count": 1}},
      {"id": "embed", "type": "embed.gemini", "params": {)" +
        params + R"(}},
      {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
      "edges": [["docs", "embed"], ["embed", "out"]]})");
  };
  EXPECT_EQ(error_of(R"("model": "m", "batch": 101)"),
            "test.json:2:81: nodes[1].params.batch: batch must be at most 100: batchEmbedContents "
            "takes at most 100 "
            "requests a call\n");
  EXPECT_NE(error_of(R"("model": "models/m")").find("no \"models/\" prefix"), std::string::npos);
  EXPECT_NE(
      error_of(R"("model": "m", "base_url": "ftp://x")").find("base_url must be an http(s) URL"),
      std::string::npos);
}

}  // namespace
}  // namespace sluice
