// fetch.http and the curl-multi loop against an in-process `sluice sim` on loopback: faults,
// dead letters, the concurrency cap, rate limits, and no TBB worker blocking on I/O.
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
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using test::ids_file;

std::string fetch_graph(const std::string& ids, const std::string& url,
                        const std::string& sink_path, const std::string& fetch_params,
                        const std::string& fetch_conc, const std::string& settings = "") {
  return R"({"settings": {"max_inflight_docs": 2000)" + settings + R"(},
  "nodes": [{"id": "ids", "type": "source.lines", "params": {"path": ")" +
         ids + R"("}},
    {"id": "fetch", "type": "fetch.http", "params": {"url": ")" +
         url + R"(")" + fetch_params + R"(}, "concurrency": )" + fetch_conc + R"(},
    {"id": "extract", "type": "extract.json", "params": {"text": "/text", "meta": {"title": "/title"}}},
    {"id": "index", "type": "index.sqlite", "params": {"path": ")" +
         sink_path + R"(", "batch": 64}}],
  "edges": [["ids", "fetch"], ["fetch", "extract"], ["extract", "index"]]})";
}

int64_t count(const std::string& db, const char* sql) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, sql, -1, &s, nullptr);
  int64_t n = -1;
  if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(h);
  return n;
}

rapidjson::Document stats(const sim::SimServer& s) {
  rapidjson::Document d;
  d.Parse(s.stats_json().c_str());
  EXPECT_FALSE(d.HasParseError());
  return d;
}

std::string base(const sim::SimServer& s) { return "http://127.0.0.1:" + std::to_string(s.port()); }

// `n` document ids fetched from the sim's /docs/{id} into an SQLite index in `dir`, with the
// fetch node's `concurrency` as given (JSON: 8, "\"adaptive:100\"").
RunReport fetch_ids(const sim::SimServer& server, const test::TempDir& dir, int n,
                    const std::string& concurrency, int threads = 2) {
  return test::run_json(
      fetch_graph(ids_file(dir, n), base(server) + "/docs/{id}", dir / "f.db", "", concurrency),
      threads);
}

// Both ways the loop can wait on its sockets (settings.http_loop): epoll, the default, and poll.
class BothLoops : public ::testing::TestWithParam<const char*> {};

TEST_P(BothLoops, EveryDocIndexedExactlyOnceThroughFaults) {
  sim::SimOptions o;
  o.docs = 300;
  o.latency_ms = 5;
  o.error_rate = 0.05;
  o.reset_rate = 0.02;
  o.timeout_rate = 0.01;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  std::string db = dir / "f.db";
  RunReport rep = test::run_json(fetch_graph(
      ids_file(dir, 300), base(server) + "/docs/{id}", db,
      R"(, "timeout_ms": 500, "retry": {"max_attempts": 12, "base_delay_s": 0.01, "max_delay_s": 0.2})",
      "64",
      R"(, "dead_letter": ")" + (dir / "dlq.jsonl") + R"(", "http_loop": ")" + GetParam() + "\""));
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 0u) << test::read_file(dir / "dlq.jsonl");
  EXPECT_EQ(rep.docs_indexed, 300u);
  EXPECT_EQ(count(db, "SELECT count(*) FROM chunks"), 300);
  EXPECT_EQ(count(db, "SELECT count(DISTINCT doc_id) FROM chunks"), 300);
  auto st = stats(server);
  EXPECT_GT(st["requests"].GetInt64(), 300) << "faults must have caused retries";
  EXPECT_GT(st["resets"].GetInt64() + st["timeouts"].GetInt64(), 0);
}

INSTANTIATE_TEST_SUITE_P(FetchHttp, BothLoops, ::testing::Values("epoll", "poll"));

