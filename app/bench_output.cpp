// `sluice bench`'s output files: results.csv, the runs in results.json, throughput.svg.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "app/bench.hpp"
#include "app/bench_internal.hpp"
#include "engine/json/json.hpp"

namespace sluice {

using namespace bench_detail;

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + "\"";
}

std::string num(double v, const char* f = "%.6g") { return std::isfinite(v) ? fmt(f, v) : ""; }

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default:
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n')
          o += c;  // XML 1.0 forbids the rest
    }
  }
  return o;
}

// 1, 2, 5 x 10^k steps giving about `n` ticks up to `top`.
double nice_step(double top, int n) {
  double raw = top / n;
  double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

}  // namespace

namespace bench_detail {

std::string run_json(const BenchRun& r) {
  std::string j =
      "{\"exit_code\":" + std::to_string(r.exit_code) + ",\"cpu_s\":" + num(r.cpu_s) +
      ",\"failure\":" + (r.failure.empty() ? std::string("null") : json::quoted(r.failure)) +
      ",\"report\":";
  if (r.report.graph.empty()) {
    j += "null";
  } else {
    std::string rep = r.report.to_json();
    while (!rep.empty() && rep.back() == '\n') rep.pop_back();
    j += rep;
  }
  return j + "}";
}

std::vector<std::string> csv_values(const BenchRow& row) {
  std::vector<std::string> v = {
      std::to_string(row.threads), std::to_string(row.processes),
      std::to_string(row.runs.size() - static_cast<size_t>(row.failed_runs))};
  const BenchRun* m = median_run(row);
  if (!m) {
    v.resize(bench_csv_columns().size());
    v[bench_csv_columns().size() - 1] = std::to_string(row.failed_runs);
    v[bench_csv_columns().size() - 4] = "failed";
    return v;
  }
  const RunReport& r = m->report;
  const double el = r.elapsed_s;
  const double docs = static_cast<double>(r.docs);
  auto add = [&](const std::string& s) { v.push_back(s); };
  add(std::to_string(r.docs));
  add(std::to_string(r.chunks));
  add(num(el, "%.4f"));
  add(num(r.docs_per_s(), "%.2f"));
  add(num(row.docs_per_s_min, "%.2f"));
  add(num(row.docs_per_s_max, "%.2f"));
  add(num(per_s(static_cast<double>(r.chunks), el), "%.2f"));
  add(num(per_s(static_cast<double>(r.http.requests), el), "%.2f"));
  add(r.http.requests ? num(r.http.latency.quantile_ms(0.50), "%.2f") : "");
  add(r.http.requests ? num(r.http.latency.quantile_ms(0.95), "%.2f") : "");
  add(r.http.requests ? num(r.http.latency.quantile_ms(0.99), "%.2f") : "");
  add(num(docs > 0 ? 1000 * m->cpu_s / docs : 0, "%.4f"));
  add(num(per_s(m->cpu_s, el), "%.3f"));
  add(num(r.peak_rss_bytes / 1048576.0, "%.1f"));
  add(num(r.peak_rss_total_bytes / 1048576.0, "%.1f"));
  add(std::to_string(r.http.retries));
  add(std::to_string(r.http.throttled));
  add(std::to_string(r.lost));
  add(std::to_string(r.dead_lettered));
  add(row.ideal_docs_per_s > 0 ? num(row.ideal_docs_per_s, "%.2f") : "");
  add(row.ideal_docs_per_s > 0 ? num(r.docs_per_s() / row.ideal_docs_per_s, "%.3f") : "");
  add(row.ideal_from);
  add(row.bottleneck);
  add(row.busiest_node);
  add(num(row.busiest_utilization, "%.3f"));
  add(std::to_string(row.failed_runs));
  return v;
}

}  // namespace bench_detail

