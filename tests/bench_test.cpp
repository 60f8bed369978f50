// `sluice bench`: sweeps, the files it writes, its argument checks, and the report metrics it
// builds on (latency histogram, --sim flags).
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "app/bench.hpp"
#include "engine/metrics/histogram.hpp"
#include "test_util.hpp"

namespace sluice {
namespace {

using test::TempDir;

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    else if (c == sep && !quoted) {
      out.push_back(cur);
      cur.clear();
    } else cur += c;
  }
  out.push_back(cur);
  return out;
}

// Rows of a CSV as column name -> value maps; `header` gets the header fields.
std::vector<std::map<std::string, std::string>> read_csv(const std::string& path,
                                                         std::vector<std::string>& header) {
  auto lines = test::read_lines(path);
  std::vector<std::map<std::string, std::string>> rows;
  if (lines.empty()) return rows;
  header = split(lines[0], ',');
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    auto f = split(lines[i], ',');
    std::map<std::string, std::string> row;
    for (size_t c = 0; c < header.size() && c < f.size(); ++c) row[header[c]] = f[c];
    rows.push_back(row);
  }
  return rows;
}

// A small XML well-formedness check: balanced, properly nested tags, quoted attributes, no raw
// '<' or stray '&' in text. Returns "" when well formed, else what is wrong.
std::string xml_problem(const std::string& x) {
  std::vector<std::string> stack;
  size_t i = 0;
  auto entity_ok = [&](size_t at) {
    size_t semi = x.find(';', at);
    if (semi == std::string::npos || semi - at > 8) return false;
    std::string e = x.substr(at + 1, semi - at - 1);
    return e == "lt" || e == "gt" || e == "amp" || e == "quot" || e == "apos" ||
           (!e.empty() && e[0] == '#');
  };
  while (i < x.size()) {
    if (x[i] == '&' && !entity_ok(i)) return "stray & at " + std::to_string(i);
    if (x[i] != '<') {
      ++i;
      continue;
    }
    if (x.compare(i, 2, "<?") == 0) {
      size_t e = x.find("?>", i);
      if (e == std::string::npos) return "unterminated <?";
      i = e + 2;
      continue;
    }
    if (x.compare(i, 4, "<!--") == 0) {
      size_t e = x.find("-->", i);
      if (e == std::string::npos) return "unterminated comment";
      i = e + 3;
      continue;
    }
    bool closing = x.compare(i, 2, "</") == 0;
    size_t p = i + (closing ? 2 : 1);
    size_t n0 = p;
    while (p < x.size() &&
           (std::isalnum(static_cast<unsigned char>(x[p])) || x[p] == '-' || x[p] == ':'))
      ++p;
    std::string name = x.substr(n0, p - n0);
    if (name.empty()) return "empty tag name at " + std::to_string(i);
    if (closing) {
      if (stack.empty() || stack.back() != name) return "unbalanced </" + name + ">";
      stack.pop_back();
      size_t e = x.find('>', p);
      if (e == std::string::npos) return "unterminated </" + name;
      i = e + 1;
      continue;
    }
    // Attributes: name="value" pairs until > or />.
    for (;;) {
      while (p < x.size() && std::isspace(static_cast<unsigned char>(x[p]))) ++p;
      if (p >= x.size()) return "unterminated <" + name;
      if (x[p] == '>') {
        stack.push_back(name);
        ++p;
        break;
      }
      if (x.compare(p, 2, "/>") == 0) {
        p += 2;
        break;
      }
      size_t a0 = p;
      while (p < x.size() && x[p] != '=' && !std::isspace(static_cast<unsigned char>(x[p]))) ++p;
      if (p == a0 || p >= x.size() || x[p] != '=' || p + 1 >= x.size() || x[p + 1] != '"')
        return "bad attribute in <" + name + "> at " + std::to_string(a0);
      size_t close = x.find('"', p + 2);
      if (close == std::string::npos) return "unterminated attribute in <" + name + ">";
      if (x.substr(p + 2, close - p - 2).find('<') != std::string::npos)
        return "< inside an attribute";
      p = close + 1;
    }
    i = p;
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  return "";
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

TEST(Bench, CpuSweepWritesOneCsvRowPerCombinationAndAReadablePlot) {
  TempDir dir;
  auto r = test::run_sluice(
      "bench graphs/bench-cpu.json --threads 1,2 --processes 1,2 --repeat 1 --warmup 0 "
      "--set count=300 --set size=2000 -q --out " +
      dir / "b");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("bench-cpu on"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bottleneck"), std::string::npos) << r.out;

  std::vector<std::string> header;
  auto rows = read_csv(dir / "b/results.csv", header);
  EXPECT_EQ(header, bench_csv_columns());
  ASSERT_EQ(rows.size(), 4u);
  std::set<std::pair<std::string, std::string>> combos;
  for (const auto& row : rows) {
    combos.insert({row.at("threads"), row.at("processes")});
    EXPECT_EQ(row.at("docs"), "300");
    EXPECT_EQ(row.at("lost"), "0");
    EXPECT_EQ(row.at("failed_runs"), "0");
    double rate = std::stod(row.at("docs_per_s")), elapsed = std::stod(row.at("elapsed_s"));
    EXPECT_NEAR(rate * elapsed, 300.0, 3.0) << "docs/s x elapsed must be the docs of the run";
    EXPECT_GT(std::stod(row.at("cpu_ms_per_doc")), 0);
    EXPECT_GT(std::stod(row.at("peak_rss_mib")), 1);
    EXPECT_FALSE(row.at("bottleneck").empty());
    // No I/O: the ideal is linear scaling from 1 thread x 1 process.
    EXPECT_NE(row.at("ideal_from").find("linear from 1x1"), std::string::npos);
  }
  EXPECT_EQ(combos, (std::set<std::pair<std::string, std::string>>{
                        {"1", "1"}, {"2", "1"}, {"1", "2"}, {"2", "2"}}));
  EXPECT_EQ(rows[0].at("ratio_to_ideal"), "1.000");

  std::string svg = test::read_file(dir / "b/throughput.svg");
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count(svg, "class=\"series\""), 2u) << "one line per process count";
  EXPECT_EQ(count(svg, "class=\"ideal\""), 2u);
  EXPECT_NE(svg.find("data-processes=\"2\""), std::string::npos);
  EXPECT_NE(svg.find("threads per process"), std::string::npos);
  EXPECT_NE(svg.find("documents per second"), std::string::npos);

  rapidjson::Document d;
  d.Parse(test::read_file(dir / "b/results.json").c_str());
  ASSERT_FALSE(d.HasParseError());
  ASSERT_TRUE(d["combinations"].IsArray());
  EXPECT_EQ(d["combinations"].Size(), 4u);
  EXPECT_GE(d["machine"]["cores"].GetInt(), 1);
  EXPECT_EQ(d["combinations"][0]["runs"].Size(), 1u);
  EXPECT_EQ(d["combinations"][0]["runs"][0]["report"]["docs"].GetUint64(), 300u);
}

TEST(Bench, StartsAFreshSimForAGraphWithASimVarAndReportsRequestLatency) {
  TempDir dir;
  auto r = test::run_sluice(
      "bench graphs/bench-sim.json --threads 1 --processes 1,2 --repeat 2 --warmup 0 "
      "--sim docs=200,latency-ms=20,doc-bytes=1500 --out " +
      dir / "s");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("[2/2] threads 1 x processes 2, run 2/2"), std::string::npos)
      << "progress lines: " << r.err;
  std::vector<std::string> header;
  auto rows = read_csv(dir / "s/results.csv", header);
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& row : rows) {
    EXPECT_EQ(row.at("docs"), "200");
    EXPECT_EQ(row.at("runs"), "2");
    EXPECT_EQ(row.at("lost"), "0");
    EXPECT_GT(std::stod(row.at("requests_per_s")), 0);
    // The sim answers after 20 ms: no attempt can be faster.
    EXPECT_GE(std::stod(row.at("latency_p50_ms")), 19.0);
    EXPECT_GE(std::stod(row.at("latency_p99_ms")), std::stod(row.at("latency_p50_ms")));
    EXPECT_GT(std::stod(row.at("ideal_docs_per_s")), 0);
    EXPECT_NE(row.at("ideal_from").find("at 20 ms"), std::string::npos) << row.at("ideal_from");
    EXPECT_LE(std::stod(row.at("docs_per_s_min")), std::stod(row.at("docs_per_s")));
    EXPECT_GE(std::stod(row.at("docs_per_s_max")), std::stod(row.at("docs_per_s")));
  }
}

