#include "engine/graph/prometheus.hpp"

#include <cmath>
#include <cstdio>
#include <string_view>

namespace sluice {

namespace {

// A label value with the three characters the format escapes.
std::string escaped(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 9.0e15) std::snprintf(buf, sizeof buf, "%.0f", v);
  else std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Label pairs, rendered as {a="x",b="y"}.
class Labels {
 public:
  Labels() = default;
  Labels(std::string_view name, std::string_view value) { add(name, value); }
  Labels& add(std::string_view name, std::string_view value) {
    _text += _text.empty() ? "{" : ",";
    _text.append(name);
    _text += "=\"";
    _text += escaped(value);
    _text += '"';
    return *this;
  }
  std::string text() const { return _text.empty() ? "" : _text + "}"; }

 private:
  std::string _text;
};

class Exposition {
 public:
  // Starts a family: its # HELP and # TYPE lines.
  void family(std::string_view name, const char* type, const char* help) {
    _out += "# HELP ";
    _out.append(name);
    _out += ' ';
    _out += help;
    _out += "\n# TYPE ";
    _out.append(name);
    _out += ' ';
    _out += type;
    _out += '\n';
  }
  void sample(std::string_view name, const Labels& labels, double value) {
    _out.append(name);
    _out += labels.text();
    _out += ' ';
    _out += number(value);
    _out += '\n';
  }
  // A family of one sample.
  void single(std::string_view name, const char* type, const char* help, double value) {
    family(name, type, help);
    sample(name, {}, value);
  }
  std::string take() { return std::move(_out); }

 private:
  std::string _out;
};

// Bucket bounds of the latency histogram, in seconds (the client's own 200 finer buckets are
// folded into these: a bound holds every bucket that ends at or below it).
constexpr double kLatencyBoundsS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                      0.5,   1,      2.5,   5,    10,    30,   60};

void latency_histogram(Exposition& e, const HttpReport& http) {
  const char* name = "sluice_http_attempt_duration_seconds";
  e.family(name, "histogram",
           "Duration of HTTP attempts, from handing the transfer to libcurl to its end.");
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  int next = 0;  // the first bucket of the client's histogram not yet counted
  for (double bound : kLatencyBoundsS) {
    // Bucket i ends at kMinMs * kGrowth^i milliseconds; the last one has no end.
    while (next < LatencyHistogram::kBuckets - 1 &&
           LatencyHistogram::kMinMs * std::pow(LatencyHistogram::kGrowth, next) <=
               bound * 1000.0 * (1 + 1e-9))
      cumulative += http.latency.bucket_count(next++);
    e.sample(bucket, Labels("le", number(bound)), static_cast<double>(cumulative));
  }
  e.sample(bucket, Labels("le", "+Inf"), static_cast<double>(http.latency.count()));
  e.sample(std::string(name) + "_sum", {}, http.latency_sum_s);
  e.sample(std::string(name) + "_count", {}, static_cast<double>(http.latency.count()));
}

void node_families(Exposition& e, const RunReport& r) {
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const NodeReport&, const RunReport&);
    bool io_only;
  };
  static const Family kFamilies[] = {
      {"sluice_node_records_in_total", "counter", "Records a node took in.",
       [](const NodeReport& n, const RunReport&) { return static_cast<double>(n.in); }, false},
      {"sluice_node_records_out_total", "counter", "Records a node passed on.",
       [](const NodeReport& n, const RunReport&) { return static_cast<double>(n.out); }, false},
      {"sluice_node_errors_total", "counter", "Records a node failed on (dead-lettered).",
       [](const NodeReport& n, const RunReport&) { return static_cast<double>(n.errors); }, false},
      {"sluice_node_busy_seconds_total", "counter",
       "Seconds a node's bodies ran, summed over threads (under -P, per worker on average).",
       [](const NodeReport& n, const RunReport&) { return n.busy_s; }, false},
      {"sluice_node_queue", "gauge",
       "Records waiting at a node's input, as last sampled (every 100 ms).",
       [](const NodeReport& n, const RunReport&) { return static_cast<double>(n.queue_now); },
       false},
      {"sluice_node_in_flight", "gauge", "An I/O node's requests in flight, as last sampled.",
       [](const NodeReport& n, const RunReport&) { return static_cast<double>(n.in_flight_now); },
       true},
      {"sluice_node_concurrency_limit", "gauge",
       "An I/O node's cap on requests in flight (its adaptive limit when it has one).",
       [](const NodeReport& n, const RunReport&) {
         return static_cast<double>(n.adaptive ? n.limit : n.concurrency);
       },
       true},
      {"sluice_node_utilization", "gauge",
       "Share of a node's capacity used since the start: an I/O node's mean in flight over its "
       "concurrency, a CPU node's busy time over the time its threads had.",
       [](const NodeReport& n, const RunReport& rep) {
         return n.utilization(rep.elapsed_s, rep.threads);
       },
       false},
  };
  for (const Family& f : kFamilies) {
    e.family(f.name, f.type, f.help);
    for (const NodeReport& n : r.nodes)
      if (!f.io_only || n.io)
        e.sample(f.name, Labels("node", n.id).add("type", n.type), f.value(n, r));
  }
}

}  // namespace

