#include "app/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace sluice {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// One I/O node's demand per document (its own cost model) and its limits for the whole job.
struct IoStage {
  std::string node;
  NodeCost cost;
  int concurrency = 0;  // 0 = unlimited
  double rpm = 0, tpm = 0;
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
    // params carry their defaults: 0 when the node has no rpm or tpm
    out.push_back({n.id, c, n.concurrency, n.params.number("rpm"), n.params.number("tpm")});
  }
  chunks_per_doc = ci.chunks_per_doc;
  return out;
}

// Pages a listing of `docs` items takes: each partition ends on a page of its own.
double listing_pages(const NodeCost& c, double docs) {
  if (c.listing_parts <= 0) return std::ceil(docs / c.per_page);
  return c.listing_parts * std::max(1.0, std::ceil(docs / c.listing_parts / c.per_page));
}

}  // namespace

Plan make_plan(const GraphSpec& spec, const PlanInput& in) {
  Plan plan;
  auto stages = io_stages(spec, in, plan.chunks_per_doc);
  const bool per_shard = spec.settings.limits_per_shard;
  for (const auto& s : stages) {
    PlanStage ps{s.node, s.cost.what, s.cost.requests_per_doc * in.docs,
                 s.cost.tokens_per_doc * in.docs, s.cost.cost_per_doc * in.docs};
    if (s.cost.listing) ps.requests = listing_pages(s.cost, in.docs);
    ps.split = s.cost.listing_splits;
    ps.parts = s.cost.listing_parts;
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
        if (s.cost.listing) {
          // One page at a time per process. Every process pages the whole listing and keeps
          // its share of the items, unless the listing splits: by pages (each pages its share),
          // or by partitions (at most one process a partition lists).
          const bool parted = s.cost.listing_parts > 0;
          const double items_per_page =
              in.docs > 0 && parted ? in.docs / listing_pages(s.cost, in.docs) : s.cost.per_page;
          // A partitioned listing lists `concurrency` partitions at once in the job (each
          // process its share, at least 1).
          const double lanes =
              s.concurrency > 0
                  ? std::max(1.0, std::ceil(s.concurrency / (per_shard ? procs : workers)))
                  : kInf;
          const double listers = !s.cost.listing_splits ? 1
                                 : parted ? std::min(workers * lanes, s.cost.listing_parts)
                                          : workers;
          double pages_per_s = listers / in.latency_s;  // the whole job's
          // Each process holds an even share of the rpm, but a partitioned listing's listers
          // hold all of it between them (idle processes give theirs up): the whole quota, or
          // under limits_scope shard that of each shard that has a partition.
          const double rpm =
              !parted ? s.rpm * quota_scale * listers / workers
                      : s.rpm * (per_shard ? std::min<double>(jobs, s.cost.listing_parts) : 1);
          const bool rpm_binds = s.rpm > 0 && rpm / 60.0 < pages_per_s;
          if (rpm_binds) pages_per_s = rpm / 60.0;
          bound(pages_per_s * items_per_page,
                s.node + (rpm_binds ? (parted ? " rpm (the partitions split among the processes)"
                                       : s.cost.listing_splits
                                           ? " rpm (the pages split among the processes)"
                                           : " rpm (every process pages the whole listing)")
                                    : (parted ? " listing latency (one lister a partition)"
                                       : s.cost.listing_splits
                                           ? " listing latency (each process pages its share)"
                                           : " listing latency (one page at a time)")));
          continue;
        }
        if (s.cost.requests_per_doc <= 0) continue;
        if (s.concurrency > 0) {
          // Each process gets ceil(C / its share), at least 1.
          double share = per_shard ? procs : workers;
          double per_proc = std::max(1.0, std::ceil(s.concurrency / share));
          double in_flight = per_proc * workers;
          bound(in_flight / in.latency_s / s.cost.requests_per_doc, s.node + " concurrency");
        }
        if (s.rpm > 0) bound(s.rpm * quota_scale / 60.0 / s.cost.requests_per_doc, s.node + " rpm");
        if (s.tpm > 0 && s.cost.tokens_per_doc > 0)
          bound(s.tpm * quota_scale / 60.0 / s.cost.tokens_per_doc, s.node + " tpm");
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
    std::string how;
    if (s.what == "pages" && s.parts > 0)
      how = " in all: " + std::to_string(static_cast<long long>(s.parts)) +
            " partitions, each listed whole by one process";
    else if (s.what == "pages")
      how = s.split ? " in all, split among the processes (each pages its share)"
                    : " per process (every shard and process pages the whole listing)";
    std::snprintf(line, sizeof line, "  %-12s %12.0f %s%s", s.node.c_str(), s.requests,
                  s.what.c_str(), how.c_str());
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