TEST(Bench, RefusesBadArgumentsWithClearErrors) {
  struct Case {
    std::string args, expect;
  };
  std::vector<Case> cases = {
      {"bench graphs/bench-cpu.json --threads 0", "--threads"},
      {"bench graphs/bench-cpu.json --threads 1,x", "--threads"},
      {"bench graphs/bench-cpu.json --processes abc", "--processes"},
      {"bench graphs/no-such-graph.json", "no-such-graph.json: cannot read graph config"},
      {"bench graphs/bench-cpu.json --repeat 0", "--repeat"},
      {"bench graphs/bench-cpu.json --sim latency-ms=5", "declares no `sim` var"},
      {"bench graphs/bench-sim.json --sim latncy-ms=5",
       "unknown sim flag \"latncy-ms\" (did you mean 'latency-ms'?)"},
      {"bench graphs/bench-sim.json --sim latency-ms=fast", "latency-ms must be a number"},
      {"bench graphs/bench-sim.json --sim error-rate=2", "error-rate must be a number from 0 to 1"},
      {"bench graphs/bench-sim.json --sim port=80", "bench picks the sim's port"},
      {"bench graphs/bench-sim.json --sim docs=5 --set sim=http://127.0.0.1:1", "pick one"},
      {"bench graphs/bench-cpu.json --set nope=1", "nope"},
  };
  for (const auto& c : cases) {
    auto r = test::run_sluice(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\nstderr: " << r.err;
  }
}

TEST(Bench, SimFlagsParseIntoSimOptions) {
  sim::SimOptions o =
      parse_sim_flags("latency-ms=50, rpm=60000,error-rate=0.01,docs=20000,--seed=7");
  EXPECT_EQ(o.latency_ms, 50);
  EXPECT_EQ(o.rpm, 60000);
  EXPECT_DOUBLE_EQ(o.error_rate, 0.01);
  EXPECT_EQ(o.docs, 20000u);
  EXPECT_EQ(o.seed, 7u);
  sim::SimOptions d = parse_sim_flags("");
  EXPECT_EQ(d.docs, sim::SimOptions{}.docs);
  EXPECT_THROW(parse_sim_flags("rpm"), std::invalid_argument);
}

TEST(Bench, SvgDrawsFailedCombinationsAsGapsAndStaysWellFormed) {
  std::vector<BenchRow> rows(3);
  rows[0].threads = 1;
  rows[1].threads = 2;
  rows[2].threads = 4;
  for (auto& r : rows) {
    BenchRun run;
    run.report.graph = "g";
    run.report.docs = 100;
    run.report.elapsed_s = 1.0 / r.threads;
    r.runs.push_back(run);
    r.docs_per_s_min = r.docs_per_s_max = run.report.docs_per_s();
  }
  rows[2].runs[0].failure = "timed out";
  std::string svg = bench_svg("g <&> \"t\"", rows);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count(svg, "class=\"series\""), 1u);
  EXPECT_EQ(count(svg, "<circle"), 2u) << "the failed combination has no point";
  EXPECT_EQ(count(svg, "class=\"ideal\""), 0u) << "no ideal known, none drawn";
  std::string csv = bench_csv(rows);
  EXPECT_EQ(count(csv, "\n"), 4u);
}

