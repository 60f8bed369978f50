// fetch.http against an in-process `sluice sim` on loopback: faults, dead letters, the
// concurrency cap (fixed and adaptive), connection pools and caps, rate limits, interrupts, and
// no TBB worker blocking on I/O.
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

using test::fetch_graph;
using test::fetch_ids;
using test::ids_file;

// Both ways the loop can wait on its sockets (settings.http_loop): epoll, the default, and poll.
class BothLoops : public ::testing::TestWithParam<const char*> {};

INSTANTIATE_TEST_SUITE_P(FetchHttp, BothLoops, ::testing::Values("epoll", "poll"));

TEST_P(BothLoops, EveryDocIndexedExactlyOnceThroughFaults) {
  sim::SimOptions o;
  o.docs = 300;
  o.latency_ms = 5;
  o.error_rate = 0.05;
  o.reset_rate = 0.02;
  o.timeout_rate = 0.01;
  test::RunningSim server(o);
  test::TempDir dir;
  std::string db = dir / "f.db";
  RunReport rep = test::run_json(fetch_graph(
      ids_file(dir, 300), server.url() + "/docs/{id}", db,
      R"(, "timeout_ms": 500, "retry": {"max_attempts": 12, "base_delay_s": 0.01, "max_delay_s": 0.2})",
      "64",
      R"(, "dead_letter": ")" + (dir / "dlq.jsonl") + R"(", "http_loop": ")" + GetParam() + "\""));
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 0u) << test::read_file(dir / "dlq.jsonl");
  EXPECT_EQ(rep.docs_indexed, 300u);
  EXPECT_EQ(test::sqlite_count(db, "SELECT count(*) FROM chunks"), 300);
  EXPECT_EQ(test::sqlite_count(db, "SELECT count(DISTINCT doc_id) FROM chunks"), 300);
  auto st = server.stats();
  EXPECT_GT(st["requests"].GetInt64(), 300) << "faults must have caused retries";
  EXPECT_GT(st["resets"].GetInt64() + st["timeouts"].GetInt64(), 0);
}
TEST(Faults, EveryChunkReachesTheBulkIndexExactlyOnceThrough500sResetsTimeoutsAnd429s) {
  sim::SimOptions o;
  o.docs = 200;
  o.latency_ms = 3;
  o.error_rate = 0.05;
  o.reset_rate = 0.02;
  o.timeout_rate = 0.01;
  o.rpm = 6000;  // 100 per 1-second wall-clock window, for all endpoints together
  o.bulk_fail_rate = 0.05;
  test::RunningSim server(o);
  test::TempDir dir;
  // The 200 first fetches take well under a second. Started at the top of a wall-clock second they
  // land in one window and meet 429s whatever the machine; started near its end, they could split
  // over two windows each under the limit.
  test::align_to_second();
  const std::string retry = R"("timeout_ms": 400, "max_attempts": 12)";
  RunReport rep = test::run_json(R"({"settings": {"max_inflight_docs": 256, "dead_letter": ")" +
                                 (dir / "dlq.jsonl") + R"("},
  "nodes": [{"id": "ids", "type": "source.lines", "params": {"path": ")" +
                                 ids_file(dir, 200) + R"("}},
    {"id": "fetch", "type": "fetch.http", "concurrency": 32, "params": {"url": ")" +
                                 server.url() + R"(/docs/{id}",
      "timeout_ms": 400, "retry": {"max_attempts": 12, "base_delay_s": 0.01, "max_delay_s": 0.2}}},
    {"id": "extract", "type": "extract.json", "params": {"text": "/text"}},
    {"id": "chunk", "type": "chunk.recursive", "params": {"size": 300}},
    {"id": "embed", "type": "embed.openai", "concurrency": 4, "params": {"url": ")" +
                                 server.url() + R"(/v1/embeddings",
      "model": "m", "batch": 32, )" +
                                 retry + R"(}},
    {"id": "es", "type": "index.elasticsearch", "params": {"url": ")" +
                                 server.url() + R"(", "index": "docs",
      "batch": 100, "timeout_ms": 400, "max_attempts": 12}}],
  "edges": [["ids", "fetch"], ["fetch", "extract"], ["extract", "chunk"], ["chunk", "embed"], ["embed", "es"]]})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 0u) << test::read_file(dir / "dlq.jsonl");
  EXPECT_EQ(rep.docs_indexed, 200u);
  auto st = server.stats();
  EXPECT_EQ(st["bulk"]["distinct_ids"].GetUint64(), rep.chunks) << "every chunk reached the index";
  EXPECT_EQ(st["bulk"]["ids_indexed_more_than_once"].GetUint64(), 0u) << "and none twice";
  EXPECT_GT(rep.http.throttled, 0u) << "the rate limit must have answered 429s";
  EXPECT_GT(st["resets"].GetUint64() + st["timeouts"].GetUint64(), 0u);
  const auto& statuses = st["by_endpoint"]["/docs/{id}"]["statuses"];
  EXPECT_TRUE(statuses.HasMember("500") && statuses.HasMember("429"))
      << "faults and throttling both hit the fetches";
}

