// sluice command line: thin wrappers over engine/ and nodes/.
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_set>

#include <CLI/CLI.hpp>
#include <rapidjson/document.h>

#include "app/bench.hpp"
#include "app/launcher.hpp"
#include "app/plan.hpp"
#include "app/schema.hpp"
#include "engine/diagnostics.hpp"
#include "engine/graph/graph_runner.hpp"
#include "engine/graph/graph_spec.hpp"
#include "engine/graph/prometheus.hpp"
#include "engine/json/json.hpp"
#include "engine/metrics/metrics_server.hpp"
#include "engine/state/checkpoint_ledger.hpp"
#include "engine/state/shard.hpp"
#include "nodes/builtin_nodes.hpp"
#include "nodes/embed_fasttext.hpp"
#include "nodes/embed_http.hpp"
#include "nodes/index_sqlite_ann.hpp"
#include "nodes/index_sqlite_bm25.hpp"
#include "nodes/index_sqlite_db.hpp"
#include "nodes/index_sqlite_search.hpp"
#include "sim/sim.hpp"

namespace {

using namespace sluice;

constexpr const char* kVersion = "0.1.0";

std::atomic<bool> g_interrupt{false};
std::atomic<bool> g_abort{false};

// The first Ctrl-C (or SIGTERM) drains what is in flight; the second stops the run where it
// stands and still writes its report (AbortWatch); a third leaves at once.
extern "C" void on_signal(int) {
  auto say = [](const char* msg, size_t n) {
    ssize_t ignored = write(STDERR_FILENO, msg, n);
    (void)ignored;
  };
  if (!g_interrupt.exchange(true)) {
    const char msg[] =
        "\nsluice: interrupted; draining in-flight work (Ctrl-C again to stop now)\n";
    say(msg, sizeof msg - 1);
    return;
  }
  if (!g_abort.exchange(true)) {
    const char msg[] =
        "\nsluice: stopping now; the report follows (Ctrl-C again to exit at once)\n";
    say(msg, sizeof msg - 1);
    return;
  }
  _exit(130);
}

// Watches for a second Ctrl-C while a run is in progress: then the run is abandoned where it
// stands (as after kill -9: the ledger holds what was done, --resume does the rest) and `finish`
// gets the last snapshot of its report, marked interrupted, before the process exits 130.
class AbortWatch {
 public:
  explicit AbortWatch(std::function<void(RunReport&)> finish) : _finish(std::move(finish)) {
    _thread = std::thread([this] {
      while (!_stop.load()) {
        if (g_abort.load() && !_over.exchange(true)) {
          RunReport rep;
          {
            std::lock_guard lock(_mu);
            rep = _last;
          }
          rep.interrupted = true;
          const uint64_t settled = rep.docs_indexed + rep.docs_filtered + rep.docs_dead_lettered;
          rep.error = "stopped at a second interrupt with " +
                      std::to_string(rep.docs > settled ? rep.docs - settled : 0) +
                      " documents unfinished (--resume does them again); counts as of the last "
                      "snapshot";
          _finish(rep);
          std::fflush(nullptr);
          _exit(130);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  ~AbortWatch() {
    _stop.store(true);
    _thread.join();
  }
  AbortWatch(const AbortWatch&) = delete;
  AbortWatch& operator=(const AbortWatch&) = delete;

  void snapshot(const RunReport& r) {
    std::lock_guard lock(_mu);
    _last = r;
  }
  // The run returned: the caller reports it, unless the watch already started to (then it waits
  // for the watch to exit the process).
  void claim() {
    if (!_over.exchange(true)) return;
    for (;;) pause();
  }

 private:
  std::function<void(RunReport&)> _finish;
  std::mutex _mu;
  RunReport _last;
  std::atomic<bool> _stop{false}, _over{false};
  std::thread _thread;
};

std::vector<VarOverride> parse_sets(const std::vector<std::string>& sets) {
  std::vector<VarOverride> out;
  for (const auto& s : sets) {
    VarOverride o;
    if (!parse_override(s, o))
      throw CLI::ValidationError("--set", "expected name=value, got \"" + s + "\"");
    out.push_back(o);
  }
  return out;
}

std::string self_exe() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) throw std::runtime_error("cannot find this program's path (/proc/self/exe)");
  return std::string(exe, static_cast<size_t>(n));
}

struct RunArgs {
  std::string graph;
  int threads = 0;
  std::vector<std::string> sets;
  std::string report_path;
  bool quiet = false;
  int processes = 1;
  std::string shard;
  int shards = 0;
  std::string state_dir;
  bool resume = false;
  bool force = false;
  int max_restarts = 3;
  std::string metrics_addr;  // "" = no metrics endpoint
  std::string worker;        // hidden: "w/P", set by the launcher
};

// The folder of the first sink that writes a file (out/x.db → out), else out.
std::filesystem::path first_output_dir(const GraphSpec& spec) {
  for (const auto& n : spec.nodes) {
    if (!n.info->output_file) continue;
    std::filesystem::path p(n.info->output_file(n.params));
    if (p.empty()) continue;
    if (p.string().rfind("/dev/", 0) == 0) continue;
    return p.parent_path();
  }
  return "out";
}

// out/<graph>.state beside the first output.
std::string default_state_dir(const GraphSpec& spec) {
  return (first_output_dir(spec) / (spec.name + ".state")).string();
}

// A log file (settings.dead_letter, settings.outcomes) is the shard's own in a sharded run:
// "out/dlq.jsonl" becomes "out/dlq.sI-of-N.jsonl". Shards often share a directory, and each
// starts its logs anew on a fresh run, which must not delete another shard's.
std::string shard_log_file(const std::string& path, const ShardSpec& shard) {
  if (path.empty() || shard.all() || path.rfind("/dev/", 0) == 0) return path;
  const std::string tag = "." + shard.file_tag();
  std::filesystem::path p(path);
  if (p.filename().string().find(tag) != std::string::npos) return path;
  const std::string ext = p.extension().string();
  return (p.parent_path() / (p.stem().string() + tag + ext)).string();
}

int finish_run(RunReport& rep, const RunArgs& a, const GraphSpec& spec) {
  rep.judge_dead_letters(spec.settings.max_dead_letter_ratio);
  if (!a.quiet) std::fputs(rep.table().c_str(), stdout);
  else if (!rep.error.empty()) std::fprintf(stderr, "error: %s\n", rep.error.c_str());
  if (!a.report_path.empty()) {
    std::ofstream out(a.report_path);
    out << rep.to_json();
    if (!out) {
      std::fprintf(stderr, "sluice: cannot write report \"%s\"\n", a.report_path.c_str());
      return 1;
    }
  }
  if (rep.lost > 0)
    std::fprintf(stderr, "sluice: %llu documents lost\n",
                 static_cast<unsigned long long>(rep.lost));
  return rep.exit_code();
}

// Loads a graph with the built-in nodes and says on stderr what is valid but worth saying (a
// deprecated param); a launcher's workers load it again and stay quiet.
GraphSpec load_user_graph(const std::string& path, const std::vector<std::string>& sets,
                          const std::map<std::string, std::string>& builtins = {},
                          bool quiet = false) {
  GraphSpec spec = load_graph(path, parse_sets(sets), builtin_registry(), builtins);
  if (!quiet && !spec.warnings.empty()) std::fprintf(stderr, "%s", spec.warnings.c_str());
  return spec;
}

int run_loaded(const RunArgs& a, const ShardSpec& shard, GraphSpec& spec);

// A worker's event line to its launcher (fd 3), whole: snapshots (from the runner's ticker) and
// the report (from the main thread, or the abort watch's) are several KB, more than a pipe
// writes at once, so they take turns and each write is finished.
void write_event(const std::string& line) {
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::string_view left = line;
  while (!left.empty()) {
    ssize_t n = write(3, left.data(), left.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the launcher is gone
    left.remove_prefix(static_cast<size_t>(n));
  }
}

int cmd_run(const RunArgs& a) {
  ShardSpec shard =
      resolve_shard(a.shard, a.shards, [](const char* n) -> const char* { return std::getenv(n); });
  GraphSpec spec =
      load_user_graph(a.graph, a.sets, {{"shard", std::to_string(shard.index)}}, !a.worker.empty());
  try {
    return run_loaded(a, shard, spec);
  } catch (const std::exception& e) {
    // A path or message built from an ${env:...} value must not print it.
    throw std::runtime_error(spec.secrets.redact(e.what()));
  }
}

int run_loaded(const RunArgs& a, const ShardSpec& shard, GraphSpec& spec) {
  const std::string state_dir = a.state_dir.empty() ? default_state_dir(spec) : a.state_dir;
  // Without settings.dead_letter: <graph>.dead-letter.jsonl beside the first output.
  if (spec.settings.dead_letter.empty())
    spec.settings.dead_letter =
        (first_output_dir(spec) / (spec.name + ".dead-letter.jsonl")).string();
  spec.settings.dead_letter = shard_log_file(spec.settings.dead_letter, shard);
  spec.settings.outcomes = shard_log_file(spec.settings.outcomes, shard);
  const std::string ledger_path = CheckpointLedger::file_for(state_dir, shard.index, shard.count);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  // A launcher's worker is told "w/P"; every process of the job takes 1/(processes x shards) of
  // its limits, or 1/processes when each shard has its own quota.
  const ShardSpec worker = a.worker.empty() ? ShardSpec{0, a.processes, ""} : parse_shard(a.worker);
  const int divisor = worker.count * (spec.settings.limits_per_shard ? 1 : shard.count);

  if (!a.worker.empty()) {
    // A worker of a launcher: sub-shard w of P inside `shard`, resuming from the shared ledger
    // (which the launcher reset for a fresh run), events to fd 3.
    split_job_limits(spec, divisor);
    CheckpointLedger ledger(ledger_path, spec.config_hash, CheckpointLedger::Mode::attach,
                            /*force=*/true);
    auto skip = ledger.done_ids();
    RunOptions opts;
    opts.threads = a.threads;
    opts.interrupt = &g_interrupt;
    opts.events_fd = 3;
    opts.events_interval_s = 0.5;
    opts.shard = shard;
    opts.worker = worker.index;
    opts.workers = worker.count;
    opts.limit_sharers = divisor;
    opts.ledger = &ledger;
    opts.state_dir = state_dir;
    opts.skip = &skip;
    opts.reset_outputs = false;
    opts.merge_outputs = false;
    AbortWatch watch([&](RunReport& r) {
      r.graph = spec.name;
      write_event(report_event(r));
    });
    // The launcher folds these into the job's running totals (its --metrics-addr).
    std::chrono::steady_clock::time_point last_sent{};
    opts.on_snapshot = [&](const RunReport& r) {
      watch.snapshot(r);
      if (std::chrono::steady_clock::now() - last_sent < std::chrono::milliseconds(500)) return;
      last_sent = std::chrono::steady_clock::now();
      RunReport named = r;
      named.graph = spec.name;
      write_event(snapshot_event(named));
    };
    RunReport rep = run_graph(spec, opts);
    watch.claim();
    write_event(report_event(rep));
    if (!rep.error.empty())
      std::fprintf(stderr, "sluice: worker %s: error: %s\n", a.worker.c_str(), rep.error.c_str());
    return rep.exit_code();
  }

  const char* scope = spec.settings.limits_per_shard ? "per shard" : "for the whole job";
  if (!a.quiet && !shard.all())
    std::fprintf(stderr, "sluice: shard %s (from %s); rate limits and I/O concurrency are %s\n",
                 shard.text().c_str(), shard.origin.c_str(), scope);
  // Before the ledger or any output is reset: a second run on the same outputs stops here.
  auto output_locks = lock_outputs(spec, shard);
  std::unique_ptr<MetricsServer> metrics;
  if (!a.metrics_addr.empty()) {
    metrics = std::make_unique<MetricsServer>(a.metrics_addr, kPrometheusContentType);
    RunReport start;
    start.graph = spec.name;
    start.config_hash = spec.config_hash;
    start.shard = shard.text();
    metrics->publish(prometheus_text(start, a.processes));
    if (!a.quiet)
      std::fprintf(stderr, "sluice: metrics at http://%s/metrics\n", metrics->address().c_str());
  }
  auto publish = [&](const RunReport& r, int workers) {
    if (metrics) metrics->publish(prometheus_text(r, workers));
  };
  // A resume whose ledger is gone (deleted, or emptied) would quietly start over: say so.
  if (a.resume) {
    std::error_code ec;
    auto size = std::filesystem::file_size(ledger_path, ec);
    if (ec || size == 0)
      std::fprintf(stderr,
                   "sluice: --resume: %s checkpoint ledger at \"%s\": nothing is known to be "
                   "done, so every document is read again\n",
                   ec ? "no" : "an empty", ledger_path.c_str());
  }
  // Opening the ledger checks a resume against the config (or resets it for a fresh run) once,
  // before any worker starts.
  auto ledger = std::make_unique<CheckpointLedger>(
      ledger_path, spec.config_hash,
      a.resume ? CheckpointLedger::Mode::resume : CheckpointLedger::Mode::fresh, a.force);

  if (a.processes > 1) {
    ledger.reset();
    if (!a.resume) reset_outputs(spec, shard);
    LaunchPlan plan;
    plan.self_exe = self_exe();
    plan.worker_args = {"run",     a.graph,   "--quiet",        "--shard", shard.text(),
                        "--state", state_dir, "--max-restarts", "0"};
    for (const auto& s : a.sets) {
      plan.worker_args.emplace_back("--set");
      plan.worker_args.push_back(s);
    }
    plan.processes = a.processes;
    plan.threads_per_worker = a.threads > 0 ? a.threads
                              : spec.settings.threads > 0
                                  ? spec.settings.threads
                                  : std::max(1, hardware_threads() / a.processes);
    plan.max_restarts = a.max_restarts;
    plan.interrupt = &g_interrupt;
    plan.abort = &g_abort;
    if (metrics)
      plan.on_totals = [&](const RunReport& r) {
        RunReport named = r;
        named.shard = shard.text();
        publish(named, a.processes);
      };
    if (!a.quiet) {
      if (isatty(STDERR_FILENO)) plan.progress_line = true;
      else plan.events_interval_s = 5;
      std::fprintf(stderr, "sluice: running %s (%zu nodes) in %d processes x %d threads%s\n",
                   spec.name.c_str(), spec.nodes.size(), a.processes, plan.threads_per_worker,
                   a.resume ? ", resuming" : "");
    }
    RunReport rep = launch_workers(spec, plan);
    rep.shard = shard.text();
    try {
      merge_outputs(spec, shard, rep.error.empty() && !rep.interrupted);
    } catch (const std::exception& e) {
      if (rep.error.empty()) rep.error = spec.secrets.redact(e.what());
    }
    return finish_run(rep, a, spec);
  }

  split_job_limits(spec, divisor);
  std::unordered_set<std::string> skip;
  if (a.resume) skip = ledger->done_ids();
  RunOptions opts;
  opts.threads = a.threads;
  opts.interrupt = &g_interrupt;
  opts.shard = shard;
  opts.limit_sharers = divisor;
  opts.ledger = ledger.get();
  opts.state_dir = state_dir;
  opts.skip = &skip;
  opts.reset_outputs = !a.resume;
  opts.quiet = a.quiet;
  AbortWatch watch([&](RunReport& r) {
    r.graph = spec.name;
    finish_run(r, a, spec);
    for (auto& l : output_locks) l.remove_file();
  });
  opts.on_snapshot = [&](const RunReport& r) {
    watch.snapshot(r);
    publish(r, 1);
  };
  if (!a.quiet) {
    if (isatty(STDERR_FILENO)) opts.progress_line = true;
    else opts.events_interval_s = 5;
    std::fprintf(
        stderr, "sluice: running %s (%zu nodes) with %d threads%s\n", spec.name.c_str(),
        spec.nodes.size(),
        a.threads > 0               ? a.threads
        : spec.settings.threads > 0 ? spec.settings.threads
                                    : hardware_threads(),
        a.resume
            ? (", resuming: " + std::to_string(skip.size()) + " documents already done").c_str()
            : "");
  }
  RunReport rep = run_graph(spec, opts);
  watch.claim();
  publish(rep, 1);
  return finish_run(rep, a, spec);
}

int cmd_plan(const std::string& graph, const std::vector<std::string>& sets, const PlanInput& in) {
  GraphSpec spec = load_user_graph(graph, sets);
  Plan plan = make_plan(spec, in);
  std::fputs(plan_table(spec, in, plan).c_str(), stdout);
  return 0;
}

int cmd_validate(const std::string& graph, const std::vector<std::string>& sets) {
  GraphSpec spec = load_user_graph(graph, sets);
  int sources = 0, sinks = 0;
  for (const auto& n : spec.nodes) {
    sources += n.info->role == NodeRole::source;
    sinks += n.info->role == NodeRole::sink;
  }
  std::printf("ok: %s: graph \"%s\", %zu nodes (%d sources, %d sinks), %zu edges\n", graph.c_str(),
              spec.name.c_str(), spec.nodes.size(), sources, sinks, spec.edges.size());
  return 0;
}

std::string concurrency_text(int c) {
  return c == 0 ? "unlimited" : c == 1 ? "serial" : std::to_string(c);
}

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
    std::fprintf(stderr, "error: unknown node type \"%s\"%s\n", type.c_str(),
                 did_you_mean(type, reg.types()).c_str());
    return 2;
  }
  std::printf("%s (%s)\n  %s\n  default concurrency: %s%s\n\n", i->type.c_str(), role_name(i->role),
              i->description.c_str(), concurrency_text(i->default_concurrency).c_str(),
              i->io
                  ? " (requests in flight, a total for the whole job: each of P processes in each "
                    "of N shards "
                    "gets 1/(N*P), at least 1; settings.limits_scope \"shard\" makes it per shard)"
                  : "");
  if (i->params.empty()) {
    std::printf("  (no params)\n");
    return 0;
  }
  std::printf("  %-14s %-22s %-12s %s\n", "PARAM", "TYPE", "DEFAULT", "DOC");
  for (const auto& p : i->params) {
    if (!p.replaced_by.empty()) continue;  // a retired name, still accepted
    std::printf("  %-14s %-22s %-12s %s%s\n", p.name.c_str(), param_type_name(p.type),
                p.required ? "(required)" : p.default_json.c_str(), p.doc.c_str(),
                p.job_total ? " [job total: split evenly across processes and shards]" : "");
  }
  for (const auto& p : i->params)
    if (!p.replaced_by.empty())
      std::printf("  (\"%s\" is still read, as %s, with a deprecation note)\n", p.name.c_str(),
                  p.replaced_by.c_str());
  return 0;
}

// `--json`: one array, a result an object; meta is the chunk's meta object as indexed.
void print_hits_json(const std::vector<SearchHit>& hits) {
  std::string out = "[";
  char score[32];
  for (size_t i = 0; i < hits.size(); ++i) {
    const auto& h = hits[i];
    std::snprintf(score, sizeof score, "%.6g", std::isfinite(h.score) ? h.score : 0.0);
    out += i ? ",\n " : "\n ";
    out += "{\"rank\":" + std::to_string(i + 1) + ",\"id\":" + json::quoted(h.id) +
           ",\"doc_id\":" + json::quoted(h.doc_id) + ",\"score\":" + score +
           ",\"text\":" + json::quoted(h.text) + ",\"meta\":" + h.meta + "}";
  }
  out += hits.empty() ? "]\n" : "\n]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
}

// Where a hit sits in its document, from its meta: "Install > From source", "page 12" (or "").
std::string place_of(const std::string& meta) {
  rapidjson::Document d;
  d.Parse(meta.data(), meta.size());
  if (d.HasParseError() || !d.IsObject()) return "";
  std::string out;
  if (auto h = d.FindMember("heading"); h != d.MemberEnd() && h->value.IsString())
    out = std::string(h->value.GetString(), std::min<size_t>(h->value.GetStringLength(), 200));
  if (auto p = d.FindMember("page"); p != d.MemberEnd() && p->value.IsInt64())
    out += (out.empty() ? "page " : ", page ") + std::to_string(p->value.GetInt64());
  return escape_controls(out);
}

// `${env:NAME}` in node `id`'s api_key as the graph file writes it, for an error naming the
// variable ("" when the file says it otherwise).
std::string api_key_env_of(const std::string& file, const std::string& id) {
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = text.find("\"" + id + "\"");
  if (at == std::string::npos) return "";
  const size_t key = text.find("\"api_key\"", at);
  const size_t ref = key == std::string::npos ? key : text.find("${env:", key);
  const size_t end = ref == std::string::npos ? ref : text.find('}', ref);
  if (end == std::string::npos || end - key > 200) return "";
  return text.substr(ref, end - ref + 1);
}

// `sluice search --graph`: the query goes through the graph's embedder node (--node ID, else
// its one node of the type the index records), after checking it is the model the index was
// built with and that its key is set. The graph is the user's own config: an index (untrusted)
// never chooses where a key goes.
QueryEmbedder graph_query_embedder(const std::string& graph, const std::string& node_id,
                                   const std::vector<std::string>& sets) {
  if (graph.empty()) return {};
  return [=](const std::string& spec_json, const std::string& query) {
    rapidjson::Document d;
    d.Parse(spec_json.c_str());
    auto field = [&](const char* name) {
      return d.IsObject() && d.HasMember(name) && d[name].IsString() ? d[name].GetString() : "";
    };
    const std::string type = field("type"), model = field("model");
    GraphSpec g = load_user_graph(graph, sets);
    const NodeSpec* pick = nullptr;
    for (const auto& ns : g.nodes) {
      if (!node_id.empty() ? ns.id != node_id : ns.type != type) continue;
      if (pick)
        throw std::runtime_error(graph + " has several " + type +
                                 " nodes: name the one that built the index with --node");
      pick = &ns;
    }
    if (!pick)
      throw std::runtime_error(graph + " has no " +
                               (node_id.empty() ? type + " node" : "node \"" + node_id + "\""));
    const std::string its_model = pick->params.has("model") ? pick->params.str("model") : "";
    if (pick->type != type || its_model != model)
      throw std::runtime_error("the index was embedded with " + type + " (model " + model +
                               "); node \"" + pick->id + "\" of " + graph + " is " + pick->type +
                               " (model " + its_model + ")");
    if (const json::Value* key = pick->params.get("api_key");
        key && key->kind == json::Kind::string && key->unset_env) {
      const std::string ref = api_key_env_of(graph, pick->id);
      throw std::runtime_error("node \"" + pick->id + "\"'s api_key reads " +
                               (ref.empty() ? std::string("an env var") : ref) +
                               ", which is not set: set it to embed the query");
    }
    NodeInit init{pick->id,       pick->type, pick->params, g.name, pick->concurrency, {}, {},
                  pick->adaptive, {},         {},           1};
    return embed_query_http(init, query);
  };
}

// What `sluice search` asks of each index file.
struct SearchRequest {
  std::vector<std::string> dbs;
  int k = 10;
  SearchMode mode = SearchMode::bm25;
  std::string mode_text;
  double vector_weight = -1;
  VectorOptions vector;
};

// The top k for `query` over every file of `r`: several files (a sharded job's, one per shard)
// are each searched for the top k and their results merged by score, each chunk id once.
// `notes`: say on stderr what the user should know (a truncated query, rows not searchable yet).
std::vector<SearchHit> search_dbs(const SearchRequest& r, const std::string& query,
                                  const QueryEmbedder& embed, bool notes) {
  std::vector<SearchHit> hits;
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < r.dbs.size(); ++i) {
    const std::string& db = r.dbs[i];
    std::string note;
    for (auto& h : search_index(db, query, r.k, r.mode, &note, r.vector_weight, embed, r.vector))
      if (seen.insert(h.id).second) hits.push_back(std::move(h));
    if (!notes) continue;
    if (!note.empty()) std::fprintf(stderr, "note: %s\n", note.c_str());
    if (r.mode != SearchMode::vector)
      if (uint64_t behind = chunks_awaiting_full_text(db))
        std::fprintf(
            stderr,
            "note: %s: %llu chunks are not in the full-text index yet (a run is writing them, or "
            "one stopped before its end: running its graph again adds them)\n",
            db.c_str(), static_cast<unsigned long long>(behind));
  }
  if (r.dbs.size() > 1) {
    std::stable_sort(hits.begin(), hits.end(),
                     [](const SearchHit& a, const SearchHit& b) { return a.score > b.score; });
    if (hits.size() > static_cast<size_t>(r.k)) hits.resize(static_cast<size_t>(r.k));
  }
  return hits;
}

// `--queries FILE`: one query per line, one JSON line out per query with its time and results
// (id, doc_id, score): for measuring latency and recall (scripts/bench-search-scale).
int search_queries(const SearchRequest& r, const std::string& file, const QueryEmbedder& embed) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read \"" + file + "\"");
  constexpr size_t kMaxQueries = 1000000, kMaxLine = 64 * 1024;
  std::string line;
  size_t n = 0, line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.size() > kMaxLine)
      throw std::runtime_error(file + ":" + std::to_string(line_no) + ": a query over 64 KiB");
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (++n > kMaxQueries) throw std::runtime_error(file + ": more than a million queries");
    const auto t0 = std::chrono::steady_clock::now();
    const auto hits = search_dbs(r, line, embed, n == 1);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    char num[32];
    std::snprintf(num, sizeof num, "%.3f", ms);
    std::string out = "{\"query\":" + json::quoted(line) + ",\"ms\":" + num + ",\"hits\":[";
    for (size_t i = 0; i < hits.size(); ++i) {
      std::snprintf(num, sizeof num, "%.6g", std::isfinite(hits[i].score) ? hits[i].score : 0.0);
      out += (i ? ",{\"id\":" : "{\"id\":") + json::quoted(hits[i].id) +
             ",\"doc_id\":" + json::quoted(hits[i].doc_id) + ",\"score\":" + num + "}";
    }
    out += "]}\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  return 0;
}