TEST(LatencyHistogram, QuantilesWithinFivePercentAndMergeAddsCounts) {
  LatencyHistogram h;
  for (int ms = 1; ms <= 1000; ++ms) h.add(ms / 1000.0);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_NEAR(h.quantile_ms(0.50), 500, 25);
  EXPECT_NEAR(h.quantile_ms(0.95), 950, 48);
  EXPECT_NEAR(h.quantile_ms(0.99), 990, 50);
  LatencyHistogram g;
  g.add(0.0);  // below the first bound: the first bucket
  g.add(1e6);  // far above the last: the last bucket
  h.merge(g);
  EXPECT_EQ(h.count(), 1002u);
  EXPECT_EQ(LatencyHistogram().quantile_ms(0.5), 0);
}

TEST(RunReport, HttpCountersAndLatencyHistogramSurviveJson) {
  RunReport r;
  r.graph = "g";
  r.elapsed_s = 2;
  r.http.requests = 10;
  r.http.attempts = 12;
  r.http.retries = 2;
  r.http.throttled = 1;
  for (int i = 0; i < 10; ++i) r.http.latency.add(0.05);
  r.cpu_s = 1.5;
  NodeReport n;
  n.id = "fetch";
  n.io = true;
  n.concurrency = 10;
  n.in_flight_mean = 5;
  n.queue_mean = 3;
  n.queue_peak = 9;
  r.nodes.push_back(n);
  RunReport back;
  ASSERT_TRUE(RunReport::from_json(r.to_json(), back));
  EXPECT_EQ(back.http.requests, 10u);
  EXPECT_EQ(back.http.attempts, 12u);
  EXPECT_EQ(back.http.throttled, 1u);
  EXPECT_EQ(back.http.latency.count(), 10u);
  EXPECT_NEAR(back.http.latency.quantile_ms(0.5), 50, 3);
  EXPECT_DOUBLE_EQ(back.cpu_s, 1.5);
  ASSERT_EQ(back.nodes.size(), 1u);
  EXPECT_TRUE(back.nodes[0].io);
  EXPECT_EQ(back.nodes[0].queue_peak, 9u);
  EXPECT_DOUBLE_EQ(back.nodes[0].utilization(back.elapsed_s, 2), 0.5)
      << "an I/O node: mean in flight / concurrency";
}

}  // namespace
}  // namespace sluice
