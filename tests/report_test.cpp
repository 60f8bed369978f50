// engine/graph/run_report: every listed field goes out to JSON, comes back, and folds over workers.
#include <gtest/gtest.h>

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
}

TEST(Progress, OneLineForARunAndForALauncher) {
  ProgressFigures p{50, 200, 8, 120, 10.0, 0};
  EXPECT_EQ(progress_text(p), "docs 50/200  in flight 8  chunks 120  5 docs/s  10s  ETA 30s");
  p.total.reset();
  p.workers = 4;
  EXPECT_EQ(progress_text(p), "docs 50  in flight 8  chunks 120  5 docs/s  4 workers  10s");
  EXPECT_EQ(human_duration(185), "3m05s");
  EXPECT_EQ(human_duration(7800), "2h10m");
}

}  // namespace
}  // namespace sluice