// `args`: one or more index files, then the query (no query with --queries).
int cmd_search(std::vector<std::string> args, SearchRequest r, const std::string& queries,
               bool as_json, const QueryEmbedder& embed) {
  if (queries.empty() && args.size() < 2)
    throw std::invalid_argument("search takes DB... QUERY: an index and a query");
  const std::string query = queries.empty() ? args.back() : "";
  if (queries.empty()) args.pop_back();
  r.dbs = std::move(args);
  r.mode = r.mode_text == "vector"   ? SearchMode::vector
           : r.mode_text == "hybrid" ? SearchMode::hybrid
                                     : SearchMode::bm25;
  // An HTTP embedder embeds the query once for every index that shares its embedder.
  std::map<std::string, std::vector<float>> embedded;
  std::string embedded_for;
  QueryEmbedder once;
  if (embed)
    once = [&](const std::string& spec, const std::string& q) {
      if (q != embedded_for) embedded.clear();
      embedded_for = q;
      auto it = embedded.find(spec);
      if (it == embedded.end()) it = embedded.emplace(spec, embed(spec, q)).first;
      return it->second;
    };
  if (!queries.empty()) return search_queries(r, queries, once);
  const auto hits = search_dbs(r, query, once, true);
  if (as_json) {
    print_hits_json(hits);
    return 0;
  }
  if (hits.empty()) {
    std::printf("no results for \"%s\" (%s)\n", query.c_str(), r.mode_text.c_str());
    return 0;
  }
  for (size_t i = 0; i < hits.size(); ++i) {
    std::string snip = hits[i].snippet;
    for (char& c : snip)
      if (c == '\n') c = ' ';
    const std::string place = place_of(hits[i].meta);
    std::printf("%2zu. %8.4f  %s%s\n    %s\n", i + 1, hits[i].score, hits[i].id.c_str(),
                place.empty() ? "" : ("  (" + place + ")").c_str(), snip.c_str());
  }
  return 0;
}

