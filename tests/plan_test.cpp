// `sluice plan`: which limit binds, shared by workers and shards, and every node's own cost.
#include <gtest/gtest.h>

#include <string>

#include "app/plan.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using test::run_sluice;

GraphSpec plan_graph(const std::string& fetch_extra, const std::string& settings = "{}") {
  return test::spec_from(R"({"settings": )" + settings + R"(,
    "nodes": [{"id": "ids", "type": "source.lines", "params": {"path": "ids.txt"}},
              {"id": "fetch", "type": "fetch.http", "params": {"url": "http://x/{id}")" +
                         fetch_extra + R"(},
              {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
    "edges": [["ids", "fetch"], ["fetch", "out"]]})");
}

TEST(Plan, TheRateLimitBindsAndIsSharedByEveryWorker) {
  GraphSpec g = plan_graph(R"(, "rpm": 600}, "concurrency": 10)");
  PlanInput in;
  in.docs = 1000;
  in.latency_s = 0.1;
  in.jobs = {1, 4};
  in.processes = {1, 2};
  Plan p = make_plan(g, in);
  ASSERT_EQ(p.rows.size(), 4u);
  for (const auto& r : p.rows) {
    EXPECT_DOUBLE_EQ(r.docs_per_s, 10.0) << "600 rpm = 10 requests/s, whatever the worker count";
    EXPECT_DOUBLE_EQ(r.wall_s, 100.0);
    EXPECT_EQ(r.binds, "fetch rpm");
  }
  ASSERT_EQ(p.stages.size(), 1u);
  EXPECT_DOUBLE_EQ(p.stages[0].requests, 1000.0);
}

TEST(Plan, PerShardLimitsMultiplyWithJobs) {
  GraphSpec g = plan_graph(R"(, "rpm": 600}, "concurrency": 10)", R"({"limits_scope": "shard"})");
  PlanInput in;
  in.docs = 1000;
  in.latency_s = 0.1;
  in.jobs = {4};
  Plan p = make_plan(g, in);
  EXPECT_DOUBLE_EQ(p.rows[0].docs_per_s, 40.0);
  EXPECT_EQ(p.rows[0].binds, "fetch rpm");
}

TEST(Plan, ConcurrencyBindsAndRoundsUpToOnePerWorker) {
  GraphSpec g = plan_graph("}, \"concurrency\": 10");
  PlanInput in;
  in.docs = 2000;
  in.latency_s = 0.1;
  in.jobs = {1, 20};
  Plan p = make_plan(g, in);
  EXPECT_DOUBLE_EQ(p.rows[0].docs_per_s, 100.0) << "10 in flight / 0.1 s";
  EXPECT_EQ(p.rows[0].binds, "fetch concurrency");
  EXPECT_DOUBLE_EQ(p.rows[1].docs_per_s, 200.0) << "20 workers get at least one request each";
  EXPECT_DOUBLE_EQ(p.rows[1].wall_s, 10.0);
}

TEST(Plan, EmbeddingTokensCostAndTpm) {
  GraphSpec g = test::spec_from(R"({
    "nodes": [{"id": "ids", "type": "source.lines", "params": {"path": "ids.txt"}},
              {"id": "chunk", "type": "chunk.recursive", "params": {"size": 1000}},
              {"id": "embed", "type": "embed.openai", "params": {"url": "http://x/v1/embeddings", "model": "m",
                 "tpm": 1000000, "price_per_mtok": 0.02}},
              {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
    "edges": [["ids", "chunk"], ["chunk", "embed"], ["embed", "out"]]})");
  PlanInput in;
  in.docs = 34000;
  in.doc_chars = 2000;
  in.latency_s = 0.5;
  Plan p = make_plan(g, in);
  EXPECT_DOUBLE_EQ(p.chunks_per_doc, 2.0);
  EXPECT_DOUBLE_EQ(p.tokens, 34000.0 * 2 * 250);
  EXPECT_NEAR(p.cost_usd, 0.34, 1e-9);
  ASSERT_EQ(p.stages.size(), 1u);
  EXPECT_DOUBLE_EQ(p.stages[0].requests, 34000.0 * 2 / 32)
      << "batches of 32: 8000 tokens / 250 per chunk";
  EXPECT_NEAR(p.rows[0].docs_per_s, 1e6 / 60 / 500, 1e-9);
  EXPECT_EQ(p.rows[0].binds, "embed tpm");
}

TEST(Plan, EveryHttpEmbedderIsAStageOfThePlan) {
  // Each node type describes its own cost (NodeTypeInfo::cost): embed.gemini was once missing
  // from a switch on type names in the planner, and its graph planned as if it cost nothing.
  GraphSpec g = test::spec_from(R"({
    "nodes": [{"id": "ids", "type": "source.lines", "params": {"path": "ids.txt"}},
              {"id": "chunk", "type": "chunk.sentence", "params": {"size": 1000}},
              {"id": "embed", "type": "embed.gemini", "params": {"model": "m", "tpm": 1000000,
                 "price_per_mtok": 0.15}},
              {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
    "edges": [["ids", "chunk"], ["chunk", "embed"], ["embed", "out"]]})");
  PlanInput in;
  in.docs = 1000;
  in.doc_chars = 2000;
  Plan p = make_plan(g, in);
  ASSERT_EQ(p.stages.size(), 1u);
  EXPECT_EQ(p.stages[0].node, "embed");
  EXPECT_DOUBLE_EQ(p.stages[0].tokens, 1000.0 * 2 * 250);
  EXPECT_NEAR(p.cost_usd, 0.075, 1e-9);
  EXPECT_EQ(p.rows[0].binds, "embed tpm");
}

TEST(Plan, CliPrintsTheTable) {
  auto r =
      run_sluice("plan graphs/papers-backfill.json --docs 34000 --jobs 1,20 --processes 1,100");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("plan: papers-backfill, 34000 documents"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("limit that binds"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    20    100     2000"), std::string::npos) << r.out;
  auto bad = run_sluice("plan graphs/papers-backfill.json");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--docs is required"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace sluice