std::string prometheus_text(const RunReport& r, int workers) {
  Exposition e;
  e.family("sluice_info", "gauge", "The graph this process runs; always 1.");
  e.sample("sluice_info",
           Labels("graph", r.graph).add("config_hash", r.config_hash).add("shard", r.shard), 1);
  e.single("sluice_workers", "gauge", "Worker processes whose figures these are.", workers);
  e.single("sluice_threads", "gauge", "Flow-graph threads of each worker process.", r.threads);
  e.single("sluice_elapsed_seconds", "gauge", "Seconds since the run started.", r.elapsed_s);
  e.single("sluice_worker_restarts_total", "counter", "Worker processes restarted after a crash.",
           r.restarts);

  e.single("sluice_documents_admitted_total", "counter", "Source documents admitted.",
           static_cast<double>(r.docs));
  e.single("sluice_documents_skipped_total", "counter",
           "Source documents skipped: done in an earlier run (--resume).",
           static_cast<double>(r.docs_skipped_done));
  e.family("sluice_documents_total", "counter", "Documents done, by outcome.");
  e.sample("sluice_documents_total", Labels("outcome", "indexed"),
           static_cast<double>(r.docs_indexed));
  e.sample("sluice_documents_total", Labels("outcome", "filtered"),
           static_cast<double>(r.docs_filtered));
  e.sample("sluice_documents_total", Labels("outcome", "dead_lettered"),
           static_cast<double>(r.docs_dead_lettered));
  e.single("sluice_documents_in_flight", "gauge", "Documents admitted and not yet done.",
           static_cast<double>(r.inflight_docs));
  e.single("sluice_documents_lost_total", "counter",
           "Documents with a record that vanished without an outcome (a bug if ever above 0).",
           static_cast<double>(r.lost));
  e.single("sluice_chunks_total", "counter", "Records the chunkers produced.",
           static_cast<double>(r.chunks));
  e.single("sluice_records_indexed_total", "counter",
           "Records indexed (by the sink that took the most).", static_cast<double>(r.indexed));
  e.single("sluice_tokens_total", "counter", "Tokens the upstream counted (embeddings).",
           static_cast<double>(r.tokens));
  e.single("sluice_cost_usd_total", "counter", "Cost in US dollars, from the nodes' prices.",
           r.cost_usd);
  e.single("sluice_cpu_seconds_total", "counter", "User and system CPU seconds of the run.",
           r.cpu_s);
  e.single("sluice_peak_resident_memory_bytes", "gauge",
           "Peak resident memory: the largest worker's.", static_cast<double>(r.peak_rss_bytes));

  node_families(e, r);

  const HttpReport& h = r.http;
  e.single("sluice_http_requests_total", "counter",
           "HTTP requests finished, successful or not (retries are one request).",
           static_cast<double>(h.requests));
  e.single("sluice_http_attempts_total", "counter", "HTTP transfers, retries included.",
           static_cast<double>(h.attempts));
  e.family("sluice_http_responses_total", "counter",
           "HTTP attempts by the status they ended with; code=\"0\" is no response (connection, "
           "TLS or timeout).");
  for (const auto& [code, n] : h.by_status)
    e.sample("sluice_http_responses_total", Labels("code", std::to_string(code)),
             static_cast<double>(n));
  e.single("sluice_http_retries_total", "counter", "HTTP attempts that were retries.",
           static_cast<double>(h.retries));
  e.single("sluice_http_throttled_total", "counter", "HTTP 429 answers.",
           static_cast<double>(h.throttled));
  e.single("sluice_http_requests_failed_total", "counter", "HTTP requests that finally failed.",
           static_cast<double>(h.failed));
  e.family("sluice_http_rate_limit_waits_total", "counter",
           "HTTP requests that waited for a rate limit, by the limit that held them.");
  e.sample("sluice_http_rate_limit_waits_total", Labels("limit", "rpm"),
           static_cast<double>(h.rpm_waited));
  e.sample("sluice_http_rate_limit_waits_total", Labels("limit", "tpm"),
           static_cast<double>(h.tpm_waited));
  latency_histogram(e, h);
  return e.take();
}

}  // namespace sluice