// Every fault the sim has at once, on every endpoint, plus a rate limit sluice is not told about
// (so it meets 429s): fetch, embed and _bulk all retry, and the index sees every chunk id once.
TEST(Faults, EveryChunkReachesTheBulkIndexExactlyOnceThrough500sResetsTimeoutsAnd429s) {
  sim::SimOptions o;
  o.docs = 200;
  o.latency_ms = 3;
  o.error_rate = 0.05;
  o.reset_rate = 0.02;
  o.timeout_rate = 0.01;
  o.rpm = 6000;  // 100 per 1-second wall-clock window, for all endpoints together
  o.bulk_fail_rate = 0.05;
  sim::SimServer server(o);
  server.start();
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
                                 base(server) + R"(/docs/{id}",
      "timeout_ms": 400, "retry": {"max_attempts": 12, "base_delay_s": 0.01, "max_delay_s": 0.2}}},
    {"id": "extract", "type": "extract.json", "params": {"text": "/text"}},
    {"id": "chunk", "type": "chunk.recursive", "params": {"size": 300}},
    {"id": "embed", "type": "embed.openai", "concurrency": 4, "params": {"url": ")" +
                                 base(server) + R"(/v1/embeddings",
      "model": "m", "batch": 32, )" +
                                 retry + R"(}},
    {"id": "es", "type": "index.elasticsearch", "params": {"url": ")" +
                                 base(server) + R"(", "index": "docs",
      "batch": 100, "timeout_ms": 400, "max_attempts": 12}}],
  "edges": [["ids", "fetch"], ["fetch", "extract"], ["extract", "chunk"], ["chunk", "embed"], ["embed", "es"]]})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 0u) << test::read_file(dir / "dlq.jsonl");
  EXPECT_EQ(rep.docs_indexed, 200u);
  auto st = stats(server);
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
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = test::run_json(fetch_graph(ids_file(dir, 5, {"nosuch"}),
                                             base(server) + "/docs/{id}", dir / "f.db", "", "4",
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

TEST(FetchHttp, MalformedAndOversizeBodiesAreDeadLetteredNotCrashes) {
  sim::SimOptions o;
  o.docs = 20;
  o.malformed_rate = 1.0;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = test::run_json(
      fetch_graph(ids_file(dir, 20), base(server) + "/docs/{id}", dir / "f.db", "", "8"));
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 20u);

  sim::SimServer plain(sim::SimOptions{});
  plain.start();
  RunReport big = test::run_json(fetch_graph(ids_file(dir, 3), base(plain) + "/big?{id}",
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
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 120, "8");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 120u);
  int64_t peak = stats(server)["peak_concurrent"].GetInt64();
  EXPECT_LE(peak, 8);
  EXPECT_GE(peak, 6) << "the cap should also be used";
}

// The AIMD controller alone, on a made-up clock: 100 ms round trips, the limit always reached.
TEST(AdaptiveLimit, SlowStartDoublesBackPressureCutsThenGrowthIsOneAWindow) {
  using namespace std::chrono_literals;
  AimdLimit a(100);
  auto t = AimdLimit::Clock::time_point{} + 1s;
  auto window = [&](bool backpressure, double rtt = 0.1) {
    a.on_start(a.limit());
    for (int i = 0; i < 4;
         ++i) {  // a window ends once its first and last are >= one mean RTT apart
      t += 40ms;
      a.observe(rtt, backpressure && i == 3, t);
    }
  };
  EXPECT_EQ(a.limit(), 1);
  for (int expect : {2, 4, 8, 16, 32, 64, 100, 100}) {
    window(false);
    EXPECT_EQ(a.limit(), expect);
  }
  EXPECT_TRUE(a.slow_start());
  window(true);
  EXPECT_EQ(a.limit(), 50) << "the first push-back halves: slow start may have overshot 2x";
  EXPECT_FALSE(a.slow_start());
  window(false);
  EXPECT_EQ(a.limit(), 51) << "after the first cut, growth is additive";
  window(true);
  EXPECT_EQ(a.limit(), 45) << "later cuts take 10%";
  window(false, 0.3);
  EXPECT_EQ(a.limit(), 40) << "a round trip well above the mean is congestion too";
  // Not reaching the limit: nothing to learn, no growth.
  for (int i = 0; i < 4; ++i) {
    t += 40ms;
    a.observe(0.1, false, t);
  }
  EXPECT_EQ(a.limit(), 40);
  for (int i = 0; i < 40; ++i) window(true);
  EXPECT_EQ(a.limit(), 1) << "never below one";
}

TEST(FetchHttp, AdaptiveConcurrencyFindsWhatAnOverloadedUpstreamServes) {
  // The sim serves 16 at once and sheds the rest with 503s; a fixed cap of 200 would see most of
  // its requests refused. Adaptive settles near 16 with few refusals and loses nothing.
  sim::SimOptions o;
  o.docs = 1500;
  o.latency_ms = 20;
  o.max_concurrent = 16;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 1500, "\"adaptive:200\"");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 1500u);
  EXPECT_EQ(rep.dead_lettered, 0u);
  auto st = stats(server);
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
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 2500, "\"adaptive:100\"");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 2500u);
  int64_t peak = stats(server)["peak_concurrent"].GetInt64();
  EXPECT_LE(peak, 100);
  EXPECT_GE(peak, 80) << "slow start should reach the max when nothing pushes back";
}

