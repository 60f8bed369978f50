// --metrics-addr: the Prometheus text a report renders to (checked by promtool), the endpoint that
// serves it (untrusted requests), a run and a launcher serving live figures, and a real
// Prometheus scraping a run.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include "app/launcher.hpp"
#include "engine/graph/prometheus.hpp"
#include "engine/metrics/metrics_server.hpp"
#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using test::free_port;
using test::Got;
using test::http_get;
using test::TempDir;

// The value of a sample in Prometheus text, or -1.
double sample(const std::string& text, const std::string& series) {
  return test::metric_value(text, series);
}

// What a raw request (any bytes) gets back, up to the server's close.
std::string raw_exchange(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

int port_of(const MetricsServer& s) {
  return std::stoi(s.address().substr(s.address().rfind(':') + 1));
}

// promtool's verdict on `text` ("" = clean), or a skip outside CI where scripts/setup has not
// installed it.
#define PROMTOOL_CHECK(text, dir)                                                                  \
  do {                                                                                             \
    if (std::system("command -v promtool >/dev/null 2>&1") != 0) {                                 \
      if (std::getenv("CI")) FAIL() << "promtool is not installed (scripts/setup installs it)";    \
      GTEST_SKIP() << "promtool is not installed: run scripts/setup";                              \
    }                                                                                              \
    test::write_file((dir) / "metrics.txt", text);                                                 \
    std::string cmd = "promtool check metrics < '" + (dir) / "metrics.txt" + "' > '" +             \
                      (dir) / "promtool.out" + "' 2>&1";                                           \
    int rc = std::system(cmd.c_str());                                                             \
    EXPECT_EQ(rc, 0) << test::read_file((dir) / "promtool.out") << "\n" << text;                   \
  } while (0)

RunReport sample_report() {
  RunReport r;
  r.graph = "g";
  r.config_hash = "abc";
  r.shard = "0/1";
  r.threads = 2;
  r.elapsed_s = 10;
  r.docs = 100;
  r.docs_indexed = 90;
  r.docs_filtered = 4;
  r.docs_dead_lettered = 3;
  r.inflight_docs = 3;
  r.chunks = 400;
  r.tokens = 1234;
  r.cost_usd = 0.5;
  NodeReport fetch;
  fetch.id = "fe\"t\\ch\nx";  // every character the format escapes
  fetch.type = "fetch.http";
  fetch.io = true;
  fetch.concurrency = 8;
  fetch.in = 100;
  fetch.out = 97;
  fetch.errors = 3;
  fetch.in_flight_now = 5;
  fetch.in_flight_mean = 4;
  NodeReport chunk;
  chunk.id = "chunk";
  chunk.type = "chunk.recursive";
  chunk.in = 97;
  chunk.out = 400;
  chunk.busy_s = 5;
  chunk.queue_now = 7;
  r.nodes = {fetch, chunk};
  r.http.requests = 103;
  r.http.attempts = 110;
  r.http.retries = 7;
  r.http.throttled = 4;
  r.http.failed = 3;
  r.http.add_status(500, 3);
  r.http.add_status(200, 100);
  r.http.add_status(0, 3);
  r.http.add_status(429, 4);
  for (int i = 0; i < 50; ++i) r.http.latency.add(0.004);  // 4 ms
  for (int i = 0; i < 50; ++i) r.http.latency.add(0.200);  // 200 ms
  for (int i = 0; i < 10; ++i) r.http.latency.add(500.0);  // past every bound
  r.http.latency_sum_s = 50 * 0.004 + 50 * 0.2 + 10 * 500.0;
  return r;
}

TEST(Metrics, TextFollowsThePrometheusFormat) {
  TempDir dir;
  const std::string text = prometheus_text(sample_report(), 1);
  EXPECT_EQ(sample(text, "sluice_documents_total{outcome=\"indexed\"}"), 90);
  EXPECT_EQ(sample(text, "sluice_documents_total{outcome=\"dead_lettered\"}"), 3);
  EXPECT_EQ(sample(text, "sluice_documents_in_flight"), 3);
  EXPECT_EQ(sample(text, "sluice_tokens_total"), 1234);
  EXPECT_EQ(sample(text, "sluice_cost_usd_total"), 0.5);
  EXPECT_EQ(sample(text, "sluice_http_responses_total{code=\"0\"}"), 3);
  EXPECT_EQ(sample(text, "sluice_http_responses_total{code=\"429\"}"), 4);
  EXPECT_EQ(sample(text, "sluice_http_throttled_total"), 4);
  EXPECT_EQ(sample(text, "sluice_http_retries_total"), 7);
  // Status codes in order.
  EXPECT_LT(text.find("code=\"0\""), text.find("code=\"200\""));
  EXPECT_LT(text.find("code=\"429\""), text.find("code=\"500\""));
  // Labels escaped; only I/O nodes have in-flight and concurrency series.
  const std::string fetch = "node=\"fe\\\"t\\\\ch\\nx\",type=\"fetch.http\"";
  EXPECT_EQ(sample(text, "sluice_node_in_flight{" + fetch + "}"), 5);
  EXPECT_EQ(sample(text, "sluice_node_concurrency_limit{" + fetch + "}"), 8);
  EXPECT_EQ(sample(text, "sluice_node_errors_total{" + fetch + "}"), 3);
  EXPECT_EQ(sample(text, "sluice_node_utilization{" + fetch + "}"), 0.5);
  const std::string chunk = "node=\"chunk\",type=\"chunk.recursive\"";
  EXPECT_EQ(sample(text, "sluice_node_in_flight{" + chunk + "}"), -1);
  EXPECT_EQ(sample(text, "sluice_node_queue{" + chunk + "}"), 7);
  EXPECT_EQ(sample(text, "sluice_node_utilization{" + chunk + "}"), 0.25);  // 5 s of 2 x 10 s
  // The histogram: cumulative, each bound holding what is at or below it.
  const std::string b = "sluice_http_attempt_duration_seconds_bucket";
  EXPECT_EQ(sample(text, b + "{le=\"0.0025\"}"), 0);
  EXPECT_EQ(sample(text, b + "{le=\"0.005\"}"), 50);
  EXPECT_EQ(sample(text, b + "{le=\"0.1\"}"), 50);
  EXPECT_EQ(sample(text, b + "{le=\"0.25\"}"), 100);
  EXPECT_EQ(sample(text, b + "{le=\"60\"}"), 100);
  EXPECT_EQ(sample(text, b + "{le=\"+Inf\"}"), 110);
  EXPECT_EQ(sample(text, "sluice_http_attempt_duration_seconds_count"), 110);
  EXPECT_NEAR(sample(text, "sluice_http_attempt_duration_seconds_sum"), 5010.2, 1e-6);
  PROMTOOL_CHECK(text, dir);
}

TEST(Metrics, ReportKeepsStatusesThroughJsonAndWorkers) {
  RunReport r = sample_report();
  RunReport back;
  ASSERT_TRUE(RunReport::from_json(r.to_json(), back));
  ASSERT_EQ(back.http.by_status, r.http.by_status);
  EXPECT_EQ(back.http.latency_sum_s, r.http.latency_sum_s);
  EXPECT_EQ(back.inflight_docs, 3);
  EXPECT_EQ(back.nodes[0].in_flight_now, 5u);
  EXPECT_EQ(back.nodes[1].queue_now, 7u);
  RunReport job;
  job.add_worker(back);
  job.add_worker(back);
  std::vector<std::pair<int, uint64_t>> want = {{0, 6}, {200, 200}, {429, 8}, {500, 6}};
  EXPECT_EQ(job.http.by_status, want);
  EXPECT_EQ(job.inflight_docs, 6);
  // A status key that is not one is left out, not a crash.
  std::string j = r.to_json();
  j.replace(j.find("\"by_status\":{"), 13, "\"by_status\":{\"x2\":1,\"99999\":2,");
  ASSERT_TRUE(RunReport::from_json(j, back));
  EXPECT_EQ(back.http.by_status, r.http.by_status);
}

TEST(Metrics, JobTotalsNeverGoBackWhenAWorkerRestarts) {
  GraphSpec spec;
  spec.name = "g";
  auto worker = [](uint64_t indexed, uint64_t in_flight) {
    RunReport r;
    r.docs_indexed = indexed;
    r.inflight_docs = static_cast<int64_t>(in_flight);
    r.http.add_status(200, indexed);
    NodeReport fetch;
    fetch.id = "fetch";
    fetch.io = true;
    fetch.concurrency = 4;
    fetch.in_flight_now = in_flight;
    fetch.out = indexed;
    r.nodes = {fetch};
    return r;
  };
  JobTotals job(2);
  job.snapshot(0, worker(100, 3));
  job.snapshot(1, worker(50, 2));
  RunReport t = job.totals(spec, 1, 1);
  EXPECT_EQ(t.docs_indexed, 150u);
  EXPECT_EQ(t.inflight_docs, 5);
  EXPECT_EQ(t.nodes[0].concurrency, 8);
  EXPECT_EQ(t.restarts, 0);
  // Worker 0 is killed: what it counted stays, its gauges go.
  job.restarted(0);
  t = job.totals(spec, 2, 1);
  EXPECT_EQ(t.docs_indexed, 150u);
  EXPECT_EQ(t.inflight_docs, 2);
  EXPECT_EQ(t.nodes[0].in_flight_now, 2u);
  EXPECT_EQ(t.nodes[0].concurrency, 4) << "only the running attempt's share of the cap";
  EXPECT_EQ(t.restarts, 1);
  // Its next attempt counts from zero; the job's counters add it on.
  job.snapshot(0, worker(10, 1));
  t = job.totals(spec, 3, 1);
  EXPECT_EQ(t.docs_indexed, 160u);
  EXPECT_EQ(t.nodes[0].out, 160u);
  EXPECT_EQ(t.nodes[0].concurrency, 8);
  std::vector<std::pair<int, uint64_t>> want = {{200, 160}};
  EXPECT_EQ(t.http.by_status, want);
  // Killed again, then a final report from each.
  job.restarted(0);
  job.report(0, worker(30, 0));
  job.report(1, worker(80, 0));
  t = job.totals(spec, 4, 1);
  EXPECT_EQ(t.docs_indexed, 220u);
  EXPECT_EQ(t.restarts, 2);
  EXPECT_EQ(t.inflight_docs, 0);
  EXPECT_EQ(t.elapsed_s, 4);
}

TEST(Metrics, EndpointAnswersOnlyWhatItShould) {
  MetricsServer s("127.0.0.1:0", kPrometheusContentType);
  s.publish("# HELP x y\n# TYPE x gauge\nx 1\n");
  const std::string base = "http://" + s.address();
  Got g = http_get(base + "/metrics");
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(g.body, "# HELP x y\n# TYPE x gauge\nx 1\n");
  EXPECT_EQ(g.content_type, kPrometheusContentType);
  EXPECT_EQ(http_get(base + "/metrics?x=1").status, 200);
  Got h = http_get(base + "/metrics", true);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "");
  EXPECT_EQ(s.scrapes(), 3u);
  s.publish("x 2\n");
  EXPECT_EQ(http_get(base + "/metrics").body, "x 2\n");
  EXPECT_EQ(http_get(base + "/").status, 200);
  EXPECT_EQ(http_get(base + "/metrics/../etc/passwd").status, 404);

  const int port = port_of(s);
  EXPECT_EQ(
      raw_exchange(port, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(raw_exchange(port, "GARBAGE\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(raw_exchange(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a'))
                .rfind("HTTP/1.1 431", 0),
            0u);
  // A client that connects and says nothing is dropped within the 2 s allowed; the next one is
  // served.
  int idle = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(idle, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(http_get(base + "/metrics").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  close(idle);
}

TEST(Metrics, BadAddressesAreRefusedWithTheReason) {
  auto error_of = [](const std::string& addr) {
    try {
      MetricsServer s(addr, "text/plain");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of("127.0.0.1:http").find("expected HOST:PORT"), std::string::npos);
  EXPECT_NE(error_of("127.0.0.1:70000").find("expected HOST:PORT"), std::string::npos);
  EXPECT_NE(error_of("[::1").find("[ADDRESS]:PORT"), std::string::npos);
  EXPECT_NE(error_of("no-such-host.invalid:9464").find("no-such-host.invalid"), std::string::npos);
  MetricsServer taken("127.0.0.1:0", "text/plain");
  std::string busy = error_of(taken.address());
  EXPECT_NE(busy.find("cannot listen"), std::string::npos) << busy;
  EXPECT_NE(busy.find("pick another"), std::string::npos) << busy;
  // A bare port is loopback.
  MetricsServer bare("0", "text/plain");
  EXPECT_EQ(bare.address().rfind("127.0.0.1:", 0), 0u) << bare.address();
}

// A run against the sim that lasts a few seconds (100 ms a document, 4 at a time), with some
// 500s, serving metrics on `port`; `args` adds to the command line.
struct SlowRun {
  test::RunningSim sim{[] {
    sim::SimOptions o;
    o.latency_ms = 100;
    o.error_rate = 0.05;
    return o;
  }()};
  TempDir dir;
  std::string graph;
  explicit SlowRun(int docs) {
    graph = dir / "g.json";
    test::write_file(
        graph, test::fetch_graph(test::ids_file(dir, docs), sim.url("/docs/{id}"), dir / "f.db",
                                 R"(, "retry": {"max_attempts": 8, "base_delay_s": 0.01})", "4"));
  }
};

// Scrapes `url` every 100 ms while `running`; returns every body that came back.
std::vector<std::string> scrape_while(const std::string& url, const std::atomic<bool>& running) {
  std::vector<std::string> got;
  while (running.load()) {
    Got g = http_get(url);
    if (g.status == 200) got.push_back(g.body);
    std::this_thread::sleep_for(100ms);
  }
  return got;
}

void expect_monotonic(const std::vector<std::string>& scrapes, const std::string& series) {
  double last = -1;
  for (const auto& s : scrapes) {
    double v = sample(s, series);
    EXPECT_GE(v, last) << series;
    last = v;
  }
}

void check_live_run(int processes) {
  SlowRun run(120);
  const int port = free_port();
  std::atomic<bool> running{true};
  test::CommandResult result;
  std::thread t([&] {
    result = test::run_sluice("run '" + run.graph + "' -P " + std::to_string(processes) +
                              " --metrics-addr 127.0.0.1:" + std::to_string(port) + " --state '" +
                              run.dir / "st" + "'");
    running = false;
  });
  std::vector<std::string> scrapes =
      scrape_while("http://127.0.0.1:" + std::to_string(port) + "/metrics", running);
  t.join();
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.err.find("metrics at http://127.0.0.1:" + std::to_string(port) + "/metrics"),
            std::string::npos)
      << result.err;
  ASSERT_GE(scrapes.size(), 5u) << result.err;
  const std::string indexed = "sluice_documents_total{outcome=\"indexed\"}";
  // Live: some scrape saw work under way, with documents in flight and requests at the fetch.
  bool saw_progress = false, saw_in_flight = false;
  for (const auto& s : scrapes) {
    double done = sample(s, indexed);
    saw_progress = saw_progress || (done > 0 && done < 120);
    saw_in_flight =
        saw_in_flight || sample(s, "sluice_node_in_flight{node=\"fetch\",type=\"fetch.http\"}") > 0;
    EXPECT_EQ(sample(s, "sluice_workers"), processes);
  }
  EXPECT_TRUE(saw_progress);
  EXPECT_TRUE(saw_in_flight);
  expect_monotonic(scrapes, indexed);
  expect_monotonic(scrapes, "sluice_http_requests_total");
  expect_monotonic(scrapes, "sluice_http_responses_total{code=\"200\"}");
  // The later scrapes carry the HTTP figures, 500s included.
  const std::string& last = scrapes.back();
  EXPECT_GT(sample(last, "sluice_http_responses_total{code=\"200\"}"), 50) << last;
  EXPECT_GT(sample(last, "sluice_http_attempt_duration_seconds_count"), 50) << last;
  EXPECT_GT(sample(last, "sluice_http_attempt_duration_seconds_bucket{le=\"0.25\"}"), 50) << last;
  TempDir dir;
  PROMTOOL_CHECK(last, dir);
}

TEST(Metrics, RunServesLiveFigures) { check_live_run(1); }

TEST(Metrics, LauncherServesTheJobsTotals) { check_live_run(2); }

// A real Prometheus (Debian's, started here on loopback) scrapes a run every second; its query
// API then has the run's series.
TEST(Metrics, PrometheusScrapesARun) {
  if (std::system("command -v prometheus >/dev/null 2>&1") != 0) {
    if (std::getenv("CI")) FAIL() << "prometheus is not installed (scripts/setup installs it)";
    GTEST_SKIP() << "prometheus is not installed: run scripts/setup";
  }
  SlowRun run(200);
  const int metrics_port = free_port(), prom_port = free_port();
  const std::string config = run.dir / "prometheus.yml";
  test::write_file(config, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                           "scrape_configs:\n  - job_name: sluice\n    static_configs:\n"
                           "      - targets: ['127.0.0.1:" +
                               std::to_string(metrics_port) + "']\n");
  const std::string pidfile = run.dir / "prom.pid";
  std::string start = "prometheus --config.file='" + config + "' --storage.tsdb.path='" +
                      run.dir / "tsdb" +
                      "' --web.listen-address=127.0.0.1:" + std::to_string(prom_port) + " > '" +
                      run.dir / "prom.log" + "' 2>&1 & echo $! > '" + pidfile + "'";
  ASSERT_EQ(std::system(start.c_str()), 0);
  struct Stop {
    std::string pidfile;
    ~Stop() {
      std::string cmd = "kill $(cat '" + pidfile + "') 2>/dev/null; sleep 0.2";
      (void)!std::system(cmd.c_str());
    }
  } stop{pidfile};
  const std::string api = "http://127.0.0.1:" + std::to_string(prom_port);
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (http_get(api + "/-/ready").status != 200) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << test::read_file(run.dir / "prom.log");
    std::this_thread::sleep_for(100ms);
  }
  // Prometheus takes up to 5 s after it is ready to start scraping: wait for its first try (the
  // target is down until the run starts).
  while (http_get(api + "/api/v1/targets").body.find("\"health\":\"down\"") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << http_get(api + "/api/v1/targets").body;
    std::this_thread::sleep_for(100ms);
  }
  // The run, while Prometheus scrapes it; then what Prometheus holds.
  test::CommandResult result = test::run_sluice(
      "run '" + run.graph + "' --quiet --metrics-addr 127.0.0.1:" + std::to_string(metrics_port) +
      " --state '" + run.dir / "st" + "'");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto query = [&](const std::string& q) {
    char* esc = curl_easy_escape(nullptr, q.c_str(), static_cast<int>(q.size()));
    Got g = http_get(api + "/api/v1/query?query=" + esc);
    curl_free(esc);
    return g.body;
  };
  // max_over_time over the last minute: the run is over, so its series are no longer current.
  std::string indexed =
      query("max_over_time(sluice_documents_total{job=\"sluice\",outcome=\"indexed\"}[1m])");
  std::string up = query("max_over_time(up{job=\"sluice\"}[1m])");
  std::string responses = query("max_over_time(sluice_http_responses_total{code=\"200\"}[1m])");
  EXPECT_NE(indexed.find("\"status\":\"success\""), std::string::npos) << indexed;
  // "value":[TIME,"N"]: the sample's value N.
  auto value_of = [](const std::string& body) {
    size_t at = body.find("\"value\":[");
    size_t quote = at == std::string::npos ? at : body.find(",\"", at);
    return quote == std::string::npos ? -1.0 : std::strtod(body.c_str() + quote + 2, nullptr);
  };
  EXPECT_GT(value_of(indexed), 0) << indexed << "\n" << test::read_file(run.dir / "prom.log");
  EXPECT_NE(up.find("\"1\"]"), std::string::npos) << up;
  EXPECT_NE(responses.find("\"value\""), std::string::npos) << responses;
}

}  // namespace
}  // namespace sluice