const std::vector<std::string>& bench_csv_columns() {
  static const std::vector<std::string> cols = {"threads",
                                                "processes",
                                                "runs",
                                                "docs",
                                                "chunks",
                                                "elapsed_s",
                                                "docs_per_s",
                                                "docs_per_s_min",
                                                "docs_per_s_max",
                                                "chunks_per_s",
                                                "requests_per_s",
                                                "latency_p50_ms",
                                                "latency_p95_ms",
                                                "latency_p99_ms",
                                                "cpu_ms_per_doc",
                                                "cores_busy",
                                                "peak_rss_mib",
                                                "peak_rss_total_mib",
                                                "retries",
                                                "throttled_429",
                                                "lost",
                                                "dead_lettered",
                                                "ideal_docs_per_s",
                                                "ratio_to_ideal",
                                                "ideal_from",
                                                "bottleneck",
                                                "busiest_node",
                                                "busiest_utilization",
                                                "failed_runs"};
  return cols;
}

std::string bench_csv(const std::vector<BenchRow>& rows) {
  std::string out;
  const auto& cols = bench_csv_columns();
  for (size_t i = 0; i < cols.size(); ++i) out += (i ? "," : "") + cols[i];
  out += '\n';
  for (const auto& row : rows) {
    auto v = csv_values(row);
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ',';
      out += csv_field(v[i]);
    }
    out += '\n';
  }
  return out;
}