// 2,000 documents on one TBB thread at `latency_ms` a request, all 2,000 allowed in flight:
// every one is indexed, within `max_s`. Returns the sim's peak of requests in flight.
int64_t one_thread_peak(int latency_ms, double max_s) {
  sim::SimOptions o;
  o.docs = 2000;
  o.latency_ms = latency_ms;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 2000, "2000", 1);
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 2000u);
  EXPECT_LT(rep.elapsed_s, max_s);
  return stats(server)["peak_concurrent"].GetInt64();
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
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = fetch_ids(server, dir, 1500, "300");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 1500u);
  auto st = stats(server);
  EXPECT_GT(st["peak_concurrent"].GetInt64(), 128) << "more than two pools' worth at once";
  EXPECT_LE(st["connections"].GetInt64(), 400)
      << "1,500 requests on about 300 kept-alive connections";
}

TEST(FetchHttp, ConnectionCapsHoldTheUpstreamToThatManyConnections) {
  sim::SimOptions o;
  o.docs = 200;
  o.latency_ms = 5;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep =
      test::run_json(fetch_graph(ids_file(dir, 200), base(server) + "/docs/{id}", dir / "f.db", "",
                                 "32", R"(, "max_host_connections": 4)"));
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 200u);
  auto st = stats(server);
  EXPECT_LE(st["peak_concurrent"].GetInt64(), 4) << "32 requests in flight wait for 4 connections";
  EXPECT_LE(st["connections"].GetInt64(), 4);
}

TEST(FetchHttp, RateLimitIsRespectedAndThrottlingRetried) {
  // 20 s at the limit: the sim allows 20 requests per 1-second window; the config says the same.
  sim::SimOptions o;
  o.docs = 400;
  o.rpm = 1200;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = test::run_json(fetch_graph(ids_file(dir, 400), base(server) + "/docs/{id}",
                                             dir / "f.db", R"(, "rpm": 1200)", "50"));
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 400u);
  const double per_s = 400 / rep.elapsed_s;
  EXPECT_GE(per_s, 0.9 * 20) << "the limit should be nearly saturated";
  EXPECT_LE(per_s, 20 * 1.05) << "faster than the limit";
  auto st = stats(server);
  const auto& by = st["by_endpoint"];
  int64_t throttled = 0, total = st["requests"].GetInt64();
  for (auto it = by.MemberBegin(); it != by.MemberEnd(); ++it)
    if (it->value["statuses"].HasMember("429"))
      throttled += it->value["statuses"]["429"].GetInt64();
  EXPECT_LE(throttled, total / 50) << "pacing should keep 429s under 2%";

  // Without a configured limit, every 429 is retried until all documents are in.
  sim::SimServer strict(o);
  strict.start();
  RunReport unpaced =
      test::run_json(fetch_graph(ids_file(dir, 40), base(strict) + "/docs/{id}", dir / "g.db",
                                 R"(, "retry": {"max_retry_s": 30})", "40"));
  EXPECT_EQ(unpaced.lost, 0u);
  EXPECT_EQ(unpaced.docs_indexed, 40u);
}