TEST(FetchHttp, ClientErrorsGoToTheDeadLetterFileWithTheServersMessage) {
  sim::SimOptions o;
  o.docs = 5;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = test::run_json(fetch_graph(ids_file(dir, 5, {"nosuch"}),
                                             server.url() + "/docs/{id}", dir / "f.db", "", "4",
                                             R"(, "dead_letter": ")" + (dir / "dlq.jsonl") + "\""));
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 5u);
  EXPECT_EQ(rep.dead_lettered, 1u);
  auto lines = test::read_lines(dir / "dlq.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("\"id\":\"nosuch\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"status\":404"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("no such doc"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"attempts\":1"), std::string::npos)
      << "a 404 is not retried: " << lines[0];
}

TEST(FetchHttp, DeadLettersAreTalliedByReasonAndAPointerThatMatchesNothingIsNamed) {
  sim::SimOptions o;
  o.docs = 5;
  test::RunningSim server(o);
  test::TempDir dir;
  // Two text pointers, one misspelt: the text is still found (no dead letter for it), so only
  // the warning says that "/body" never matched.
  RunReport rep = test::run_json(R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") +
                                 R"("}, "nodes": [
    {"id": "ids", "type": "source.lines", "params": {"path": ")" +
                                 ids_file(dir, 5, {"nosuch1", "nosuch2"}) + R"("}},
    {"id": "fetch", "type": "fetch.http", "params": {"url": ")" +
                                 server.url() +
                                 R"(/docs/{id}"}},
    {"id": "extract", "type": "extract.json", "params": {"text": ["/text", "/body"]}},
    {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
                                 (dir / "o.jsonl") + R"("}}],
  "edges": [["ids", "fetch"], ["fetch", "extract"], ["extract", "out"]]})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.docs_indexed, 5u);
  EXPECT_EQ(rep.dead_lettered, 2u);
  ASSERT_EQ(rep.dead_letter_reasons.size(), 1u);
  EXPECT_EQ(rep.dead_letter_reasons[0].node, "fetch");
  EXPECT_EQ(rep.dead_letter_reasons[0].reason, "HTTP 404") << "the body is detail, not the reason";
  EXPECT_EQ(rep.dead_letter_reasons[0].count, 2u);
  EXPECT_NE(rep.table().find("           2  fetch: HTTP 404\n"), std::string::npos) << rep.table();
  ASSERT_EQ(rep.warnings.size(), 1u);
  EXPECT_EQ(rep.warnings[0].rfind("node \"extract\": text pointer \"/body\" matched nothing in "
                                  "the first 5 records (keys at the top level: ",
                                  0),
            0u)
      << rep.warnings[0];
  EXPECT_NE(rep.warnings[0].find("\"text\""), std::string::npos) << rep.warnings[0];
  RunReport back;
  ASSERT_TRUE(RunReport::from_json(rep.to_json(), back));
  EXPECT_EQ(back.warnings, rep.warnings);
  ASSERT_EQ(back.dead_letter_reasons.size(), 1u);
  EXPECT_EQ(back.dead_letter_reasons[0].count, 2u);
}

