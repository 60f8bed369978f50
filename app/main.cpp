// sluice command line: thin wrappers over engine/ and nodes/.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "engine/graph_runner.hpp"
#include "engine/graph_spec.hpp"
#include "nodes/index_sqlite.hpp"
#include "sim/sim.hpp"

namespace {

using namespace sluice;

constexpr const char* kVersion = "0.1.0";

std::atomic<bool> g_interrupt{false};

extern "C" void on_signal(int) {
  if (g_interrupt.exchange(true)) _exit(130);  // a second Ctrl-C: leave now
  const char msg[] = "\nsluice: interrupted; draining in-flight work (Ctrl-C again to abort)\n";
  ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
}

std::vector<VarOverride> parse_sets(const std::vector<std::string>& sets) {
  std::vector<VarOverride> out;
  for (const auto& s : sets) {
    VarOverride o;
    if (!parse_override(s, o)) throw CLI::ValidationError("--set", "expected name=value, got \"" + s + "\"");
    out.push_back(o);
  }
  return out;
}

int cmd_run(const std::string& graph, int threads, const std::vector<std::string>& sets,
            const std::string& report_path, bool quiet) {
  GraphSpec spec = load_graph(graph, parse_sets(sets), builtin_registry());
  RunOptions opts;
  opts.threads = threads;
  opts.interrupt = &g_interrupt;
  if (!quiet) {
    if (isatty(STDERR_FILENO)) opts.progress_line = true;
    else opts.events_interval_s = 5;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (!quiet)
    std::fprintf(stderr, "sluice: running %s (%zu nodes) with %d threads\n", spec.name.c_str(), spec.nodes.size(),
                 threads > 0 ? threads : spec.settings.threads > 0 ? spec.settings.threads : hardware_threads());
  RunReport rep = run_graph(spec, opts);
  if (!quiet) std::fputs(rep.table().c_str(), stdout);
  else if (!rep.error.empty()) std::fprintf(stderr, "error: %s\n", rep.error.c_str());
  if (!report_path.empty()) {
    std::ofstream out(report_path);
    out << rep.to_json();
    if (!out) {
      std::fprintf(stderr, "sluice: cannot write report \"%s\"\n", report_path.c_str());
      return 1;
    }
  }
  if (rep.lost > 0) std::fprintf(stderr, "sluice: %llu documents lost\n", static_cast<unsigned long long>(rep.lost));
  return rep.exit_code();
}

int cmd_validate(const std::string& graph, const std::vector<std::string>& sets) {
  GraphSpec spec = load_graph(graph, parse_sets(sets), builtin_registry());
  int sources = 0, sinks = 0;
  for (const auto& n : spec.nodes) {
    sources += n.info->role == NodeRole::source;
    sinks += n.info->role == NodeRole::sink;
  }
  std::printf("ok: %s: graph \"%s\", %zu nodes (%d sources, %d sinks), %zu edges\n", graph.c_str(), spec.name.c_str(),
              spec.nodes.size(), sources, sinks, spec.edges.size());
  return 0;
}

std::string concurrency_text(int c) { return c == 0 ? "unlimited" : c == 1 ? "serial" : std::to_string(c); }

int cmd_nodes(const std::string& type) {
  const Registry& reg = builtin_registry();
  if (type.empty()) {
    std::printf("%-18s %-10s %s\n", "TYPE", "ROLE", "DESCRIPTION");
    for (const auto& t : reg.types()) {
      const NodeTypeInfo* i = reg.find(t);
      std::string d = i->description;
      size_t dot = d.find(". ");
      if (dot != std::string::npos) d = d.substr(0, dot + 1);
      std::printf("%-18s %-10s %s\n", t.c_str(), role_name(i->role), d.c_str());
    }
    std::printf("\n`sluice nodes TYPE` shows a type's params.\n");
    return 0;
  }
  const NodeTypeInfo* i = reg.find(type);
  if (!i) {
    std::fprintf(stderr, "error: unknown node type \"%s\"%s\n", type.c_str(), did_you_mean(type, reg.types()).c_str());
    return 2;
  }
  std::printf("%s (%s)\n  %s\n  default concurrency: %s\n\n", i->type.c_str(), role_name(i->role),
              i->description.c_str(), concurrency_text(i->default_concurrency).c_str());
  if (i->params.empty()) {
    std::printf("  (no params)\n");
    return 0;
  }
  std::printf("  %-14s %-22s %-12s %s\n", "PARAM", "TYPE", "DEFAULT", "DOC");
  for (const auto& p : i->params)
    std::printf("  %-14s %-22s %-12s %s\n", p.name.c_str(), param_type_name(p.type),
                p.required ? "(required)" : p.default_json.c_str(), p.doc.c_str());
  return 0;
}

int cmd_search(const std::string& db, const std::string& query, int k, const std::string& mode_text) {
  SearchMode mode = mode_text == "vector" ? SearchMode::vector : mode_text == "hybrid" ? SearchMode::hybrid : SearchMode::bm25;
  auto hits = search_index(db, query, k, mode);
  if (hits.empty()) {
    std::printf("no results for \"%s\" (%s)\n", query.c_str(), mode_text.c_str());
    return 0;
  }
  for (size_t i = 0; i < hits.size(); ++i) {
    std::string snip = hits[i].snippet;
    for (char& c : snip)
      if (c == '\n') c = ' ';
    std::printf("%2zu. %8.4f  %s\n    %s\n", i + 1, hits[i].score, hits[i].id.c_str(), snip.c_str());
  }
  return 0;
}

std::string dot_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

int cmd_graph(const std::string& graph, const std::vector<std::string>& sets) {
  GraphSpec spec = load_graph(graph, parse_sets(sets), builtin_registry());
  std::printf("digraph \"%s\" {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n", dot_escape(spec.name).c_str());
  for (const auto& n : spec.nodes) {
    const char* shape = n.info->role == NodeRole::source ? "invhouse" : n.info->role == NodeRole::sink ? "cylinder" : "box";
    std::printf("  \"%s\" [label=\"%s\\n%s\", shape=%s];\n", dot_escape(n.id).c_str(), dot_escape(n.id).c_str(),
                dot_escape(n.type).c_str(), shape);
  }
  for (auto [a, b] : spec.edges)
    std::printf("  \"%s\" -> \"%s\";\n", dot_escape(spec.nodes[a].id).c_str(), dot_escape(spec.nodes[b].id).c_str());
  std::printf("}\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice: a dataflow pipeline engine for ingestion (source -> fetch -> extract -> chunk -> embed -> index)"};
  app.set_version_flag("--version", std::string("sluice ") + kVersion);
  app.require_subcommand(1);

  std::string graph, report, db, query, mode = "bm25", type;
  int threads = 0, k = 10;
  bool quiet = false, dot = false;
  std::vector<std::string> sets;

  auto* run = app.add_subcommand("run", "Run a graph config");
  run->add_option("GRAPH", graph, "graph config (JSON)")->required();
  run->add_option("--threads", threads, "worker threads (default: settings.threads, else all cores)")
      ->check(CLI::Range(1, 4096));
  run->add_option("--set", sets, "override a declared var: name=value (repeatable)");
  run->add_option("--report", report, "write the run report as JSON to FILE");
  run->add_flag("--quiet,-q", quiet, "no progress and no summary table");

  auto* validate = app.add_subcommand("validate", "Check a graph config; print every error at once");
  validate->add_option("GRAPH", graph, "graph config (JSON)")->required();
  validate->add_option("--set", sets, "override a declared var: name=value (repeatable)");

  auto* nodes = app.add_subcommand("nodes", "List node types, or show one type's params");
  nodes->add_option("TYPE", type, "node type, e.g. chunk.recursive");

  auto* search = app.add_subcommand("search", "Query an index.sqlite database");
  search->add_option("DB", db, "index file written by index.sqlite")->required();
  search->add_option("QUERY", query, "words to look for; \"in double quotes\" for a phrase")->required();
  search->add_option("--k", k, "number of results")->check(CLI::Range(1, 10000));
  search->add_option("--mode", mode, "bm25 (full text), vector (embedding), hybrid (both, fused)")
      ->check(CLI::IsMember({"bm25", "vector", "hybrid"}));

  auto* graph_cmd = app.add_subcommand("graph", "Print a graph config as Graphviz DOT");
  graph_cmd->add_option("GRAPH", graph, "graph config (JSON)")->required();
  graph_cmd->add_flag("--dot", dot, "DOT output (the default and only format)");
  graph_cmd->add_option("--set", sets, "override a declared var: name=value (repeatable)");

  sim::SimOptions sim_opts;
  auto* sim_cmd = app.add_subcommand("sim", "Serve a simulated upstream on loopback for tests and benchmarks");
  sim_cmd->add_option("--port", sim_opts.port, "port (0 = pick one); the first stdout line says which");
  sim_cmd->add_option("--docs", sim_opts.docs, "corpus size");
  sim_cmd->add_option("--latency-ms", sim_opts.latency_ms, "mean response latency");
  sim_cmd->add_option("--latency-jitter-ms", sim_opts.latency_jitter_ms, "uniform jitter around the mean");
  sim_cmd->add_option("--rpm", sim_opts.rpm, "requests per minute, enforced in 1-second windows (429 beyond)");
  sim_cmd->add_option("--tpm", sim_opts.tpm, "embedding tokens per minute, likewise");
  sim_cmd->add_option("--error-rate", sim_opts.error_rate, "fraction answered 500")->check(CLI::Range(0.0, 1.0));
  sim_cmd->add_option("--reset-rate", sim_opts.reset_rate, "fraction whose connection is reset")->check(CLI::Range(0.0, 1.0));
  sim_cmd->add_option("--timeout-rate", sim_opts.timeout_rate, "fraction never answered")->check(CLI::Range(0.0, 1.0));
  sim_cmd->add_option("--malformed-rate", sim_opts.malformed_rate, "fraction with a broken JSON body")->check(CLI::Range(0.0, 1.0));
  sim_cmd->add_option("--bulk-fail-rate", sim_opts.bulk_fail_rate, "fraction of _bulk items answered 429")->check(CLI::Range(0.0, 1.0));
  sim_cmd->add_option("--doc-bytes", sim_opts.doc_bytes, "text bytes per generated document");
  sim_cmd->add_option("--seed", sim_opts.seed, "seed for faults and content");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    if (*run) return cmd_run(graph, threads, sets, report, quiet);
    if (*validate) return cmd_validate(graph, sets);
    if (*nodes) return cmd_nodes(type);
    if (*search) return cmd_search(db, query, k, mode);
    if (*graph_cmd) return cmd_graph(graph, sets);
    if (*sim_cmd) return sim::run_sim_forever(sim_opts);
  } catch (const ConfigError& e) {
    std::fputs(e.text.c_str(), stderr);
    std::fprintf(stderr, "%zu error%s\n", e.diagnostics.size(), e.diagnostics.size() == 1 ? "" : "s");
    return 2;
  } catch (const CLI::ValidationError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