std::string list_graph(const std::string& list_params, const std::string& fetch_url,
                       const std::string& db, int max_inflight = 2000) {
  return R"({"settings": {"max_inflight_docs": )" + std::to_string(max_inflight) + R"(},
  "nodes": [{"id": "list", "type": "source.http_list", "params": {)" +
         list_params + R"(}},
    {"id": "fetch", "type": "fetch.http", "params": {"url": ")" +
         fetch_url + R"("}, "concurrency": 16},
    {"id": "extract", "type": "extract.json", "params": {"text": "/text"}},
    {"id": "index", "type": "index.sqlite", "params": {"path": ")" +
         db + R"("}}],
  "edges": [["list", "fetch"], ["fetch", "extract"], ["extract", "index"]]})";
}

// One response → many records: listing pages fetched, each expanded into its items, each item
// fetched as a document of its own.
TEST(ExpandJson, ListingPagesBecomeOneDocumentPerItem) {
  sim::SimOptions o;
  o.docs = 12;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  test::write_file(dir / "pages.txt", "1\n2\n3\n4\n");
  auto graph = [&](const std::string& items) {
    return R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") + R"("},
    "nodes": [{"id": "pages", "type": "source.lines", "params": {"path": ")" +
           (dir / "pages.txt") + R"("}},
      {"id": "list", "type": "fetch.http", "params": {"url": ")" +
           base(server) + R"(/docs?page={id}&per_page=5"}},
      {"id": "items", "type": "expand.json", "params": {"items": ")" +
           items + R"(", "id": "{/id}", "documents": true,
                                                        "meta": {"listing_page": "/id"}}},
      {"id": "fetch", "type": "fetch.http", "params": {"url": ")" +
           base(server) + R"(/docs/{id}"}},
      {"id": "text", "type": "extract.json", "params": {"text": "/text"}},
      {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
           (dir / "out.jsonl") + R"("}}],
    "edges": [["pages", "list"], ["list", "items"], ["items", "fetch"], ["fetch", "text"], ["text", "out"]]})";
  };
  RunReport rep = test::run_json(graph("/items"));
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 0u);
  auto lines = test::read_lines(dir / "out.jsonl");
  ASSERT_EQ(lines.size(), 12u) << "pages of 5, 5 and 2 items; page 4 is empty (filtered)";
  std::set<std::string> ids;
  for (const auto& l : lines) {
    rapidjson::Document d;
    d.Parse(l.c_str());
    ASSERT_FALSE(d.HasParseError());
    ids.insert(d["id"].GetString());
    EXPECT_STREQ(d["id"].GetString(), d["doc_id"].GetString()) << "documents: true";
    EXPECT_FALSE(std::string(d["text"].GetString()).empty());
  }
  EXPECT_EQ(ids.size(), 12u);
  EXPECT_EQ(ids.count("doc-000012"), 1u);

  // Not an array at `items`: the page is dead-lettered with the pointer named, nothing crashes.
  RunReport bad = test::run_json(graph("/page"));
  EXPECT_EQ(bad.lost, 0u);
  EXPECT_EQ(bad.dead_lettered, 4u);
  std::string dlq = test::read_file(dir / "dlq.jsonl");
  EXPECT_NE(dlq.find(R"(items: no array at \"/page\" (found a number))"), std::string::npos) << dlq;
}

TEST(HttpList, PagesUntilAnEmptyPageAndAShortPageIsNotTheEnd) {
  sim::SimOptions o;
  o.docs = 230;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  std::string params = R"("url": ")" + base(server) +
                       R"(/docs", "items": "/items", "paging": "page", "per_page": 50)";
  RunReport rep = test::run_json(list_graph(params, base(server) + "/docs/{id}", dir / "l.db", 40));
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs, 230u);
  EXPECT_EQ(rep.docs_indexed, 230u);
  EXPECT_LE(rep.peak_inflight_docs, 40);
  auto st = stats(server);
  // 5 pages with items (the 5th short) and 1 empty page that ends the listing.
  EXPECT_EQ(st["by_endpoint"]["/docs"]["requests"].GetInt64(), 6);
  EXPECT_EQ(count(dir / "l.db", "SELECT count(DISTINCT doc_id) FROM chunks"), 230);
}