// A fetch held at 2 in flight with every other document queued behind it: the summary says that
// this cap bound the run, and what to do. Given no concurrency, the node adapts and reports it.
TEST(FetchHttp, ARunNamesTheCapThatBoundItAndAdaptiveNodesReportTheirLimits) {
  sim::SimOptions o;
  o.docs = 150;
  o.latency_ms = 30;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport fixed = fetch_ids(server, dir, 150, "2");
  ASSERT_EQ(fixed.error, "");
  bool named = false;
  for (const auto& b : fixed.binding_limits())
    named = named || (b.rfind("node \"fetch\" (fetch.http): ", 0) == 0 &&
                      b.find("raise its \"concurrency\"") != std::string::npos);
  EXPECT_TRUE(named) << fixed.table();
  EXPECT_NE(fixed.table().find("\nbound by node \"fetch\""), std::string::npos) << fixed.table();

  test::TempDir dir2;
  RunReport adaptive = fetch_ids(server, dir2, 150, "\"default\"");
  ASSERT_EQ(adaptive.error, "");
  const NodeReport* f = nullptr;
  for (const auto& n : adaptive.nodes)
    if (n.id == "fetch") f = &n;
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->adaptive);
  EXPECT_EQ(f->concurrency, 32);
  EXPECT_GE(f->limit_peak, AimdLimit::kInitial);
  EXPECT_LE(f->limit_peak, 32);
  EXPECT_NE(adaptive.table().find("adaptive concurrency, requests in flight at the end: fetch "),
            std::string::npos)
      << adaptive.table();
}

TEST(FetchHttp, MalformedAndOversizeBodiesAreDeadLetteredNotCrashes) {
  sim::SimOptions o;
  o.docs = 20;
  o.malformed_rate = 1.0;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = test::run_json(
      fetch_graph(ids_file(dir, 20), server.url() + "/docs/{id}", dir / "f.db", "", "8"));
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 20u);

  test::RunningSim plain;
  RunReport big = test::run_json(fetch_graph(ids_file(dir, 3), plain.url() + "/big?{id}",
                                             dir / "g.db", R"(, "max_bytes": 1048576)", "2",
                                             R"(, "dead_letter": ")" + (dir / "big.jsonl") + "\""));
  EXPECT_EQ(big.lost, 0u);
  EXPECT_EQ(big.dead_lettered, 3u);
  EXPECT_NE(test::read_file(dir / "big.jsonl").find("response larger than 1048576 bytes"),
            std::string::npos);
}

TEST(FetchHttp, ConcurrencyCapsRequestsInFlight) {
  sim::SimOptions o;
  o.docs = 120;
  o.latency_ms = 40;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 120, "8");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 120u);
  int64_t peak = server.stats()["peak_concurrent"].GetInt64();
  EXPECT_LE(peak, 8);
  EXPECT_GE(peak, 6) << "the cap should also be used";
}

TEST(FetchHttp, AdaptiveConcurrencyFindsWhatAnOverloadedUpstreamServes) {
  // The sim serves 16 at once and sheds the rest with 503s; a fixed cap of 200 would see most of
  // its requests refused. Adaptive settles near 16 with few refusals and loses nothing.
  sim::SimOptions o;
  o.docs = 1500;
  o.latency_ms = 20;
  o.max_concurrent = 16;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 1500, "\"adaptive:200\"");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 1500u);
  EXPECT_EQ(rep.dead_lettered, 0u);
  auto st = server.stats();
  const int64_t total = st["requests"].GetInt64();
  const auto& statuses = st["by_endpoint"]["/docs/{id}"]["statuses"];
  const int64_t refused = statuses.HasMember("503") ? statuses["503"].GetInt64() : 0;
  EXPECT_LE(refused, total / 10) << refused << " of " << total << " requests refused";
  const NodeReport* fetch = nullptr;
  for (const auto& n : rep.nodes)
    if (n.id == "fetch") fetch = &n;
  ASSERT_NE(fetch, nullptr);
  EXPECT_GE(fetch->in_flight_mean, 6.0) << "adaptive should use most of what the upstream serves";
  EXPECT_LE(fetch->in_flight_mean, 40.0);
}

