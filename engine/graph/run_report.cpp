#include "engine/graph/run_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/diagnostics.hpp"

namespace sluice {

namespace {

// How the launcher folds a worker's value into the job's.
enum class Fold { sum, max, keep, first };  // first: the first worker's non-empty value

// The one list of a report's plain fields: f(json key, member, fold). Nested parts (http, nodes,
// workers) and derived figures are handled beside it.
template <class F>
void visit_run_fields(F&& f) {
  f("graph", &RunReport::graph, Fold::keep);
  f("config_hash", &RunReport::config_hash, Fold::keep);
  f("shard", &RunReport::shard, Fold::keep);
  f("threads", &RunReport::threads, Fold::keep);
  f("docs", &RunReport::docs, Fold::sum);
  f("docs_skipped_done", &RunReport::docs_skipped_done, Fold::sum);
  f("chunks", &RunReport::chunks, Fold::sum);
  f("indexed", &RunReport::indexed, Fold::sum);
  f("filtered", &RunReport::filtered, Fold::sum);
  f("dead_lettered", &RunReport::dead_lettered, Fold::sum);
  f("lost", &RunReport::lost, Fold::sum);
  f("docs_indexed", &RunReport::docs_indexed, Fold::sum);
  f("docs_filtered", &RunReport::docs_filtered, Fold::sum);
  f("docs_dead_lettered", &RunReport::docs_dead_lettered, Fold::sum);
  f("duplicate_ids", &RunReport::duplicate_ids, Fold::sum);
  f("duplicate_id_example", &RunReport::duplicate_id_example, Fold::first);
  f("max_inflight_docs", &RunReport::max_inflight_docs, Fold::keep);
  f("peak_inflight_docs", &RunReport::peak_inflight_docs, Fold::sum);
  f("inflight_docs", &RunReport::inflight_docs, Fold::sum);
  f("elapsed_s", &RunReport::elapsed_s, Fold::keep);
  f("peak_rss_bytes", &RunReport::peak_rss_bytes, Fold::max);
  f("tokens", &RunReport::tokens, Fold::sum);
  f("cost_usd", &RunReport::cost_usd, Fold::sum);
  f("cpu_s", &RunReport::cpu_s, Fold::sum);
  f("peak_rss_total_bytes", &RunReport::peak_rss_total_bytes, Fold::keep);  // see add_worker
  f("dead_letter_file", &RunReport::dead_letter_file, Fold::first);
  f("interrupted", &RunReport::interrupted, Fold::max);
  f("restarts", &RunReport::restarts, Fold::keep);
}

template <class F>
void visit_http_fields(F&& f) {
  f("requests", &HttpReport::requests, Fold::sum);
  f("attempts", &HttpReport::attempts, Fold::sum);
  f("retries", &HttpReport::retries, Fold::sum);
  f("throttled", &HttpReport::throttled, Fold::sum);
  f("failed", &HttpReport::failed, Fold::sum);
  f("rpm_waited", &HttpReport::rpm_waited, Fold::sum);
  f("tpm_waited", &HttpReport::tpm_waited, Fold::sum);
  f("loop_cpu_s", &HttpReport::loop_cpu_s, Fold::sum);
  f("latency_sum_s", &HttpReport::latency_sum_s, Fold::sum);
}

// An I/O node's concurrency is its share of the job's cap: the launcher sums it (see add_worker).
template <class F>
void visit_node_fields(F&& f) {
  f("id", &NodeReport::id, Fold::keep);
  f("type", &NodeReport::type, Fold::keep);
  f("concurrency", &NodeReport::concurrency, Fold::keep);
  f("in", &NodeReport::in, Fold::sum);
  f("out", &NodeReport::out, Fold::sum);
  f("docs_out", &NodeReport::docs_out, Fold::sum);
  f("errors", &NodeReport::errors, Fold::sum);
  f("busy_s", &NodeReport::busy_s, Fold::sum);
  f("tokens", &NodeReport::tokens, Fold::sum);
  f("cost_usd", &NodeReport::cost_usd, Fold::sum);
  f("io", &NodeReport::io, Fold::keep);
  f("queue_mean", &NodeReport::queue_mean, Fold::sum);
  f("queue_peak", &NodeReport::queue_peak, Fold::sum);
  f("in_flight_mean", &NodeReport::in_flight_mean, Fold::sum);
  f("in_flight_peak", &NodeReport::in_flight_peak, Fold::sum);
  f("queue_now", &NodeReport::queue_now, Fold::sum);
  f("in_flight_now", &NodeReport::in_flight_now, Fold::sum);
  f("adaptive", &NodeReport::adaptive, Fold::keep);
  f("limit", &NodeReport::limit, Fold::sum);
  f("limit_peak", &NodeReport::limit_peak, Fold::sum);
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// Writes one field of any listed type.
template <class T>
void write_value(Writer& w, const char* key, const T& v) {
  w.Key(key);
  if constexpr (std::is_same_v<T, std::string>)
    w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
  else if constexpr (std::is_same_v<T, bool>) w.Bool(v);
  else if constexpr (std::is_same_v<T, double>) w.Double(v);
  else if constexpr (std::is_signed_v<T>) w.Int64(v);
  else w.Uint64(v);
}

// Reads one field; a missing or mistyped one reads as its zero value.
template <class T>
void read_value(const rapidjson::Value& o, const char* key, T& v) {
  v = T{};
  auto it = o.FindMember(key);
  if (it == o.MemberEnd()) return;
  const auto& j = it->value;
  if constexpr (std::is_same_v<T, std::string>) {
    if (j.IsString()) v.assign(j.GetString(), j.GetStringLength());
  } else if constexpr (std::is_same_v<T, bool>) {
    v = j.IsBool() && j.GetBool();
  } else if constexpr (std::is_same_v<T, double>) {
    if (j.IsNumber()) v = j.GetDouble();
  } else {
    if (j.IsInt64()) v = static_cast<T>(j.GetInt64());
    else if (j.IsUint64()) v = static_cast<T>(j.GetUint64());
    else if (j.IsNumber()) v = static_cast<T>(j.GetDouble());
  }
}

template <class T>
void fold(T& into, const T& from, Fold how) {
  if constexpr (!std::is_same_v<T, std::string>) {
    if (how == Fold::sum) into += from;
    else if (how == Fold::max) into = std::max(into, from);
  } else {
    if (how == Fold::first && into.empty()) into = from;
  }
}

// Writes, reads and folds a report's listed fields.
template <class Report>
struct WriteFields {
  const Report& r;
  Writer& w;
  template <class T>
  void operator()(const char* key, T Report::*m, Fold) const {
    write_value(w, key, r.*m);
  }
};

template <class Report>
struct ReadFields {
  Report& r;
  const rapidjson::Value& o;
  template <class T>
  void operator()(const char* key, T Report::*m, Fold) const {
    read_value(o, key, r.*m);
  }
};

template <class Report>
struct FoldFields {
  Report& into;
  const Report& from;
  template <class T>
  void operator()(const char*, T Report::*m, Fold how) const {
    fold(into.*m, from.*m, how);
  }
};

void write_reasons(Writer& w, const std::vector<ReasonCount>& reasons) {
  w.Key("dead_letter_reasons");
  w.StartArray();
  for (const auto& r : reasons) {
    w.StartObject();
    write_value(w, "node", r.node);
    write_value(w, "reason", r.reason);
    write_value(w, "count", r.count);
    w.EndObject();
  }
  w.EndArray();
}

std::string with_commas(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

}  // namespace

void sort_reasons(std::vector<ReasonCount>& reasons) {
  std::sort(reasons.begin(), reasons.end(), [](const ReasonCount& a, const ReasonCount& b) {
    if (a.count != b.count) return a.count > b.count;
    return a.node != b.node ? a.node < b.node : a.reason < b.reason;
  });
}

void RunReport::judge_dead_letters(double max_ratio) {
  if (interrupted || !error.empty() || docs == 0) return;
  const double ratio = static_cast<double>(docs_dead_lettered) / static_cast<double>(docs);
  if (docs_dead_lettered < docs && ratio <= max_ratio) return;
  char pct[32], bound[32];
  std::snprintf(pct, sizeof pct, "%.1f%%", 100.0 * ratio);
  std::snprintf(bound, sizeof bound, "%g", max_ratio);
  error = docs_dead_lettered == docs
              ? "every document (" + with_commas(docs) + ") was dead-lettered"
              : with_commas(docs_dead_lettered) + " of " + with_commas(docs) + " documents (" +
                    pct + ") were dead-lettered, more than settings.max_dead_letter_ratio " + bound;
  if (!dead_letter_reasons.empty())
    error += "; the most frequent reason: " + dead_letter_reasons.front().reason + " (node \"" +
             dead_letter_reasons.front().node + "\")";
  if (!dead_letter_file.empty()) error += "; each is in " + dead_letter_file;
}

const NodeReport* RunReport::expander() const {
  const NodeReport* last = nullptr;
  for (const auto& n : nodes)
    if (n.docs_out > 0) last = &n;
  return last;
}

std::string RunReport::source_unit() const {
  if (!expander()) return "docs";
  const NodeReport* source = nullptr;
  for (const auto& n : nodes)
    if (n.role == NodeRole::source) {
      if (source) return "docs";
      source = &n;
    }
  return source ? source->id : "docs";
}

void HttpReport::merge(const HttpReport& other) {
  visit_http_fields(FoldFields<HttpReport>{*this, other});
  latency.merge(other.latency);
  for (const auto& [code, n] : other.by_status) add_status(code, n);
}

void HttpReport::add_status(int code, uint64_t n) {
  auto it = std::lower_bound(by_status.begin(), by_status.end(), code,
                             [](const auto& e, int c) { return e.first < c; });
  if (it != by_status.end() && it->first == code) it->second += n;
  else by_status.insert(it, {code, n});
}

double NodeReport::utilization(double elapsed, int threads) const {
  if (elapsed <= 0) return 0;
  if (io) return concurrency > 0 ? in_flight_mean / concurrency : 0;
  int lanes = concurrency > 0 ? std::min(concurrency, std::max(1, threads)) : std::max(1, threads);
  return busy_s / elapsed / lanes;
}

int RunReport::exit_code() const {
  if (interrupted) return 130;
  if (!error.empty() || lost > 0) return 1;
  return 0;
}

std::string RunReport::to_json() const {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  visit_run_fields(WriteFields<RunReport>{*this, w});
  w.Key("docs_per_s");
  w.Double(docs_per_s());
  w.Key("cpu_ms_per_doc");
  w.Double(docs > 0 ? 1000.0 * cpu_s / static_cast<double>(docs) : 0);
  w.Key("error");
  if (error.empty()) w.Null();
  else w.String(error.c_str(), static_cast<rapidjson::SizeType>(error.size()));

  w.Key("http");
  w.StartObject();
  visit_http_fields(WriteFields<HttpReport>{http, w});
  w.Key("requests_per_s");
  w.Double(elapsed_s > 0 ? static_cast<double>(http.requests) / elapsed_s : 0);
  w.Key("loop_cpu_us_per_request");
  w.Double(http.loop_cpu_us_per_request());
  w.Key("latency_ms");
  w.StartObject();
  w.Key("p50");
  w.Double(http.latency.quantile_ms(0.50));
  w.Key("p95");
  w.Double(http.latency.quantile_ms(0.95));
  w.Key("p99");
  w.Double(http.latency.quantile_ms(0.99));
  w.EndObject();
  w.Key("latency_histogram");
  std::string hist = http.latency.to_json();
  w.RawValue(hist.data(), hist.size(), rapidjson::kArrayType);
  w.Key("by_status");
  w.StartObject();
  for (const auto& [code, n] : http.by_status) {
    std::string key = std::to_string(code);
    w.Key(key.c_str(), static_cast<rapidjson::SizeType>(key.size()));
    w.Uint64(n);
  }
  w.EndObject();
  w.EndObject();

  if (!workers_json.empty()) {
    w.Key("workers");
    w.StartArray();
    for (const auto& wj : workers_json) w.RawValue(wj.data(), wj.size(), rapidjson::kObjectType);
    w.EndArray();
  }
  write_reasons(w, dead_letter_reasons);
  w.Key("warnings");
  w.StartArray();
  for (const auto& s : warnings) w.String(s.c_str(), static_cast<rapidjson::SizeType>(s.size()));
  w.EndArray();
  w.Key("nodes");
  w.StartArray();
  for (const auto& n : nodes) {
    w.StartObject();
    visit_node_fields(WriteFields<NodeReport>{n, w});
    w.Key("role");
    w.String(role_name(n.role));
    w.Key("utilization");
    w.Double(n.utilization(elapsed_s, threads));
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize()) + "\n";
}

bool RunReport::from_json(std::string_view text, RunReport& r) {
  rapidjson::Document d;
  d.Parse(text.data(), text.size());
  if (d.HasParseError() || !d.IsObject()) return false;
  visit_run_fields(ReadFields<RunReport>{r, d});
  read_value(d, "error", r.error);
  r.http = HttpReport();
  if (auto h = d.FindMember("http"); h != d.MemberEnd() && h->value.IsObject()) {
    const auto& o = h->value;
    visit_http_fields(ReadFields<HttpReport>{r.http, o});
    if (auto lh = o.FindMember("latency_histogram"); lh != o.MemberEnd() && lh->value.IsArray())
      for (const auto& b : lh->value.GetArray())
        if (b.IsArray() && b.Size() == 2 && b[0].IsInt() && b[1].IsUint64())
          r.http.latency.add_bucket(b[0].GetInt(), b[1].GetUint64());
    if (auto bs = o.FindMember("by_status"); bs != o.MemberEnd() && bs->value.IsObject()) {
      for (const auto& m : bs->value.GetObject()) {
        char* end = nullptr;
        long code = std::strtol(m.name.GetString(), &end, 10);
        if (end == m.name.GetString() || *end != '\0' || code < 0 || code >= 1000 ||
            !m.value.IsUint64())
          continue;
        r.http.add_status(static_cast<int>(code), m.value.GetUint64());
      }
    }
  }
  r.dead_letter_reasons.clear();
  if (auto a = d.FindMember("dead_letter_reasons"); a != d.MemberEnd() && a->value.IsArray())
    for (const auto& o : a->value.GetArray()) {
      if (!o.IsObject()) continue;
      ReasonCount rc;
      read_value(o, "node", rc.node);
      read_value(o, "reason", rc.reason);
      read_value(o, "count", rc.count);
      r.dead_letter_reasons.push_back(std::move(rc));
    }
  r.warnings.clear();
  if (auto a = d.FindMember("warnings"); a != d.MemberEnd() && a->value.IsArray())
    for (const auto& s : a->value.GetArray())
      if (s.IsString()) r.warnings.emplace_back(s.GetString(), s.GetStringLength());
  r.nodes.clear();
  if (auto n = d.FindMember("nodes"); n != d.MemberEnd() && n->value.IsArray()) {
    for (const auto& o : n->value.GetArray()) {
      if (!o.IsObject()) continue;
      NodeReport nr;
      visit_node_fields(ReadFields<NodeReport>{nr, o});
      std::string role;
      read_value(o, "role", role);
      for (NodeRole cand : {NodeRole::source, NodeRole::transform, NodeRole::chunker,
                            NodeRole::embedder, NodeRole::sink})
        if (role == role_name(cand)) nr.role = cand;
      r.nodes.push_back(std::move(nr));
    }
  }
  return true;
}

void RunReport::add_worker(const RunReport& worker) {
  visit_run_fields(FoldFields<RunReport>{*this, worker});
  peak_rss_total_bytes += worker.peak_rss_bytes;
  http.merge(worker.http);
  for (const auto& rc : worker.dead_letter_reasons) {
    auto it = std::find_if(
        dead_letter_reasons.begin(), dead_letter_reasons.end(),
        [&](const ReasonCount& x) { return x.node == rc.node && x.reason == rc.reason; });
    if (it != dead_letter_reasons.end()) it->count += rc.count;
    else dead_letter_reasons.push_back(rc);
  }
  sort_reasons(dead_letter_reasons);
  for (const auto& wn : worker.warnings)
    if (std::find(warnings.begin(), warnings.end(), wn) == warnings.end()) warnings.push_back(wn);
  if (nodes.empty()) {
    nodes = worker.nodes;
    return;
  }
  for (size_t i = 0; i < nodes.size() && i < worker.nodes.size(); ++i) {
    visit_node_fields(FoldFields<NodeReport>{nodes[i], worker.nodes[i]});
    // An I/O node's cap is split among the workers: the job's cap is their sum.
    if (nodes[i].io) nodes[i].concurrency += worker.nodes[i].concurrency;
  }
}

std::vector<std::string> RunReport::binding_limits() const {
  std::vector<std::string> out;
  if (elapsed_s <= 0 || docs == 0) return out;
  char buf[512];
  const double attempts = static_cast<double>(std::max<uint64_t>(1, http.attempts));
  const double ok_per_min =
      60.0 * static_cast<double>(http.requests - std::min(http.requests, http.failed)) / elapsed_s;
  if (http.rpm_waited >= 0.2 * attempts) {
    std::snprintf(buf, sizeof buf,
                  "the rpm limit: %.0f%% of requests waited for it (%.0f requests/min done); "
                  "raise \"rpm\" only if the upstream's quota allows more",
                  100.0 * static_cast<double>(http.rpm_waited) / attempts, ok_per_min);
    out.emplace_back(buf);
  }
  if (http.tpm_waited >= 0.2 * attempts) {
    std::snprintf(buf, sizeof buf,
                  "the tpm limit: %.0f%% of requests waited for it; raise \"tpm\" only if the "
                  "upstream's quota allows more",
                  100.0 * static_cast<double>(http.tpm_waited) / attempts);
    out.emplace_back(buf);
  }
  if (http.throttled > 0.02 * attempts) {
    // Two significant digits, rounded down: a pace the upstream just showed it accepts.
    double rpm = ok_per_min;
    double scale = 1;
    while (rpm >= 100) {
      rpm /= 10;
      scale *= 10;
    }
    rpm = std::floor(rpm) * scale;
    std::snprintf(buf, sizeof buf,
                  "the upstream's rate limit: %.0f%% of requests were answered 429; %s \"rpm\" "
                  "to about %.0f (what it accepted in this run)",
                  100.0 * static_cast<double>(http.throttled) / attempts,
                  http.rpm_waited > 0 ? "lower" : "set", rpm);
    out.emplace_back(buf);
  }
  for (const auto& n : nodes) {
    if (!n.io || n.concurrency <= 0 || n.queue_mean < 1) continue;
    const double used = n.in_flight_mean / n.concurrency;
    if (used >= 0.95) {
      std::snprintf(buf, sizeof buf,
                    "node \"%s\" (%s): %.0f%% of its %s%d requests in flight used, %.0f records "
                    "queued behind it on average; %s",
                    n.id.c_str(), n.type.c_str(), 100.0 * used,
                    n.adaptive ? "adaptive ceiling " : "", n.concurrency, n.queue_mean,
                    n.adaptive ? "raise it (\"concurrency\": \"adaptive:N\")"
                               : "raise its \"concurrency\", or remove it to let the node adapt");
      out.emplace_back(buf);
    } else if (n.adaptive && n.limit_peak > 0 && n.in_flight_mean >= 0.5 * n.limit_peak) {
      std::snprintf(buf, sizeof buf,
                    "node \"%s\" (%s): the upstream's capacity: it kept %.1f requests in flight "
                    "(adaptive limit %d at the end, %d at its peak, ceiling %d) because round "
                    "trips rose or the upstream pushed back beyond that, %.0f records queued",
                    n.id.c_str(), n.type.c_str(), n.in_flight_mean, n.limit, n.limit_peak,
                    n.concurrency, n.queue_mean);
      out.emplace_back(buf);
    }
  }
  const double processes = static_cast<double>(std::max<size_t>(1, workers_json.size()));
  const double usable = std::max(1, threads) * processes;
  const double cores_busy = cpu_s / elapsed_s;
  if (cores_busy >= 0.85 * usable) {
    const NodeReport* busiest = nullptr;
    for (const auto& n : nodes)
      if (!n.io && (!busiest || n.busy_s > busiest->busy_s)) busiest = &n;
    std::snprintf(buf, sizeof buf,
                  "CPU: %.1f cores busy of %.0f threads%s%s%s; more threads or processes (-P) "
                  "help if the machine has the cores",
                  cores_busy, usable, busiest ? " (busiest node: \"" : "",
                  busiest ? busiest->id.c_str() : "", busiest ? "\")" : "");
    out.emplace_back(buf);
  }
  if (out.empty() && max_inflight_docs > 0 &&
      static_cast<double>(peak_inflight_docs) >= 0.95 * max_inflight_docs * processes) {
    bool queued = false;
    for (const auto& n : nodes) queued = queued || n.queue_mean >= 1;
    if (!queued) {
      std::snprintf(buf, sizeof buf,
                    "settings.max_inflight_docs: %d documents in flight%s, with no node queued; "
                    "raise it (memory grows with it)",
                    max_inflight_docs, processes > 1 ? " per process" : "");
      out.emplace_back(buf);
    }
  }
  return out;
}

std::string RunReport::table() const {
  std::string out;
  char line[512];
  size_t idw = 4, tw = 4;
  for (const auto& n : nodes) {
    idw = std::max(idw, n.id.size());
    tw = std::max(tw, n.type.size());
  }
  std::snprintf(line, sizeof line, "%-*s  %-*s  %10s  %10s  %7s  %9s  %5s  %8s\n", int(idw), "node",
                int(tw), "type", "in", "out", "errors", "busy_s", "util", "queue");
  out += line;
  for (const auto& n : nodes) {
    std::snprintf(line, sizeof line, "%-*s  %-*s  %10llu  %10llu  %7llu  %9.3f  %4.0f%%  %8.1f\n",
                  int(idw), n.id.c_str(), int(tw), n.type.c_str(),
                  static_cast<unsigned long long>(n.in), static_cast<unsigned long long>(n.out),
                  static_cast<unsigned long long>(n.errors), n.busy_s,
                  100.0 * n.utilization(elapsed_s, threads), n.queue_mean);
    out += line;
  }
  std::string limits;
  for (const auto& n : nodes)
    if (n.adaptive)
      limits += (limits.empty() ? "" : ", ") + n.id + " " + std::to_string(n.limit) + " (peak " +
                std::to_string(n.limit_peak) + " of " + std::to_string(n.concurrency) + ")";
  if (!limits.empty())
    out += "adaptive concurrency, requests in flight at the end: " + limits + "\n";
  // Source items that expand into documents: "books 950 (...)  sections 3,400  chunks ...".
  const NodeReport* exp = expander();
  const std::string unit = source_unit();
  const std::string expanded = exp ? "  " + exp->id + " " + with_commas(exp->docs_out) : "";
  std::snprintf(
      line, sizeof line,
      "%s %llu (indexed %llu, filtered %llu, dead-lettered %llu)%s  chunks %llu  lost %llu\n",
      unit.c_str(), static_cast<unsigned long long>(docs),
      static_cast<unsigned long long>(docs_indexed), static_cast<unsigned long long>(docs_filtered),
      static_cast<unsigned long long>(docs_dead_lettered), expanded.c_str(),
      static_cast<unsigned long long>(chunks), static_cast<unsigned long long>(lost));
  out += line;
  std::string sinks;
  int nsinks = 0;
  for (const auto& n : nodes)
    if (n.role == NodeRole::sink) {
      ++nsinks;
      sinks += (sinks.empty() ? "" : ", ") + n.id + " " + with_commas(n.out);
    }
  if (nsinks > 1) out += "records indexed per sink: " + sinks + "\n";
  if (dead_lettered > 0) {
    out += "dead-lettered " + with_commas(dead_lettered) + " records";
    out += dead_letter_file.empty() ? "" : ", each with its reason in " + dead_letter_file;
    out += "; the most frequent reasons:\n";
    for (size_t i = 0; i < dead_letter_reasons.size() && i < 5; ++i) {
      const auto& rc = dead_letter_reasons[i];
      std::snprintf(line, sizeof line, "  %10s  %s: %s\n", with_commas(rc.count).c_str(),
                    escape_controls(rc.node).c_str(), escape_controls(rc.reason).c_str());
      out += line;
    }
  }
  for (const auto& wn : warnings) out += "warning: " + escape_controls(wn) + "\n";
  if (duplicate_ids > 0) {
    out += "duplicate ids " + std::to_string(duplicate_ids) +
           ": records with an id already written in this run were dropped, the first of each "
           "kept (e.g. \"" +
           escape_controls(duplicate_id_example) + "\")\n";
  }
  // Under -P the peaks are summed over the processes, each bounded by max_inflight_docs.
  const std::string procs = workers_json.size() > 1
                                ? " in total over " + std::to_string(workers_json.size()) +
                                      " processes of at most " + std::to_string(max_inflight_docs)
                                : "";
  char exp_rate[96] = "";
  if (exp)
    std::snprintf(exp_rate, sizeof exp_rate, "  %.1f %s/s",
                  elapsed_s > 0 ? exp->docs_out / elapsed_s : 0.0, exp->id.c_str());
  std::snprintf(line, sizeof line,
                "elapsed %.2f s  %.1f %s/s%s  peak RSS %.1f MiB  threads %d  peak in flight "
                "%lld%s\n",
                elapsed_s, docs_per_s(), unit.c_str(), exp_rate, peak_rss_bytes / 1048576.0,
                threads, static_cast<long long>(peak_inflight_docs),
                procs.empty() ? ("/" + std::to_string(max_inflight_docs)).c_str() : procs.c_str());
  out += line;
  std::snprintf(line, sizeof line, "cpu %.2f s (%.2f ms/doc)\n", cpu_s,
                docs > 0 ? 1000.0 * cpu_s / static_cast<double>(docs) : 0.0);
  out += line;
  if (http.requests > 0) {
    std::snprintf(line, sizeof line,
                  "http %llu requests (%.1f/s)  retries %llu  429s %llu  failed %llu  latency p50 "
                  "%.1f ms  p95 %.1f ms  "
                  "p99 %.1f ms  loop cpu %.2f s (%.0f us/request)\n",
                  static_cast<unsigned long long>(http.requests),
                  elapsed_s > 0 ? http.requests / elapsed_s : 0.0,
                  static_cast<unsigned long long>(http.retries),
                  static_cast<unsigned long long>(http.throttled),
                  static_cast<unsigned long long>(http.failed), http.latency.quantile_ms(0.5),
                  http.latency.quantile_ms(0.95), http.latency.quantile_ms(0.99), http.loop_cpu_s,
                  http.loop_cpu_us_per_request());
    out += line;
  }
  if (tokens > 0) {
    std::snprintf(line, sizeof line, "tokens %llu  cost $%.4f\n",
                  static_cast<unsigned long long>(tokens), cost_usd);
    out += line;
  }
  if (docs_skipped_done > 0) {
    std::snprintf(line, sizeof line, "skipped %llu documents done in an earlier run (--resume)\n",
                  static_cast<unsigned long long>(docs_skipped_done));
    out += line;
  }
  if (restarts > 0) out += "worker restarts " + std::to_string(restarts) + "\n";
  for (const auto& b : binding_limits()) out += "bound by " + b + "\n";
  if (interrupted)
    out += "interrupted: in-flight work was drained; run again with --resume to finish\n";
  if (!error.empty()) out += "error: " + error + "\n";
  return out;
}

}  // namespace sluice