TEST(HttpList, MaxPagesStopsAndItemsMustBeAnArray) {
  sim::SimOptions o;
  o.docs = 100;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = test::run_json(list_graph(
      R"("url": ")" + base(server) +
          R"(/docs", "items": "/items", "paging": "page", "per_page": 10, "max_pages": 3)",
      base(server) + "/docs/{id}", dir / "a.db"));
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 30u);
  RunReport bad =
      test::run_json(list_graph(R"("url": ")" + base(server) + R"(/docs", "items": "/page")",
                                base(server) + "/docs/{id}", dir / "b.db"));
  EXPECT_NE(bad.error.find("\"items\" /page does not point at an array"), std::string::npos)
      << bad.error;
  EXPECT_EQ(bad.exit_code(), 1);
}

TEST(PredefinedGraphs, PapersBackfillAgainstTheSim) {
  sim::SimOptions o;
  o.docs = 450;  // 3 pages of 200: the last one short, so its next_cursor is null
  o.latency_ms = 2;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  GraphSpec spec = load_graph(
      test::source_dir() + "/graphs/papers-backfill.json",
      {{"base_url", base(server) + "/openalex"}, {"db", dir / "p.db"}, {"max_pages", "0"}},
      builtin_registry());
  spec.settings.dead_letter = dir / "dlq.jsonl";
  RunReport rep = run_graph(spec, {});
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs, 450u);
  EXPECT_EQ(rep.dead_lettered, 0u) << test::read_file(dir / "dlq.jsonl");
  EXPECT_GT(rep.docs_filtered, 0u) << "works without an abstract are filtered";
  EXPECT_EQ(rep.docs_indexed + rep.docs_filtered, 450u);
  EXPECT_EQ(count(dir / "p.db", "SELECT count(DISTINCT doc_id) FROM chunks"),
            static_cast<int64_t>(rep.docs_indexed));
  EXPECT_EQ(count(dir / "p.db",
                  "SELECT count(*) FROM chunks WHERE doc_id NOT LIKE 'https://openalex.org/W%'"),
            0);
  EXPECT_EQ(stats(server)["by_endpoint"]["/openalex/works"]["requests"].GetInt64(), 3);
}

TEST(PredefinedGraphs, SefariaAgainstTheSim) {
  sim::SimOptions o;
  o.latency_ms = 2;
  o.error_rate = 0.05;  // retried
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  GraphSpec spec = load_graph(test::source_dir() + "/graphs/sefaria.json",
                              {{"base_url", base(server) + "/sefaria"}, {"db", dir / "s.db"}},
                              builtin_registry());
  spec.settings.dead_letter = dir / "dlq.jsonl";
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
  EXPECT_GT(count(dir / "s.db", "SELECT count(DISTINCT doc_id) FROM chunks"),
            static_cast<int64_t>(rep.docs));
  EXPECT_EQ(count(dir / "s.db", "SELECT count(*) FROM chunks WHERE meta NOT LIKE '%\"book\":%' OR "
                                "meta NOT LIKE '%\"version\":%'"),
            0);
  // Footnotes are dropped as a unit and entities decoded.
  EXPECT_EQ(count(dir / "s.db", "SELECT count(*) FROM chunks WHERE text LIKE '%&nbsp;%' OR text "
                                "LIKE '%<%' OR text LIKE '%footnote%'"),
            0);
}