TEST(FetchHttp, AdaptiveConcurrencyGrowsToItsMaxOnAHealthyUpstream) {
  // 100 ms round trips: scheduling noise on a loaded 2-core machine stays well under the 25%
  // rise that reads as congestion.
  sim::SimOptions o;
  o.docs = 2500;
  o.latency_ms = 100;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 2500, "\"adaptive:100\"");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 2500u);
  int64_t peak = server.stats()["peak_concurrent"].GetInt64();
  EXPECT_LE(peak, 100);
  EXPECT_GE(peak, 80) << "slow start should reach the max when nothing pushes back";
}

// 2,000 documents on one TBB thread at `latency_ms` a request, all 2,000 allowed in flight:
// every one is indexed, within `max_s`. Returns the sim's peak of requests in flight.
int64_t one_thread_peak(int latency_ms, double max_s) {
  sim::SimOptions o;
  o.docs = 2000;
  o.latency_ms = latency_ms;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 2000, "2000", 1);
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 2000u);
  EXPECT_LT(rep.elapsed_s, max_s);
  return server.stats()["peak_concurrent"].GetInt64();
}

TEST(FetchHttp, OneThreadKeepsThousandsInFlightWithoutBlocking) {
  // 2,000 requests at 100 ms on one TBB thread: blocking would take 200 s; the loop takes ~0.1 s
  // per wave.
  // A blocked worker would keep one request in flight. The peak here is bounded by how fast the
  // loop opens 2,000 new connections before the first answers come back 100 ms later (714-795 in
  // a release build, 309-583 in an ASan one, on a slow 2-core host); the test below holds them
  // long enough to see all of them in flight.
  EXPECT_GE(one_thread_peak(100, 10.0), 100);
}

TEST(FetchHttp, OneThreadHoldsTwoThousandRequestsInFlightAtOnce) {
  // The same on one TBB thread with 1 s answers: every request is in flight before the first
  // answer comes back. Both ends of 2,000 connections live in this process.
  if (uint64_t files = http::raise_open_files_limit(); files < 4500)
    GTEST_SKIP() << "needs 4,500 open files, the limit is " << files;
  EXPECT_GE(one_thread_peak(1000, 20.0), 1800);
}

TEST(FetchHttp, HundredsInFlightSpreadOverConnectionPoolsThatReuseTheirConnections) {
  // 300 in flight is five of the loop's connection pools (64 transfers each) on one epoll set:
  // all of them run at once, and a transfer's follow-up finds the connection it left idle.
  sim::SimOptions o;
  o.docs = 1500;
  o.latency_ms = 50;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 1500, "300");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 1500u);
  auto st = server.stats();
  EXPECT_GT(st["peak_concurrent"].GetInt64(), 128) << "more than two pools' worth at once";
  EXPECT_LE(st["connections"].GetInt64(), 400)
      << "1,500 requests on about 300 kept-alive connections";
}

TEST(FetchHttp, ConnectionCapsHoldTheUpstreamToThatManyConnections) {
  sim::SimOptions o;
  o.docs = 200;
  o.latency_ms = 5;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep =
      test::run_json(fetch_graph(ids_file(dir, 200), server.url() + "/docs/{id}", dir / "f.db", "",
                                 "32", R"(, "max_host_connections": 4)"));
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 200u);
  auto st = server.stats();
  EXPECT_LE(st["peak_concurrent"].GetInt64(), 4) << "32 requests in flight wait for 4 connections";
  EXPECT_LE(st["connections"].GetInt64(), 4);
}