std::string bench_svg(const std::string& title, const std::vector<BenchRow>& rows) {
  // X: the thread counts, evenly spaced; one series per process count.
  std::vector<int> xs, ps;
  for (const auto& r : rows) {
    if (std::find(xs.begin(), xs.end(), r.threads) == xs.end()) xs.push_back(r.threads);
    if (std::find(ps.begin(), ps.end(), r.processes) == ps.end()) ps.push_back(r.processes);
  }
  std::sort(xs.begin(), xs.end());
  std::sort(ps.begin(), ps.end());
  double top = 0;
  for (const auto& r : rows) top = std::max({top, r.docs_per_s_max, r.ideal_docs_per_s});
  if (top <= 0) top = 1;
  const double step = nice_step(top * 1.05, 6);
  top = std::ceil(top * 1.05 / step) * step;

  const int W = 760, H = 460, L = 80, R = 170, T = 50, B = 60;
  const int pw = W - L - R, ph = H - T - B;
  auto X = [&](int threads) {
    size_t i = static_cast<size_t>(std::find(xs.begin(), xs.end(), threads) - xs.begin());
    return xs.size() == 1 ? L + pw / 2.0
                          : L + pw * (0.05 + 0.9 * static_cast<double>(i) / (xs.size() - 1));
  };
  auto Y = [&](double v) { return T + ph * (1 - v / top); };
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                 "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

  std::string s;
  auto add = [&](const std::string& x) { s += x; };
  add("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  add("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(W) + "\" height=\"" +
      std::to_string(H) + "\" viewBox=\"0 0 " + std::to_string(W) + " " + std::to_string(H) +
      "\" font-family=\"sans-serif\" font-size=\"12\">\n");
  add("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
  add("<text x=\"" + std::to_string(W / 2) +
      "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" + xml_escape(title) + "</text>\n");
  // Grid and axes.
  for (double v = 0; v <= top + step / 2; v += step) {
    std::string y = num(Y(v), "%.1f");
    add("<line x1=\"" + std::to_string(L) + "\" y1=\"" + y + "\" x2=\"" + std::to_string(L + pw) +
        "\" y2=\"" + y + "\" stroke=\"#e5e5e5\"/>\n");
    add("<text x=\"" + std::to_string(L - 6) + "\" y=\"" + y +
        "\" text-anchor=\"end\" dominant-baseline=\"middle\">" + num(v, "%.0f") + "</text>\n");
  }
  add("<line x1=\"" + std::to_string(L) + "\" y1=\"" + std::to_string(T + ph) + "\" x2=\"" +
      std::to_string(L + pw) + "\" y2=\"" + std::to_string(T + ph) + "\" stroke=\"black\"/>\n");
  add("<line x1=\"" + std::to_string(L) + "\" y1=\"" + std::to_string(T) + "\" x2=\"" +
      std::to_string(L) + "\" y2=\"" + std::to_string(T + ph) + "\" stroke=\"black\"/>\n");
  for (int x : xs)
    add("<text x=\"" + num(X(x), "%.1f") + "\" y=\"" + std::to_string(T + ph + 18) +
        "\" text-anchor=\"middle\">" + std::to_string(x) + "</text>\n");
  add("<text x=\"" + std::to_string(L + pw / 2) + "\" y=\"" + std::to_string(H - 16) +
      "\" text-anchor=\"middle\">threads per process</text>\n");
  add("<text transform=\"translate(20," + std::to_string(T + ph / 2) +
      ") rotate(-90)\" text-anchor=\"middle\">documents per second</text>\n");

  bool any_ideal = false;
  for (size_t pi = 0; pi < ps.size(); ++pi) {
    const char* c = colors[pi % 8];
    std::string pts, ideal_pts;
    for (const auto& r : rows) {
      if (r.processes != ps[pi]) continue;
      const BenchRun* m = median_run(r);
      if (r.ideal_docs_per_s > 0)
        ideal_pts += num(X(r.threads), "%.1f") + "," + num(Y(r.ideal_docs_per_s), "%.1f") + " ";
      if (!m) continue;
      std::string x = num(X(r.threads), "%.1f");
      pts += x + "," + num(Y(m->report.docs_per_s()), "%.1f") + " ";
      // Error bar: min to max of the measured runs.
      add("<line class=\"errorbar\" x1=\"" + x + "\" y1=\"" + num(Y(r.docs_per_s_min), "%.1f") +
          "\" x2=\"" + x + "\" y2=\"" + num(Y(r.docs_per_s_max), "%.1f") + "\" stroke=\"" + c +
          "\" stroke-width=\"1.5\"/>\n");
      for (double v : {r.docs_per_s_min, r.docs_per_s_max})
        add("<line x1=\"" + num(X(r.threads) - 5, "%.1f") + "\" y1=\"" + num(Y(v), "%.1f") +
            "\" x2=\"" + num(X(r.threads) + 5, "%.1f") + "\" y2=\"" + num(Y(v), "%.1f") +
            "\" stroke=\"" + c + "\"/>\n");
      add("<circle cx=\"" + x + "\" cy=\"" + num(Y(m->report.docs_per_s()), "%.1f") +
          "\" r=\"3.5\" fill=\"" + c + "\"/>\n");
    }
    if (!ideal_pts.empty()) {
      any_ideal = true;
      ideal_pts.pop_back();
      add("<polyline class=\"ideal\" data-processes=\"" + std::to_string(ps[pi]) + "\" points=\"" +
          ideal_pts + "\" fill=\"none\" stroke=\"" + c +
          "\" stroke-opacity=\"0.6\" stroke-dasharray=\"6,4\"/>\n");
    }
    if (!pts.empty()) pts.pop_back();
    add("<polyline class=\"series\" data-processes=\"" + std::to_string(ps[pi]) + "\" points=\"" +
        pts + "\" fill=\"none\" stroke=\"" + c + "\" stroke-width=\"2\"/>\n");
    int ly = T + 10 + static_cast<int>(pi) * 20;
    add("<line x1=\"" + std::to_string(L + pw + 16) + "\" y1=\"" + std::to_string(ly) + "\" x2=\"" +
        std::to_string(L + pw + 40) + "\" y2=\"" + std::to_string(ly) + "\" stroke=\"" + c +
        "\" stroke-width=\"2\"/>\n");
    add("<text x=\"" + std::to_string(L + pw + 46) + "\" y=\"" + std::to_string(ly) +
        "\" dominant-baseline=\"middle\">" + std::to_string(ps[pi]) +
        (ps[pi] == 1 ? " process" : " processes") + "</text>\n");
  }
  int ly = T + 10 + static_cast<int>(ps.size()) * 20;
  if (any_ideal) {
    add("<line x1=\"" + std::to_string(L + pw + 16) + "\" y1=\"" + std::to_string(ly) + "\" x2=\"" +
        std::to_string(L + pw + 40) + "\" y2=\"" + std::to_string(ly) +
        "\" stroke=\"#555\" stroke-dasharray=\"6,4\"/>\n");
    add("<text x=\"" + std::to_string(L + pw + 46) + "\" y=\"" + std::to_string(ly) +
        "\" dominant-baseline=\"middle\">ideal</text>\n");
    ly += 20;
  }
  add("<text x=\"" + std::to_string(L + pw + 16) + "\" y=\"" + std::to_string(ly) +
      "\" dominant-baseline=\"middle\" fill=\"#555\">bars: min-max</text>\n");
  add("</svg>\n");
  return s;
}

}  // namespace sluice
