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

// A page-numbered listing splits among the processes (each lists its share of the pages); a
// cursor listing is paged whole by each, so more processes only divide its rpm.
TEST(Plan, APagedListingSplitsAmongTheProcessesACursorListingDoesNot) {
  auto listing = [](const std::string& paging) {
    return test::spec_from(R"({"nodes": [
      {"id": "list", "type": "source.http_list", "params": {"url": "http://x/list",
        "items": "/items", "per_page": 100, "rpm": 600, "next": "/next", "paging": ")" +
                           paging + R"("}},
      {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
      "edges": [["list", "out"]]})");
  };
  PlanInput in;
  in.docs = 100000;
  in.latency_s = 0.2;
  in.jobs = {1, 4};
  in.processes = {1, 4};
  Plan paged = make_plan(listing("page"), in);
  Plan cursor = make_plan(listing("cursor"), in);
  ASSERT_EQ(paged.rows.size(), 4u);
  // One process: 5 pages/s of 100 (latency); 4: 2.5 pages/s each (the rpm's share) x 4 = 1000.
  EXPECT_DOUBLE_EQ(paged.rows[0].docs_per_s, 500.0);
  EXPECT_EQ(paged.rows[0].binds, "list listing latency (each process pages its share)");
  EXPECT_DOUBLE_EQ(paged.rows[1].docs_per_s, 1000.0);
  EXPECT_EQ(paged.rows[1].binds, "list rpm (the pages split among the processes)");
  EXPECT_DOUBLE_EQ(paged.rows[3].docs_per_s, 1000.0) << "16 processes: still the rpm's 10 pages/s";
  EXPECT_DOUBLE_EQ(cursor.rows[0].docs_per_s, 500.0);
  EXPECT_DOUBLE_EQ(cursor.rows[1].docs_per_s, 250.0) << "each of 4 pages the whole listing";
  EXPECT_EQ(cursor.rows[1].binds, "list rpm (every process pages the whole listing)");
  for (const auto& r : paged.rows)
    EXPECT_GE(r.docs_per_s, paged.rows[0].docs_per_s) << "never slower than one process";
  EXPECT_NE(plan_table(listing("page"), in, paged).find("split among the processes"),
            std::string::npos);
  // Split by two partitions, at most two lanes list, and they hold the rpm between them (the
  // engine gives an idle process's share to the listers): 5 pages/s each, the latency's. One
  // process lists both at once (`concurrency`, 4 partitions by default), or one at a time (1).
  auto parted = [](const std::string& partitions, const std::string& settings = "{}",
                   int concurrency = 4) {
    return test::spec_from(R"({"settings": )" + settings +
                           R"(, "nodes": [{"id": "list", "type": "source.http_list",
      "concurrency": )" + std::to_string(concurrency) +
                           R"(, "params": {"url": "http://x/list", "items": "/items",
        "per_page": 100, "rpm": 600, "next": "/next", "paging": "cursor", "partitions": )" +
                           partitions + R"(}},
      {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
      "edges": [["list", "out"]]})");
  };
  const std::string two = R"([{"f": "a"}, {"f": "b"}])";
  Plan parts = make_plan(parted(two), in);
  EXPECT_DOUBLE_EQ(parts.rows[0].docs_per_s, 1000.0);
  EXPECT_DOUBLE_EQ(make_plan(parted(two, "{}", 1), in).rows[0].docs_per_s, 500.0);
  EXPECT_DOUBLE_EQ(parts.rows[1].docs_per_s, 1000.0);
  EXPECT_DOUBLE_EQ(parts.rows[3].docs_per_s, 1000.0) << "16 processes, 2 listing: the whole rpm";
  // Under limits_scope shard, 4 jobs of which 2 have a partition: two shards' quotas.
  Plan per_shard = make_plan(parted(two, R"({"limits_scope": "shard"})", 1), in);
  EXPECT_DOUBLE_EQ(per_shard.rows[2].docs_per_s, 1000.0) << "4 jobs x 1: two listers, latency";

  // Date windows: a year by month is 12 partitions, and each ends on a short page of its own.
  PlanInput one;
  one.docs = 12 * 150;
  one.latency_s = 0.2;
  one.jobs = {1, 20};
  one.processes = {1, 4};
  const std::string year = R"({"from": "2024-01-01", "to": "2024-12-31", "every": "month",
      "query": {"filter": "from_date:{from},to_date:{to}"}})";
  Plan months = make_plan(parted(year), one);
  ASSERT_EQ(months.stages.size(), 1u);
  EXPECT_DOUBLE_EQ(months.stages[0].requests, 24.0) << "150 a month: 2 pages each";
  EXPECT_DOUBLE_EQ(months.rows[0].docs_per_s, 10 * 75.0) << "one process, 4 at once: the rpm";
  Plan serial = make_plan(parted(year, "{}", 1), one);
  EXPECT_DOUBLE_EQ(serial.rows[0].docs_per_s, 5 * 75.0) << "one at a time: 5 pages/s of 75";
  for (const auto& r : serial.rows)
    EXPECT_GE(r.docs_per_s, serial.rows[0].docs_per_s) << r.jobs << "x" << r.processes;
  EXPECT_DOUBLE_EQ(serial.rows[3].docs_per_s, 10 * 75.0) << "80 processes, 12 list: the rpm";
  EXPECT_EQ(serial.rows[3].binds, "list rpm (the partitions split among the processes)");
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