TEST(FetchHttp, RateLimitIsRespectedAndThrottlingRetried) {
  // 20 s at the limit: the sim allows 20 requests per 1-second window; the config says the same.
  sim::SimOptions o;
  o.docs = 400;
  o.rpm = 1200;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = test::run_json(fetch_graph(ids_file(dir, 400), server.url() + "/docs/{id}",
                                             dir / "f.db", R"(, "rpm": 1200)", "50"));
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 400u);
  const double per_s = 400 / rep.elapsed_s;
  EXPECT_GE(per_s, 0.9 * 20) << "the limit should be nearly saturated";
  EXPECT_LE(per_s, 20 * 1.05) << "faster than the limit";
  auto st = server.stats();
  const auto& by = st["by_endpoint"];
  int64_t throttled = 0, total = st["requests"].GetInt64();
  for (auto it = by.MemberBegin(); it != by.MemberEnd(); ++it)
    if (it->value["statuses"].HasMember("429"))
      throttled += it->value["statuses"]["429"].GetInt64();
  EXPECT_LE(throttled, total / 50) << "pacing should keep 429s under 2%";

  // Without a configured limit, every 429 is retried until all documents are in.
  test::RunningSim strict(o);
  RunReport unpaced =
      test::run_json(fetch_graph(ids_file(dir, 40), strict.url() + "/docs/{id}", dir / "g.db",
                                 R"(, "retry": {"max_retry_s": 30})", "40"));
  EXPECT_EQ(unpaced.lost, 0u);
  EXPECT_EQ(unpaced.docs_indexed, 40u);
}

TEST(Interrupt, SigintDrainsInFlightWritesTheReportAndExits130) {
  sim::SimOptions o;
  o.docs = 5000;
  o.latency_ms = 100;
  test::RunningSim server(o);
  test::TempDir dir;
  test::write_file(dir / "g.json", fetch_graph(ids_file(dir, 5000), server.url() + "/docs/{id}",
                                               dir / "i.db", "", "50"));
  std::string cmd = "bash -c '\"" + std::string(SLUICE_BIN) + "\" run " + (dir / "g.json") +
                    " --quiet --report " + (dir / "r.json") +
                    " & pid=$!; sleep 0.8; kill -INT $pid; wait $pid; echo $? > " + (dir / "rc") +
                    "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(test::read_file(dir / "rc"), "130\n");
  rapidjson::Document rep;
  rep.Parse(test::read_file(dir / "r.json").c_str());
  ASSERT_FALSE(rep.HasParseError());
  EXPECT_TRUE(rep["interrupted"].GetBool());
  EXPECT_EQ(rep["lost"].GetUint64(), 0u);
  EXPECT_LT(rep["docs"].GetUint64(), 5000u);
  EXPECT_EQ(rep["docs_indexed"].GetUint64(), rep["docs"].GetUint64())
      << "admitted documents finish";
  EXPECT_EQ(test::sqlite_count(dir / "i.db", "SELECT count(*) FROM chunks"),
            static_cast<int64_t>(rep["docs"].GetUint64()));
}

TEST(RecordTemplate, ExpandsAndEncodes) {
  Record r;
  r.id = "Genesis 1";
  r.doc_id = "Genesis";
  r.meta.set_string("v", "english|The Koren/2");
  RecordTemplate t("https://x/api/v3/texts/{id}?version={meta.v}&d={doc_id}{{x}}");
  EXPECT_EQ(t.expand(r, true),
            "https://x/api/v3/texts/Genesis%201?version=english%7CThe%20Koren%2F2&d=Genesis{x}");
  EXPECT_EQ(RecordTemplate("{+id}").expand(r, true), "Genesis 1");
  EXPECT_THROW(RecordTemplate("{nope}"), std::invalid_argument);
  EXPECT_THROW(RecordTemplate("{id"), std::invalid_argument);
}

}  // namespace
}  // namespace sluice