// The predefined graphs switch embedder and sink by vars alone: Sefaria → sim /v1/embeddings →
// sim _bulk, and OpenAlex → sim Gemini → SQLite, with nothing but --set.
TEST(PredefinedGraphs, VarsSwitchTheEmbedderAndTheSink) {
  sim::SimOptions o;
  o.latency_ms = 2;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  GraphSpec spec = load_graph(test::source_dir() + "/graphs/sefaria.json",
                              {{"base_url", base(server) + "/sefaria"},
                               {"embedder", "embed.openai"},
                               {"openai_url", base(server) + "/v1/embeddings"},
                               {"sink", "index.elasticsearch"},
                               {"es_url", base(server)}},
                              builtin_registry());
  spec.settings.dead_letter = dir / "dlq.jsonl";
  EXPECT_EQ(spec.nodes[4].type, "embed.openai");
  EXPECT_EQ(spec.nodes[5].type, "index.elasticsearch");
  RunReport rep = run_graph(spec, {});
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, rep.docs - 1) << "all but the complex book";
  auto st = stats(server);
  EXPECT_EQ(st["bulk"]["distinct_ids"].GetUint64(), rep.chunks);
  EXPECT_GE(st["embeddings"]["inputs"].GetUint64(), rep.chunks);
  EXPECT_EQ(st["bulk"]["ids_indexed_more_than_once"].GetUint64(), 0u);

  ::setenv("GEMINI_API_KEY", "test-key", 1);
  GraphSpec papers = load_graph(test::source_dir() + "/graphs/papers-backfill.json",
                                {{"base_url", base(server) + "/openalex"},
                                 {"embedder", "embed.gemini"},
                                 {"gemini_url", base(server) + "/v1beta"},
                                 {"db", dir / "p.db"},
                                 {"max_pages", "1"}},
                                builtin_registry());
  ::unsetenv("GEMINI_API_KEY");
  papers.settings.dead_letter = dir / "pdlq.jsonl";
  RunReport prep = run_graph(papers, {});
  EXPECT_EQ(prep.error, "");
  EXPECT_EQ(prep.dead_lettered, 0u) << test::read_file(dir / "pdlq.jsonl");
  EXPECT_GT(prep.docs_indexed, 0u);
  EXPECT_EQ(count(dir / "p.db", "SELECT count(*) FROM sluice_meta WHERE key = 'embedder' AND value "
                                "LIKE '%embed.gemini%'"),
            1);
}

TEST(EmbedAndBulk, EveryChunkEmbeddedAndIndexedOnceThroughBulkFailures) {
  sim::SimOptions o;
  o.bulk_fail_rate = 0.1;  // items answered 429 inside a 200: retried alone
  o.error_rate = 0.02;     // whole requests answered 500: retried by the client
  o.latency_ms = 3;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  RunReport rep = test::run_json(R"({"settings": {"max_inflight_docs": 64, "dead_letter": ")" +
                                 (dir / "dlq.jsonl") + R"("},
  "nodes": [{"id": "docs", "type": "source.range", "params": {"count": 120, "size": 1500}},
    {"id": "chunk", "type": "chunk.recursive", "params": {"size": 300}},
    {"id": "embed", "type": "embed.openai", "params": {"url": ")" +
                                 base(server) + R"(/v1/embeddings", "model": "m",
      "batch": 16, "price_per_mtok": 0.02, "api_key": "${env:SLUICE_TEST_NO_SUCH_KEY}"}, "concurrency": 4},
    {"id": "es", "type": "index.elasticsearch", "params": {"url": ")" +
                                 base(server) + R"(", "index": "docs", "batch": 50}}],
  "edges": [["docs", "chunk"], ["chunk", "embed"], ["embed", "es"]]})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 0u) << test::read_file(dir / "dlq.jsonl");
  EXPECT_EQ(rep.docs_indexed, 120u);
  auto st = stats(server);
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

TEST(EmbedAndBulk, PartialBatchesLeaveAtTheEndOfInputNotAfterLinger) {
  // 10 documents, batches of 64 that linger 20 s: the last partial batch of each node must go out
  // as soon as nothing upstream can add to it. Waiting out linger_ms would take 40 s.
  sim::SimServer server(sim::SimOptions{});
  server.start();
  RunReport rep = test::run_json(
      R"({"nodes": [{"id": "docs", "type": "source.range", "params": {"count": 10, "size": 200}},
    {"id": "embed", "type": "embed.openai", "params": {"url": ")" +
      base(server) + R"(/v1/embeddings", "model": "m",
      "batch": 64, "linger_ms": 20000}},
    {"id": "es", "type": "index.elasticsearch", "params": {"url": ")" +
      base(server) + R"(", "index": "docs",
      "batch": 64, "linger_ms": 20000}}],
  "edges": [["docs", "embed"], ["embed", "es"]]})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.docs_indexed, 10u);
  EXPECT_LT(rep.elapsed_s, 10.0);
  EXPECT_EQ(rep.http.requests, 2u)
      << "one embedding request and one _bulk, each a whole partial batch";
}

