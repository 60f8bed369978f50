#include "app/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace sluice {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// One I/O node's demand per document and its limits for the whole job.
struct IoStage {
  std::string node;
  std::string what = "requests";
  double requests_per_doc = 0;
  double tokens_per_doc = 0;
  double cost_per_doc = 0;
  int concurrency = 0;  // 0 = unlimited
  double rpm = 0, tpm = 0;
  bool listing =
      false;  // source.http_list: every process pages the whole listing, one page at a time
  double per_page = 1;
};

std::string fmt_duration(double s) {
  char buf[32];
  if (!std::isfinite(s)) return "never";
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0f s", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%.0f min", s / 60);
  else if (s < 48 * 3600) std::snprintf(buf, sizeof buf, "%.1f h", s / 3600);
  else std::snprintf(buf, sizeof buf, "%.1f days", s / 86400);
  return buf;
}

// Each node's own cost model (NodeTypeInfo::cost), walked in graph order: chunkers set what the
// nodes after them receive; I/O nodes become stages with their limits.
std::vector<IoStage> io_stages(const GraphSpec& spec, const PlanInput& in, double& chunks_per_doc) {
  std::vector<IoStage> out;
  CostInput ci{in.doc_chars, 1, in.doc_chars};
  for (size_t i : spec.topo_order) {
    const NodeSpec& n = spec.nodes[i];
    if (!n.info->cost) continue;
    const NodeCost c = n.info->cost(n.params, ci);
    if (c.chunks_per_doc) {
      ci.chunks_per_doc = *c.chunks_per_doc;
      ci.chunk_chars = c.chunk_chars;
    }
    if (!c.io) continue;
    IoStage s;
    s.node = n.id;
    s.what = c.what;
    s.requests_per_doc = c.requests_per_doc;
    s.tokens_per_doc = c.tokens_per_doc;
    s.cost_per_doc = c.cost_per_doc;
    s.concurrency = n.concurrency;
    s.rpm = n.params.number("rpm");  // params carry their defaults: 0 when the node has none
    s.tpm = n.params.number("tpm");
    s.listing = c.listing;
    s.per_page = c.per_page;
    out.push_back(s);
  }
  chunks_per_doc = ci.chunks_per_doc;
  return out;
}

}  // namespace

Plan make_plan(const GraphSpec& spec, const PlanInput& in) {
  Plan plan;
  auto stages = io_stages(spec, in, plan.chunks_per_doc);
  const bool per_shard = spec.settings.limits_per_shard;
  for (const auto& s : stages) {
    PlanStage ps{s.node, s.what, s.requests_per_doc * in.docs, s.tokens_per_doc * in.docs,
                 s.cost_per_doc * in.docs};
    if (s.listing) ps.requests = std::ceil(in.docs / s.per_page);
    plan.tokens += ps.tokens;
    plan.cost_usd += ps.cost_usd;
    plan.stages.push_back(ps);
  }
  const double io_waits = static_cast<double>(stages.size());
  for (int jobs : in.jobs) {
    for (int procs : in.processes) {
      const double workers = static_cast<double>(jobs) * procs;
      const double quota_scale = per_shard ? jobs : 1;  // how many copies of each limit exist
      PlanRow row{jobs, procs, kInf, 0, "nothing"};
      auto bound = [&](double docs_per_s, std::string why) {
        if (docs_per_s < row.docs_per_s) {
          row.docs_per_s = docs_per_s;
          row.binds = std::move(why);
        }
      };
      for (const auto& s : stages) {
        if (s.listing) {
          // Every process pages through the whole listing one page at a time and keeps its share.
          double pages_per_s = 1.0 / in.latency_s;
          if (s.rpm > 0) pages_per_s = std::min(pages_per_s, s.rpm * quota_scale / 60.0 / workers);
          bound(pages_per_s * s.per_page,
                s.node + (s.rpm > 0 && s.rpm * quota_scale / 60.0 / workers < 1.0 / in.latency_s
                              ? " rpm (every process pages the whole listing)"
                              : " listing latency (one page at a time)"));
          continue;
        }
        if (s.requests_per_doc <= 0) continue;
        if (s.concurrency > 0) {
          // Each process gets ceil(C / its share), at least 1.
          double share = per_shard ? procs : workers;
          double per_proc = std::max(1.0, std::ceil(s.concurrency / share));
          double in_flight = per_proc * workers;
          bound(in_flight / in.latency_s / s.requests_per_doc, s.node + " concurrency");
        }
        if (s.rpm > 0) bound(s.rpm * quota_scale / 60.0 / s.requests_per_doc, s.node + " rpm");
        if (s.tpm > 0 && s.tokens_per_doc > 0)
          bound(s.tpm * quota_scale / 60.0 / s.tokens_per_doc, s.node + " tpm");
      }
      if (io_waits > 0)
        bound(workers * spec.settings.max_inflight_docs / (io_waits * in.latency_s),
              "max_inflight_docs");
      if (in.cpu_ms_per_doc > 0) bound(workers * in.threads / (in.cpu_ms_per_doc / 1000.0), "CPU");
      row.wall_s =
          row.docs_per_s > 0 && std::isfinite(row.docs_per_s) ? in.docs / row.docs_per_s : kInf;
      if (!std::isfinite(row.docs_per_s)) row.wall_s = 0;
      plan.rows.push_back(row);
    }
  }
  return plan;
}