// `sluice build-search DB...`: writes each index's search accelerators, or brings them up to
// date, whatever its size: the nearest-neighbour graph (an index with vectors) and the bm25
// postings.
int cmd_build_search(const std::vector<std::string>& dbs, bool rebuild) {
  for (const auto& path : dbs) {
    if (!std::filesystem::exists(path)) throw std::runtime_error("no index at \"" + path + "\"");
    sqlite::Db db;
    bool vectors = false;
    {
      // Read-only first: never touch a file that is not a sluice index.
      sqlite::Db probe;
      probe.open(path, SQLITE_OPEN_READONLY, sqlite_index::kBusyTimeoutMs, "the index");
      sqlite_index::check_foreign(probe, path);
      if (!probe.has_table("chunks") || !probe.has_table("ann_log"))
        throw std::runtime_error("\"" + path +
                                 "\" is not an index this sluice has written to: run its graph "
                                 "once with this version first");
      sqlite_index::check_schema_version(probe, path);
      vectors = !sqlite_index::meta(probe, "embedder").empty();
    }
    db.open(path, SQLITE_OPEN_READWRITE, sqlite_index::kBusyTimeoutMs, "the index");
    const bool tty = isatty(STDERR_FILENO) != 0;
    auto progress = [&](const std::string& line) {
      if (tty) std::fprintf(stderr, "%s\n", line.c_str());
    };
    if (vectors) {
      const auto r =
          sqlite_index::keep_ann(db, path, sqlite_index::AnnPolicy::always, rebuild, progress);
      using A = sqlite_index::AnnUpkeep::Action;
      if (r.action == A::none)
        std::printf("%s: the nearest-neighbour graph is up to date\n", path.c_str());
      else
        std::printf("%s: %s the nearest-neighbour graph (%zu vectors, %zu %s) in %.1f s: %s\n",
                    path.c_str(), r.action == A::built ? "built" : "updated", r.nodes, r.changed,
                    r.action == A::built ? "added" : "changed", r.seconds,
                    sqlite_index::ann_path(path).c_str());
    }
    const auto b =
        sqlite_index::keep_bm25(db, path, sqlite_index::AnnPolicy::always, rebuild, progress);
    if (!b.built) std::printf("%s: the bm25 postings are up to date\n", path.c_str());
    else
      std::printf("%s: wrote the bm25 postings (%zu chunks, %zu terms) in %.1f s: %s\n",
                  path.c_str(), b.docs, b.terms, b.seconds, sqlite_index::bm25_path(path).c_str());
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
  GraphSpec spec = load_user_graph(graph, sets);
  std::printf("digraph \"%s\" {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
              dot_escape(spec.name).c_str());
  for (const auto& n : spec.nodes) {
    const char* shape = n.info->role == NodeRole::source ? "invhouse"
                        : n.info->role == NodeRole::sink ? "cylinder"
                                                         : "box";
    std::printf("  \"%s\" [label=\"%s\\n%s\", shape=%s];\n", dot_escape(n.id).c_str(),
                dot_escape(n.id).c_str(), dot_escape(n.type).c_str(), shape);
  }
  for (auto [a, b] : spec.edges)
    std::printf("  \"%s\" -> \"%s\";\n", dot_escape(spec.nodes[a].id).c_str(),
                dot_escape(spec.nodes[b].id).c_str());
  std::printf("}\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  sluice::http::raise_open_files_limit();
  CLI::App app{"sluice: a dataflow pipeline engine for ingestion (source -> fetch -> extract -> "
               "chunk -> embed -> index)"};
  app.set_version_flag("--version", std::string("sluice ") + kVersion);
  app.require_subcommand(1);

  std::string graph, type;
  bool dot = false, search_json = false;
  std::string search_node;
  std::vector<std::string> sets;

  RunArgs ra;
  auto* run = app.add_subcommand("run", "Run a graph config");
  run->add_option("GRAPH", ra.graph, "graph config (JSON)")->required();
  run->add_option(
         "--threads", ra.threads,
         "oneTBB worker threads per process (default: settings.threads, else all cores divided "
         "among --processes)")
      ->check(CLI::Range(1, kMaxThreads));
  run->add_option("--set", ra.sets, "override a declared var: name=value (repeatable)");
  run->add_option("--report", ra.report_path, "write the run report as JSON to FILE");
  run->add_flag("--quiet,-q", ra.quiet, "no progress and no summary table");
  run->add_option(
         "--processes,-P", ra.processes,
         "worker processes on this machine, each with its own threads and HTTP loop (default 1)")
      ->check(CLI::Range(1, kMaxProcesses));
  run->add_option(
      "--shard", ra.shard,
      "handle shard INDEX/COUNT of the documents (hash of doc id mod COUNT); default: from Slurm, "
      "MPI or JOB_COMPLETION_INDEX in the environment, else everything");
  run->add_option("--shards", ra.shards,
                  "shard count where the scheduler gives only an index (JOB_COMPLETION_INDEX)")
      ->check(CLI::Range(1, 1000000));
  run->add_option(
      "--state", ra.state_dir,
      "checkpoint directory (default: beside the first sink's file, e.g. out/GRAPH.state)");
  run->add_flag("--resume", ra.resume, "skip documents the checkpoint ledger lists as done");
  run->add_flag("--force", ra.force,
                "resume even though the graph config changed since the ledger was written");
  run->add_option("--max-restarts", ra.max_restarts,
                  "restarts of a crashed worker, with resume (default 3)")
      ->check(CLI::Range(0, 1000));
  run->add_option("--metrics-addr", ra.metrics_addr,
                  "serve Prometheus metrics at http://HOST:PORT/metrics while the run goes on "
                  "(a bare PORT listens on 127.0.0.1 only; 0 picks a free port; with -P, the "
                  "job's totals)");
  run->add_option("--worker", ra.worker)->group("");  // set by the launcher for its workers

  PlanInput plan_in;
  plan_in.jobs = {1, 5, 10, 20};
  plan_in.processes = {1, 4};
  double latency_ms = 200;
  auto* plan = app.add_subcommand(
      "plan", "Estimate requests, tokens, cost and wall time for a job size and worker counts");
  plan->add_option("GRAPH", graph, "graph config (JSON)")->required();
  plan->add_option("--docs", plan_in.docs, "documents in the job")
      ->required()
      ->check(CLI::PositiveNumber);
  plan->add_option("--latency-ms", latency_ms, "upstream latency per request (default 200)")
      ->check(CLI::PositiveNumber);
  plan->add_option("--doc-chars", plan_in.doc_chars,
                   "text per document, for chunks and tokens (default 2000)")
      ->check(CLI::PositiveNumber);
  plan->add_option("--cpu-ms-per-doc", plan_in.cpu_ms_per_doc,
                   "CPU time per document on one thread, e.g. from a `sluice run --report` "
                   "(default: not a limit)")
      ->check(CLI::NonNegativeNumber);
  plan->add_option("--threads", plan_in.threads, "threads per process (default 1)")
      ->check(CLI::Range(1, kMaxThreads));
  plan->add_option("--jobs", plan_in.jobs,
                   "job (shard) counts, comma-separated (default 1,5,10,20)")
      ->delimiter(',')
      ->check(CLI::Range(1, 1000000));
  plan->add_option("--processes", plan_in.processes,
                   "processes per job, comma-separated (default 1,4)")
      ->delimiter(',')
      ->check(CLI::Range(1, kMaxProcesses));
  plan->add_option("--set", sets, "override a declared var: name=value (repeatable)");

  BenchOptions bo;
  auto* bench = app.add_subcommand("bench", "Benchmark a graph: docs/s and more for each threads x "
                                            "processes combination, as a table, CSV, JSON and SVG");
  bench
      ->add_option("GRAPH", bo.graph,
                   "graph config (JSON), e.g. graphs/bench-sim.json or graphs/bench-cpu.json")
      ->required();
  bench
      ->add_option("--threads", bo.threads,
                   "threads per process, comma-separated (default: 1, 2, 4 ... up to the cores)")
      ->delimiter(',')
      ->check(CLI::Range(1, kMaxThreads));
  bench->add_option("--processes,-P", bo.processes, "process counts, comma-separated (default 1)")
      ->delimiter(',')
      ->check(CLI::Range(1, kMaxProcesses));
  bench
      ->add_option("--repeat", bo.repeat,
                   "measured runs per combination; the table shows their median (default 3)")
      ->check(CLI::Range(1, 1000));
  bench->add_option("--warmup", bo.warmup, "discarded runs before them (default 1)")
      ->check(CLI::Range(0, 1000));
  bench->add_option("--sim", bo.sim,
                    "flags for the sim bench starts when the graph has a `sim` var, e.g. "
                    "\"latency-ms=50,rpm=60000,error-rate=0.01,docs=20000\"");
  bench->add_option(
      "--set", bo.sets,
      "override a declared var: name=value (repeatable); --set sim=URL uses your own sim");
  bench->add_option(
      "--out", bo.out_dir,
      "directory for results.csv, results.json, throughput.svg (default out/bench-GRAPH)");
  bench
      ->add_option("--timeout", bo.run_timeout_s,
                   "seconds one run may take before it is interrupted (default 1800)")
      ->check(CLI::PositiveNumber);
  bench->add_flag("--quiet,-q", bo.quiet, "no progress lines");

  auto* validate =
      app.add_subcommand("validate", "Check a graph config; print every error at once");
  validate->add_option("GRAPH", graph, "graph config (JSON)")->required();
  validate->add_option("--set", sets, "override a declared var: name=value (repeatable)");

  auto* nodes = app.add_subcommand("nodes", "List node types, or show one type's params");
  nodes->add_option("TYPE", type, "node type, e.g. chunk.recursive");

  auto* search = app.add_subcommand("search", "Query an index.sqlite database");
  std::vector<std::string> search_args;
  SearchRequest search_req;
  std::string search_queries_file;
  search
      ->add_option("DB... QUERY", search_args,
                   "index files written by index.sqlite (several: a sharded job's, merged by "
                   "score), then the words to look for (\"in double quotes\" for a phrase)")
      ->required()
      ->expected(1, 1 << 20);
  search->add_option("--k", search_req.k, "number of results")->check(CLI::Range(1, 10000));
  search_req.mode_text = "bm25";
  search
      ->add_option("--mode", search_req.mode_text,
                   "bm25 (full text), vector (embedding), hybrid (both, fused)")
      ->check(CLI::IsMember({"bm25", "vector", "hybrid"}));
  search->add_flag("--exact", search_req.vector.exact,
                   "score every vector rather than walk the nearest-neighbour graph, and let "
                   "FTS5 rank every match rather than add up the bm25 postings (slower; bm25's "
                   "scores are the same either way)");
  search
      ->add_option("--ef", search_req.vector.ef,
                   "vector and hybrid with a nearest-neighbour graph: candidates to keep (default "
                   "512, and 2048 once a process that keeps searching holds the graph in memory; "
                   "more: closer to exact, slower)")
      ->check(CLI::Range(1, 100000));
  search->add_option("--queries", search_queries_file,
                     "run each line of this file as a query (give no QUERY): one JSON line per "
                     "query with its time in ms and its results");
  search->add_flag("--json", search_json,
                   "print a JSON array of results (rank, id, doc_id, score, text, meta)");
  search
      ->add_option("--vector-weight", search_req.vector_weight,
                   "hybrid: the vector scores' share of the fused score, 0 to 1 (default: 0.02 "
                   "for embed.hash, 0.1 for semantic embedders; measure before raising it)")
      ->check(CLI::Range(0.0, 1.0));
  search->add_option("--graph", graph,
                     "the graph that built the index: its embedder node (an HTTP API) embeds the "
                     "query for vector and hybrid mode, with its endpoint and key");
  search->add_option("--node", search_node, "with --graph: the embedder node's id");
  search->add_option("--set", sets, "with --graph: override a declared var: name=value");

  auto* build_search = app.add_subcommand(
      "build-search",
      "Write an index's nearest-neighbour graph (fast vector search) and bm25 postings (fast "
      "full-text search), or bring them up to date (index.sqlite does it itself from 100000 "
      "chunks)");
  std::vector<std::string> build_search_dbs;
  bool build_search_rebuild = false;
  build_search->add_option("DB", build_search_dbs, "index files written by index.sqlite")
      ->required();
  build_search->add_flag("--rebuild", build_search_rebuild, "start over rather than update");

  TrainEmbedderOptions train;
  train.glob = "*";
  auto* train_cmd = app.add_subcommand(
      "train-embedder",
      "Train a fastText model (skipgram) on a folder of text, for embed.fasttext");
  train_cmd->add_option("DIR", train.dir, "folder of text files (read recursively)")->required();
  train_cmd->add_option("--out", train.out, "model path (.bin)")->required();
  train_cmd->add_option("--glob", train.glob, "file names to read, e.g. \"*.md\"");
  train_cmd->add_option("--dim", train.dim, "vector dimensions")->check(CLI::Range(8, 1024));
  train_cmd->add_option("--epoch", train.epoch, "passes over the text")->check(CLI::Range(1, 100));
  train_cmd->add_option("--min-count", train.min_count, "ignore words seen fewer times")
      ->check(CLI::Range(1, 1000000));
  train_cmd->add_option("--threads", train.threads, "training threads (default: every core)")
      ->check(CLI::Range(1, kMaxThreads));
  train_cmd->add_option("--seed", train.seed, "random seed");

  auto* schema_cmd = app.add_subcommand(
      "schema",
      "Print a JSON Schema of graph configs (every node type's params), for editors: name it in "
      "a graph with \"$schema\"");

  auto* graph_cmd = app.add_subcommand("graph", "Print a graph config as Graphviz DOT");
  graph_cmd->add_option("GRAPH", graph, "graph config (JSON)")->required();
  graph_cmd->add_flag("--dot", dot, "DOT output (the default and only format)");
  graph_cmd->add_option("--set", sets, "override a declared var: name=value (repeatable)");

  sim::SimOptions sim_opts;
  auto* sim_cmd =
      app.add_subcommand("sim", "Serve a simulated upstream on loopback for tests and benchmarks");
  sim_cmd->add_option("--port", sim_opts.port,
                      "port (0 = pick one); the first stdout line says which");
  sim_cmd->add_option("--docs", sim_opts.docs, "corpus size");
  sim_cmd->add_option("--latency-ms", sim_opts.latency_ms, "mean response latency");
  sim_cmd->add_option("--latency-jitter-ms", sim_opts.latency_jitter_ms,
                      "uniform jitter around the mean");
  sim_cmd->add_option("--rpm", sim_opts.rpm,
                      "requests per minute, enforced in 1-second windows (429 beyond)");
  sim_cmd->add_option("--tpm", sim_opts.tpm, "embedding tokens per minute, likewise");
  sim_cmd->add_option("--error-rate", sim_opts.error_rate, "fraction answered 500")
      ->check(CLI::Range(0.0, 1.0));
  sim_cmd->add_option("--reset-rate", sim_opts.reset_rate, "fraction whose connection is reset")
      ->check(CLI::Range(0.0, 1.0));
  sim_cmd->add_option("--timeout-rate", sim_opts.timeout_rate, "fraction never answered")
      ->check(CLI::Range(0.0, 1.0));
  sim_cmd
      ->add_option("--malformed-rate", sim_opts.malformed_rate, "fraction with a broken JSON body")
      ->check(CLI::Range(0.0, 1.0));
  sim_cmd
      ->add_option("--bulk-fail-rate", sim_opts.bulk_fail_rate,
                   "fraction of _bulk items answered 429")
      ->check(CLI::Range(0.0, 1.0));
  sim_cmd->add_option("--sefaria-books", sim_opts.sefaria_books,
                      "synthetic books (20 chapters of 6 verses each) added to the Sefaria "
                      "library, for benchmarks");
  sim_cmd->add_option(
      "--max-concurrent", sim_opts.max_concurrent,
      "requests served at once beyond which it answers 503 (an overloaded upstream); 0 = none");
  sim_cmd->add_option("--doc-bytes", sim_opts.doc_bytes, "text bytes per generated document");
  sim_cmd->add_option("--seed", sim_opts.seed, "seed for faults and content");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    if (*run) return cmd_run(ra);
    if (*validate) return cmd_validate(graph, sets);
    if (*bench) {
      bo.self_exe = self_exe();
      for (int i = 0; i < argc; ++i) bo.command_line += (i ? " " : "") + std::string(argv[i]);
      bo.interrupt = &g_interrupt;
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      return run_bench(bo);
    }
    if (*plan) {
      plan_in.latency_s = latency_ms / 1000.0;
      return cmd_plan(graph, sets, plan_in);
    }
    if (*nodes) return cmd_nodes(type);
    if (*search)
      return cmd_search(search_args, search_req, search_queries_file, search_json,
                        graph_query_embedder(graph, search_node, sets));
    if (*build_search) return cmd_build_search(build_search_dbs, build_search_rebuild);
    if (*graph_cmd) return cmd_graph(graph, sets);
    if (*schema_cmd) {
      const std::string text = graph_schema(builtin_registry());
      std::fwrite(text.data(), 1, text.size(), stdout);
      return 0;
    }
    if (*train_cmd) {
      train.verbose = isatty(STDERR_FILENO) != 0;
      const TrainEmbedderResult r = train_fasttext(train);
      std::printf("trained %s: %lld words, %d dimensions, from %zu files (%.1f MB; %zu binary "
                  "skipped) in %.1f s\nuse it: {\"type\": \"embed.fasttext\", \"params\": "
                  "{\"model\": \"%s\"}}\n",
                  r.model.c_str(), static_cast<long long>(r.words), train.dim, r.files,
                  static_cast<double>(r.bytes) / 1e6, r.skipped, r.seconds, r.model.c_str());
      return 0;
    }
    if (*sim_cmd) return sim::run_sim_forever(sim_opts);
  } catch (const ConfigError& e) {
    std::fputs(e.text.c_str(), stderr);
    std::fprintf(stderr, "%zu error%s\n", e.diagnostics.size(),
                 e.diagnostics.size() == 1 ? "" : "s");
    return 2;
  } catch (const CLI::ValidationError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
