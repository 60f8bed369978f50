// engine/graph/run_report: every listed field goes out to JSON, comes back, and folds over workers.
#include <gtest/gtest.h>

#include "engine/graph/outcome_log.hpp"
#include "engine/graph/progress.hpp"
#include "engine/graph/run_report.hpp"

namespace sluice {
namespace {

RunReport worker_report(uint64_t scale) {
  RunReport r;
  r.graph = "g";
  r.config_hash = "h";
  r.shard = "0/1";
  r.threads = 2;
  r.docs = 10 * scale;
  r.docs_skipped_done = scale;
  r.chunks = 30 * scale;
  r.indexed = 28 * scale;
  r.filtered = scale;
  r.dead_lettered = scale;
  r.lost = 0;
  r.docs_indexed = 8 * scale;
  r.docs_filtered = scale;
  r.docs_dead_lettered = scale;
  r.max_inflight_docs = 64;
  r.peak_inflight_docs = static_cast<int64_t>(5 * scale);
  r.elapsed_s = 2.0;
  r.peak_rss_bytes = 1000 * scale;
  r.peak_rss_total_bytes = 1000 * scale;
  r.tokens = 7 * scale;
  r.cost_usd = 0.5 * static_cast<double>(scale);
  r.cpu_s = 1.25 * static_cast<double>(scale);
  r.interrupted = scale == 2;
  r.http.requests = 10 * scale;
  r.http.attempts = 11 * scale;
  r.http.retries = scale;
  r.http.throttled = scale;
  r.http.failed = scale;
  r.http.loop_cpu_s = 0.25 * static_cast<double>(scale);
  r.http.latency.add(0.01 * static_cast<double>(scale));
  NodeReport io;
  io.id = "fetch";
  io.type = "fetch.http";
  io.role = NodeRole::transform;
  io.io = true;
  io.concurrency = 50;
  io.in = 10 * scale;
  io.out = 9 * scale;
  io.errors = scale;
  io.busy_s = 0.5;
  io.queue_peak = 3 * scale;
  io.in_flight_mean = 4.0 * static_cast<double>(scale);
  NodeReport cpu = io;
  cpu.id = "chunk";
  cpu.type = "chunk.recursive";
  cpu.role = NodeRole::chunker;
  cpu.io = false;
  cpu.concurrency = 0;
  r.nodes = {io, cpu};
  r.dead_letter_file = "out/g.dead-letter.jsonl";
  r.dead_letter_reasons = {{"fetch", "HTTP 404", 2 * scale}, {"chunk", "exception: x", scale}};
  r.warnings = {"node \"x\": w" + std::to_string(scale)};
  r.http.rpm_waited = scale;
  r.http.tpm_waited = scale;
  return r;
}

TEST(RunReport, EveryFieldSurvivesItsJson) {
  const RunReport r = worker_report(3);
  RunReport back;
  ASSERT_TRUE(RunReport::from_json(r.to_json(), back));
  EXPECT_EQ(back.to_json(), r.to_json()) << "a field written but not read (or the reverse)";
  EXPECT_EQ(back.nodes[1].role, NodeRole::chunker);
  EXPECT_FALSE(RunReport::from_json("[1,2]", back));
}

TEST(RunReport, WorkersFoldIntoTheJobsReport) {
  RunReport job;
  job.graph = "g";
  job.threads = 2;
  job.elapsed_s = 4.0;
  job.add_worker(worker_report(1));
  job.add_worker(worker_report(2));
  EXPECT_EQ(job.graph, "g");
  EXPECT_EQ(job.threads, 2) << "threads per worker stay the job's own";
  EXPECT_DOUBLE_EQ(job.elapsed_s, 4.0);
  EXPECT_EQ(job.docs, 30u);
  EXPECT_EQ(job.chunks, 90u);
  EXPECT_EQ(job.docs_indexed, 24u);
  EXPECT_EQ(job.peak_inflight_docs, 15);
  EXPECT_EQ(job.peak_rss_bytes, 2000u) << "the largest worker's";
  EXPECT_EQ(job.peak_rss_total_bytes, 3000u) << "their sum";
  EXPECT_DOUBLE_EQ(job.cpu_s, 3.75);
  EXPECT_TRUE(job.interrupted) << "one interrupted worker marks the job";
  EXPECT_EQ(job.http.requests, 30u);
  EXPECT_EQ(job.http.failed, 3u);
  EXPECT_DOUBLE_EQ(job.http.loop_cpu_s, 0.75);
  EXPECT_EQ(job.http.latency.count(), 2u);
  ASSERT_EQ(job.nodes.size(), 2u);
  EXPECT_EQ(job.nodes[0].in, 30u);
  EXPECT_EQ(job.nodes[0].concurrency, 100) << "an I/O node's cap is split among workers";
  EXPECT_EQ(job.nodes[1].concurrency, 0);
  EXPECT_EQ(job.nodes[0].queue_peak, 9u);
  EXPECT_EQ(job.nodes[0].id, "fetch");
  ASSERT_EQ(job.dead_letter_reasons.size(), 2u);
  EXPECT_EQ(job.dead_letter_reasons[0].reason, "HTTP 404");
  EXPECT_EQ(job.dead_letter_reasons[0].count, 6u) << "summed by node and reason";
  EXPECT_EQ(job.warnings.size(), 2u);
  EXPECT_EQ(job.dead_letter_file, "out/g.dead-letter.jsonl");
  EXPECT_EQ(job.http.rpm_waited, 3u);
}

// What bound a run, from its report alone.
TEST(RunReport, NamesWhatBoundTheRun) {
  RunReport r;
  r.threads = 4;
  r.docs = 1000;
  r.elapsed_s = 10;
  r.cpu_s = 1;
  r.max_inflight_docs = 256;
  EXPECT_TRUE(r.binding_limits().empty()) << "nothing stood out";

  NodeReport embed;
  embed.id = "embed";
  embed.type = "embed.openai";
  embed.io = true;
  embed.concurrency = 4;
  embed.in_flight_mean = 3.96;
  embed.queue_mean = 357;
  r.nodes = {embed};
  auto b = r.binding_limits();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0],
            "node \"embed\" (embed.openai): 99% of its 4 requests in flight used, 357 records "
            "queued behind it on average; raise its \"concurrency\", or remove it to let the "
            "node adapt");
  r.nodes[0].queue_mean = 0.2;
  EXPECT_TRUE(r.binding_limits().empty()) << "at its cap but nothing waiting: not a limit";