std::string plan_table(const GraphSpec& spec, const PlanInput& in, const Plan& plan) {
  std::string out;
  char line[512];
  std::snprintf(
      line, sizeof line,
      "plan: %s, %.0f documents of %.0f characters (%.1f chunks each), %.0f ms per request\n",
      spec.name.c_str(), in.docs, in.doc_chars, plan.chunks_per_doc, in.latency_s * 1000);
  out += line;
  for (const auto& s : plan.stages) {
    std::snprintf(
        line, sizeof line, "  %-12s %12.0f %s%s", s.node.c_str(), s.requests, s.what.c_str(),
        s.what == "pages" ? " per process (every shard and process pages the whole listing)" : "");
    out += line;
    if (s.tokens > 0) {
      std::snprintf(line, sizeof line, ", %.0f tokens, $%.2f", s.tokens, s.cost_usd);
      out += line;
    }
    out += "\n";
  }
  if (plan.stages.empty())
    out += "  no HTTP nodes: the CPU sets the pace (pass --cpu-ms-per-doc)\n";
  std::snprintf(line, sizeof line, "  tokens %.0f, API cost $%.2f; limits are %s\n\n", plan.tokens,
                plan.cost_usd,
                spec.settings.limits_per_shard
                    ? "per shard (settings.limits_scope = shard)"
                    : "totals for the whole job (settings.limits_scope = job)");
  out += line;
  std::snprintf(line, sizeof line, "%6s %6s %8s %12s %12s  %s\n", "jobs", "procs", "workers",
                "docs/s", "wall time", "limit that binds");
  out += line;
  for (const auto& r : plan.rows) {
    std::string rate = std::isfinite(r.docs_per_s)
                           ? std::to_string(static_cast<long long>(std::llround(r.docs_per_s)))
                           : "-";
    if (std::isfinite(r.docs_per_s) && r.docs_per_s < 10) {
      char b[32];
      std::snprintf(b, sizeof b, "%.2f", r.docs_per_s);
      rate = b;
    }
    std::snprintf(line, sizeof line, "%6d %6d %8d %12s %12s  %s\n", r.jobs, r.processes,
                  r.jobs * r.processes, rate.c_str(),
                  std::isfinite(r.docs_per_s) ? fmt_duration(r.wall_s).c_str() : "-",
                  r.binds.c_str());
    out += line;
  }
  return out;
}

}  // namespace sluice