TEST(EmbedAndBulk, OpenAIVectorsAreRecordedWithTheirEmbedder) {
  sim::SimServer server(sim::SimOptions{});
  server.start();
  test::TempDir dir;
  RunReport rep = test::run_json(
      R"({"nodes": [{"id": "docs", "type": "source.range", "params": {"count": 10, "size": 200}},
    {"id": "embed", "type": "embed.openai", "params": {"url": ")" +
      base(server) + R"(/v1/embeddings", "model": "m", "dimensions": 32}},
    {"id": "db", "type": "index.sqlite", "params": {"path": ")" +
      (dir / "e.db") + R"("}}],
  "edges": [["docs", "embed"], ["embed", "db"]]})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.docs_indexed, 10u);
  EXPECT_EQ(count(dir / "e.db", "SELECT count(*) FROM chunks WHERE length(vector) = 32 * 2"), 10);
  EXPECT_EQ(count(dir / "e.db",
                  "SELECT count(*) FROM sluice_meta WHERE key = 'embedder' AND value = "
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
  sim::SimServer server(sim::SimOptions{});
  server.start();
  test::TempDir dir;
  ::setenv("SLUICE_TEST_GEMINI_KEY", "secret-test-key", 1);
  RunReport rep = test::run_json(
      R"({"nodes": [{"id": "docs", "type": "source.range", "params": {"count": 250, "size": 200}},
    {"id": "embed", "type": "embed.gemini", "params": {"base_url": ")" +
      base(server) + R"(/v1beta/",
      "model": "gemini-embedding-001", "dimensions": 48, "api_key": "${env:SLUICE_TEST_GEMINI_KEY}", "price_per_mtok": 0.15}},
    {"id": "db", "type": "index.sqlite", "params": {"path": ")" +
      (dir / "g.db") + R"("}}],
  "edges": [["docs", "embed"], ["embed", "db"]]})");
  ::unsetenv("SLUICE_TEST_GEMINI_KEY");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.dead_lettered, 0u) << "the sim refuses calls without x-goog-api-key (403)";
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 250u);
  EXPECT_EQ(count(dir / "g.db", "SELECT count(*) FROM chunks WHERE length(vector) = 48 * 2"), 250);
  EXPECT_EQ(count(dir / "g.db",
                  "SELECT count(*) FROM sluice_meta WHERE key = 'embedder' AND value = "
                  "'{\"type\":\"embed.gemini\",\"model\":\"gemini-embedding-001\",\"dim\":48}'"),
            1);
  auto st = stats(server);
  const auto& ep = st["by_endpoint"]["/v1beta/models/{model}:batchEmbedContents"];
  EXPECT_GE(ep["requests"].GetUint64(), 3u) << "250 inputs need at least 3 calls of at most 100";
  EXPECT_EQ(st["embeddings"]["inputs"].GetUint64(), 250u);
  // Gemini does not count tokens: the report's are the 4-characters-a-token estimate, priced.
  EXPECT_EQ(rep.tokens,
            static_cast<uint64_t>(count(
                dir / "g.db", "SELECT sum((length(CAST(text AS BLOB)) + 3) / 4) FROM chunks")));
  EXPECT_NEAR(rep.cost_usd, rep.tokens / 1e6 * 0.15, 1e-9);
}