  r.nodes[0].adaptive = true;
  r.nodes[0].concurrency = 64;
  r.nodes[0].limit = 12;
  r.nodes[0].limit_peak = 16;
  r.nodes[0].in_flight_mean = 11.5;
  r.nodes[0].queue_mean = 40;
  b = r.binding_limits();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_NE(b[0].find("the upstream's capacity"), std::string::npos) << b[0];

  r.nodes.clear();
  r.http.requests = r.http.attempts = 1000;
  r.http.rpm_waited = 800;
  b = r.binding_limits();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].rfind("the rpm limit: 80% of requests waited for it (6000 requests/min done)", 0),
            0u)
      << b[0];

  r.http.rpm_waited = 0;
  r.http.attempts = 1100;
  r.http.throttled = 100;  // 9% answered 429, with no rpm set
  b = r.binding_limits();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0],
            "the upstream's rate limit: 9% of requests were answered 429; set \"rpm\" to about "
            "6000 (what it accepted in this run)");

  r.http = {};
  r.cpu_s = 38;  // 3.8 of 4 threads' cores
  NodeReport chunk;
  chunk.id = "chunk";
  chunk.busy_s = 30;
  NodeReport extract;
  extract.id = "extract";
  extract.busy_s = 8;
  r.nodes = {extract, chunk};
  b = r.binding_limits();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].rfind("CPU: 3.8 cores busy of 4 threads (busiest node: \"chunk\")", 0), 0u)
      << b[0];

  r.cpu_s = 1;
  r.nodes.clear();
  r.peak_inflight_docs = 256;
  b = r.binding_limits();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].rfind("settings.max_inflight_docs: 256 documents in flight", 0), 0u) << b[0];
}

TEST(RunReport, TooManyDeadLettersFailTheRun) {
  RunReport r;
  r.docs = 100;
  r.docs_dead_lettered = 10;
  r.judge_dead_letters(0.1);
  EXPECT_EQ(r.error, "") << "at the bound is not past it";
  r.docs_dead_lettered = 11;
  r.dead_letter_reasons = {{"fetch", "HTTP 404", 11}};
  r.judge_dead_letters(0.1);
  EXPECT_EQ(r.error, "11 of 100 documents (11.0%) were dead-lettered, more than "
                     "settings.max_dead_letter_ratio 0.1; the most frequent reason: HTTP 404 (node "
                     "\"fetch\")");
  EXPECT_EQ(r.exit_code(), 1);
  RunReport all;
  all.docs = all.docs_dead_lettered = 3;
  all.judge_dead_letters(1.0);
  EXPECT_EQ(all.error, "every document (3) was dead-lettered");
  RunReport stopped = all;
  stopped.error.clear();
  stopped.interrupted = true;
  stopped.judge_dead_letters(0);
  EXPECT_EQ(stopped.error, "") << "an interrupted run is judged by its resume";
}

TEST(OutcomeLog, ReasonsGroupByTheirFirstPart) {
  EXPECT_EQ(OutcomeLog::reason_key("HTTP 404: no such doc"), "HTTP 404");
  EXPECT_EQ(OutcomeLog::reason_key("HTTP 503 after 5 attempts: busy"), "HTTP 503 after 5 attempts");
  EXPECT_EQ(OutcomeLog::reason_key("exception: stoi: bad"), "exception: stoi");
  EXPECT_EQ(OutcomeLog::reason_key("malformed JSON"), "malformed JSON");
  EXPECT_EQ(OutcomeLog::reason_key(""), "(no reason given)");
  EXPECT_EQ(OutcomeLog::reason_key(std::string(300, 'x')).size(), 123u);
}

TEST(Progress, OneLineForARunAndForALauncher) {
  ProgressFigures p;
  p.done = 50;
  p.total = 200;
  p.in_flight = 8;
  p.chunks = 120;
  p.elapsed_s = 10.0;
  EXPECT_EQ(progress_text(p), "docs 50/200  in flight 8  chunks 120  5 docs/s  10s  ETA 30s");
  p.total.reset();
  p.workers = 4;
  EXPECT_EQ(progress_text(p), "docs 50  in flight 8  chunks 120  5 docs/s  4 workers  10s");
  // Items that expand into documents: both counted, the rate in documents, the ETA in items.
  p.total = 200;
  p.workers = 0;
  p.unit = "books";
  p.expanded_unit = "sections";
  p.expanded = 400;
  EXPECT_EQ(progress_text(p),
            "books 50/200  sections 400  in flight 8  chunks 120  40 sections/s  10s  ETA 30s");
  EXPECT_EQ(human_duration(185), "3m05s");
  EXPECT_EQ(human_duration(7800), "2h10m");
}

}  // namespace
}  // namespace sluice