TEST(EmbedAndBulk, GeminiWithoutAKeyIsDeadLetteredWithTheApisMessage) {
  sim::SimServer server(sim::SimOptions{});
  server.start();
  test::TempDir dir;
  RunReport rep = test::run_json(R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") + R"("},
    "nodes": [{"id": "docs", "type": "source.range", "params": {"count": 5, "size": 100}},
    {"id": "embed", "type": "embed.gemini", "params": {"base_url": ")" +
                                 base(server) + R"(/v1beta", "model": "m",
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

TEST(Interrupt, SigintDrainsInFlightWritesTheReportAndExits130) {
  sim::SimOptions o;
  o.docs = 5000;
  o.latency_ms = 100;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  test::write_file(dir / "g.json", fetch_graph(ids_file(dir, 5000), base(server) + "/docs/{id}",
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
  EXPECT_EQ(count(dir / "i.db", "SELECT count(*) FROM chunks"),
            static_cast<int64_t>(rep["docs"].GetUint64()));
}

TEST(HttpList, InterruptEndsAListingThatIsNotFetching) {
  // Pages of 1000 leave more than enough waiting, so the listing is idle (no page in flight)
  // when the run is interrupted: it must still end promptly and cleanly.
  sim::SimOptions o;
  o.docs = 5000;
  o.latency_ms = 20;
  sim::SimServer server(o);
  server.start();
  test::TempDir dir;
  GraphSpec spec = test::spec_from(
      list_graph(R"("url": ")" + base(server) +
                     R"(/docs", "items": "/items", "paging": "page", "per_page": 1000)",
                 base(server) + "/docs/{id}", dir / "i.db", 50));
  std::atomic<bool> interrupt{false};
  RunOptions opts;
  opts.interrupt = &interrupt;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    interrupt = true;
  });
  RunReport rep = run_graph(spec, opts);
  stopper.join();
  EXPECT_TRUE(rep.interrupted);
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_LT(rep.docs, 5000u);
  EXPECT_EQ(rep.docs_indexed, rep.docs);
  EXPECT_LT(rep.elapsed_s, 5.0);
}

TEST(HttpList, LinkHeaderNext) {
  EXPECT_EQ(link_next(R"(<https://x/a?page=2>; rel="next", <https://x/a?page=9>; rel="last")"),
            "https://x/a?page=2");
  EXPECT_EQ(link_next(R"(<https://x/a?page=9>; rel="last")"), "");
  EXPECT_EQ(link_next(""), "");
}

// Callbacks that submit the next request of their chain, as fetch.http's `follow` does: every
// chain runs to its end, and when the client is destroyed mid-run every submit, those made by
// callbacks during the shutdown included, is called back exactly once.
TEST(HttpClient, ChainsSubmittedFromCallbacksAreEachCalledBackOnceThroughShutdown) {
  sim::SimOptions o;
  o.docs = 50;
  o.latency_ms = 5;
  sim::SimServer server(o);
  server.start();
  for (bool destroy_early : {false, true}) {
    std::atomic<int> submitted{0}, called{0}, ok{0}, shut{0}, chains_done{0};
    constexpr int kChains = 40, kLength = 12;
    {
      std::function<void(int, int)> step;  // outlives the client, whose destructor calls back
      http::Client client;
      step = [&](int chain, int i) {
        http::Request req;
        char id[32];
        int doc = static_cast<int>((chain * kLength + i) % o.docs) + 1;
        std::snprintf(id, sizeof id, "doc-%06d", doc);
        req.url = base(server) + "/docs/" + id;
        ++submitted;
        client.submit(std::move(req), {}, "", 0, [&, chain, i](http::Response&& r) {
          ++called;
          if (r.ok()) ++ok;
          else if (r.error == "HTTP client shut down") ++shut;
          // On the loop thread (the local path), failed or not, as a node starts its next
          // queued request whatever became of the last one.
          if (i + 1 < kLength) step(chain, i + 1);
          else ++chains_done;
        });
      };
      for (int c = 0; c < kChains; ++c) step(c, 0);
      // Early: once two requests a chain have been answered; else once every chain has ended.
      auto waited = [&] { return destroy_early ? ok >= kChains * 2 : chains_done == kChains; };
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (!waited() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }  // the client's destructor fails whatever is left
    EXPECT_EQ(submitted.load(), kChains * kLength) << "destroy_early=" << destroy_early;
    EXPECT_EQ(called.load(), submitted.load()) << "destroy_early=" << destroy_early;
    EXPECT_EQ(chains_done.load(), kChains);
    if (destroy_early) {
      // Cut short: what the shutdown failed includes the requests its own callbacks submitted.
      EXPECT_LT(ok.load(), kChains * kLength / 2);
      EXPECT_EQ(shut.load(), kChains * kLength - ok.load());
    } else {
      EXPECT_EQ(ok.load(), kChains * kLength);
    }
  }
}

TEST(HttpClient, RetryAfterParsesSecondsAndDates) {
  EXPECT_EQ(http::parse_retry_after("7", 0), 7.0);
  EXPECT_EQ(http::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0), 10.0);
  EXPECT_LT(http::parse_retry_after("soon", 0), 0);
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
