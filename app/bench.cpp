#include "app/bench.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "app/bench_internal.hpp"
#include "app/plan.hpp"
#include "app/spawn.hpp"
#include "engine/diagnostics.hpp"
#include "engine/json/json.hpp"
#include "engine/node.hpp"
#include "nodes/builtin_nodes.hpp"

namespace sluice {

namespace {

using namespace bench_detail;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---- --sim flags ---------------------------------------------------------------------------

struct SimFlag {
  const char* name;
  std::function<void(sim::SimOptions&, double)> set;
  double min, max;
};

const std::vector<SimFlag>& sim_flags() {
  static const std::vector<SimFlag> flags = {
      {"docs", [](sim::SimOptions& o, double v) { o.docs = static_cast<uint64_t>(v); }, 1, 1e9},
      {"latency-ms", [](sim::SimOptions& o, double v) { o.latency_ms = v; }, 0, 600000},
      {"latency-jitter-ms", [](sim::SimOptions& o, double v) { o.latency_jitter_ms = v; }, 0,
       600000},
      {"rpm", [](sim::SimOptions& o, double v) { o.rpm = static_cast<int64_t>(v); }, 0, 1e12},
      {"tpm", [](sim::SimOptions& o, double v) { o.tpm = static_cast<int64_t>(v); }, 0, 1e15},
      {"error-rate", [](sim::SimOptions& o, double v) { o.error_rate = v; }, 0, 1},
      {"reset-rate", [](sim::SimOptions& o, double v) { o.reset_rate = v; }, 0, 1},
      {"timeout-rate", [](sim::SimOptions& o, double v) { o.timeout_rate = v; }, 0, 1},
      {"malformed-rate", [](sim::SimOptions& o, double v) { o.malformed_rate = v; }, 0, 1},
      {"bulk-fail-rate", [](sim::SimOptions& o, double v) { o.bulk_fail_rate = v; }, 0, 1},
      {"doc-bytes", [](sim::SimOptions& o, double v) { o.doc_bytes = static_cast<size_t>(v); }, 1,
       1e9},
      {"seed", [](sim::SimOptions& o, double v) { o.seed = static_cast<uint64_t>(v); }, 0, 1e18},
  };
  return flags;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

std::string tail_lines(const std::string& text, int n) {
  size_t pos = text.size();
  while (pos > 0 && text[pos - 1] == '\n') --pos;
  int seen = 0;
  size_t start = pos;
  while (start > 0) {
    if (text[start - 1] == '\n' && ++seen == n) break;
    --start;
  }
  return text.substr(start, pos - start);
}

struct Machine {
  int cores = 1;
  std::string cpu_model;
  uint64_t memory_bytes = 0;
};

Machine machine_info() {
  Machine m;
  m.cores = std::max(1u, std::thread::hardware_concurrency());
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto c = line.find(':');
      size_t v = c == std::string::npos ? c : line.find_first_not_of(" \t", c + 1);
      if (v != std::string::npos) m.cpu_model = line.substr(v);
      break;
    }
  }
  std::ifstream mem("/proc/meminfo");
  for (std::string line; std::getline(mem, line);) {
    if (line.rfind("MemTotal:", 0) == 0) {
      m.memory_bytes = std::stoull(line.substr(9)) * 1024;
      break;
    }
  }
  return m;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

// ---- child runs ----------------------------------------------------------------------------

struct ChildResult {
  int exit_code = -1;  // 128 + signal for a signalled child
  double cpu_s = 0;
  bool timed_out = false;
};

// Runs `exe args...` with stdout and stderr in `log`, in its own process group (a Ctrl-C reaches
// it once, from us) and killed if we die. Sends SIGINT on timeout or interrupt, SIGKILL 15 s later.
ChildResult run_child(const std::string& exe, const std::vector<std::string>& args,
                      const fs::path& log, double timeout_s, const std::atomic<bool>* interrupt) {
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot write " + log.string());
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  SpawnOptions spawn{true, {{log_fd, 1}, {log_fd, 2}}};
  if (null_fd >= 0) spawn.fds.emplace_back(null_fd, 0);
  pid_t pid = -1;
  try {
    pid = spawn_child(exe, args, spawn);
  } catch (...) {
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    throw;
  }
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  ChildResult res;
  auto t0 = Clock::now();
  bool sent_int = false;
  Clock::time_point int_at{};
  for (;;) {
    int status = 0;
    struct rusage ru {};
    pid_t w = wait4(pid, &status, WNOHANG, &ru);
    if (w < 0 && errno != EINTR) return res;  // not our child any more: nothing to wait for
    if (w == pid) {
      res.cpu_s = cpu_seconds(ru);
      res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return res;
    }
    double el = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!sent_int && (el > timeout_s || (interrupt && interrupt->load()))) {
      res.timed_out = el > timeout_s;
      kill(pid, SIGINT);
      sent_int = true;
      int_at = Clock::now();
    }
    if (sent_int && Clock::now() - int_at > std::chrono::seconds(15)) kill(pid, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void summarize(BenchRow& row) {
  std::vector<size_t> ok;
  for (size_t i = 0; i < row.runs.size(); ++i)
    if (run_ok(row.runs[i])) ok.push_back(i);
  row.failed_runs = static_cast<int>(row.runs.size() - ok.size());
  if (ok.empty()) return;
  std::sort(ok.begin(), ok.end(), [&](size_t a, size_t b) {
    return row.runs[a].report.docs_per_s() < row.runs[b].report.docs_per_s();
  });
  // The lower middle for an even count: every column of the row then comes from one real run,
  // so docs/s x elapsed = docs holds in the table.
  row.median = ok[(ok.size() - 1) / 2];
  row.docs_per_s_min = row.runs[ok.front()].report.docs_per_s();
  row.docs_per_s_max = row.runs[ok.back()].report.docs_per_s();
}

// The steady-state I/O ideal from the graph's own limits (sluice plan) and the sim's latency
// and rate limits. 0 when unknown (no sim we started, no latency, no I/O node).
double io_ideal(const GraphSpec& spec, const sim::SimOptions& so, int threads, int processes,
                std::string& from) {
  if (so.latency_ms <= 0) return 0;
  bool any_io = false;
  for (const auto& n : spec.nodes) any_io = any_io || n.info->io;
  if (!any_io) return 0;
  PlanInput in;
  in.docs = static_cast<double>(so.docs);
  in.latency_s = so.latency_ms / 1000.0;
  in.doc_chars = static_cast<double>(so.doc_bytes);
  in.threads = threads;
  in.jobs = {1};
  in.processes = {processes};
  Plan plan = make_plan(spec, in);
  if (plan.rows.empty() || !std::isfinite(plan.rows[0].docs_per_s)) return 0;
  double ideal = plan.rows[0].docs_per_s;
  from = plan.rows[0].binds + " at " + fmt("%g", so.latency_ms) + " ms";
  double requests = 0;
  for (const auto& s : plan.stages) requests += s.requests;
  if (so.rpm > 0 && requests > 0) {
    double r = static_cast<double>(so.rpm) / 60.0 / (requests / in.docs);
    if (r < ideal) {
      ideal = r;
      from = "upstream rate limit (" + std::to_string(so.rpm) + " rpm)";
    }
  }
  if (so.tpm > 0 && plan.tokens > 0) {
    double r = static_cast<double>(so.tpm) / 60.0 / (plan.tokens / in.docs);
    if (r < ideal) {
      ideal = r;
      from = "upstream token limit (" + std::to_string(so.tpm) + " tpm)";
    }
  }
  return ideal;
}

void name_bottleneck(BenchRow& row, const sim::SimOptions* so, int cores) {
  const BenchRun* m = median_run(row);
  if (!m) {
    row.bottleneck = "failed";
    return;
  }
  const RunReport& r = m->report;
  for (const auto& n : r.nodes) {
    double u = n.utilization(r.elapsed_s, r.threads);
    if (u > row.busiest_utilization || row.busiest_node.empty()) {
      row.busiest_utilization = u;
      row.busiest_node = n.id;
    }
  }
  const double rate = r.docs_per_s();
  const double cores_busy = per_s(m->cpu_s, r.elapsed_s);
  const int usable = std::min(row.threads * row.processes, cores);
  if (so && so->rpm > 0 &&
      per_s(static_cast<double>(r.http.attempts), r.elapsed_s) >= 0.9 * so->rpm / 60.0) {
    row.bottleneck = "upstream rate limit";
  } else if (row.ideal_docs_per_s > 0 && rate >= 0.9 * row.ideal_docs_per_s &&
             row.ideal_from.rfind("linear", 0) != 0) {
    row.bottleneck = row.ideal_from;
  } else if (cores_busy >= 0.85 * usable) {
    row.bottleneck = "CPU (" + fmt("%.1f", cores_busy) + " of " + std::to_string(usable) +
                     " usable cores busy; busiest: " + row.busiest_node + " " +
                     fmt("%.0f", 100 * row.busiest_utilization) + "%)";
  } else {
    row.bottleneck = "node " + row.busiest_node + " (" +
                     fmt("%.0f", 100 * row.busiest_utilization) + "% utilized)";
  }
}

std::vector<int> default_threads(int cores) {
  std::vector<int> t;
  for (int n = 1; n < cores; n *= 2) t.push_back(n);
  t.push_back(cores);
  return t;
}

}  // namespace

sim::SimOptions parse_sim_flags(const std::string& text) {
  sim::SimOptions o;
  std::vector<std::string> names;
  for (const auto& f : sim_flags()) names.emplace_back(f.name);
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(pos, end - pos);
    pos = end + 1;
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty()) {
      if (end == text.size()) break;
      continue;
    }
    size_t eq = item.find('=');
    std::string key = item.substr(0, eq);
    if (key.rfind("--", 0) == 0) key = key.substr(2);
    if (eq == std::string::npos)
      throw std::invalid_argument("--sim: expected name=value, got \"" + item +
                                  "\" (e.g. latency-ms=50,rpm=60000)");
    if (key == "port")
      throw std::invalid_argument(
          "--sim: bench picks the sim's port itself; to use a sim you started, --set sim=URL");
    auto it = std::find_if(sim_flags().begin(), sim_flags().end(),
                           [&](const SimFlag& f) { return key == f.name; });
    if (it == sim_flags().end())
      throw std::invalid_argument("--sim: unknown sim flag \"" + key + "\"" +
                                  did_you_mean(key, names) + " (`sluice sim --help` lists them)");
    std::string val = item.substr(eq + 1);
    char* e = nullptr;
    double v = std::strtod(val.c_str(), &e);
    if (val.empty() || *e != '\0' || !std::isfinite(v) || v < it->min || v > it->max)
      throw std::invalid_argument("--sim: " + key + " must be a number from " + fmt("%g", it->min) +
                                  " to " + fmt("%g", it->max) + ", got \"" + val + "\"");
    it->set(o, v);
  }
  return o;
}

int run_bench(const BenchOptions& o) {
  const Registry& reg = builtin_registry();
  std::vector<VarOverride> overrides;
  bool sim_set_by_user = false;
  for (const auto& s : o.sets) {
    VarOverride v;
    if (!parse_override(s, v))
      throw std::invalid_argument("--set: expected name=value, got \"" + s + "\"");
    sim_set_by_user = sim_set_by_user || v.name == "sim";
    overrides.push_back(v);
  }
  // Validates the graph and the overrides before anything runs.
  GraphSpec spec = load_graph(o.graph, overrides, reg, {{"shard", "0"}});
  const bool uses_sim = spec.vars.count("sim") > 0;
  if (!o.sim.empty() && !uses_sim)
    throw std::invalid_argument(
        "--sim: graph \"" + spec.name +
        "\" declares no `sim` var, so no sim would be used (graphs/bench-sim.json does)");
  if (!o.sim.empty() && sim_set_by_user)
    throw std::invalid_argument(
        "--sim starts a sim, but --set sim=... points the graph at another one: pick one");
  const sim::SimOptions sim_opts = parse_sim_flags(o.sim);
  const bool start_sim = uses_sim && !sim_set_by_user;
  if (o.repeat < 1) throw std::invalid_argument("--repeat must be at least 1");
  if (o.warmup < 0) throw std::invalid_argument("--warmup must be 0 or more");

  const Machine machine = machine_info();
  std::vector<int> threads = o.threads.empty() ? default_threads(machine.cores) : o.threads;
  std::vector<int> processes = o.processes.empty() ? std::vector<int>{1} : o.processes;
  for (int t : threads)
    if (t < 1)
      throw std::invalid_argument("--threads: every count must be at least 1, got " +
                                  std::to_string(t));
  for (int p : processes)
    if (p < 1)
      throw std::invalid_argument("--processes: every count must be at least 1, got " +
                                  std::to_string(p));

  const fs::path out =
      o.out_dir.empty() ? fs::path("out") / ("bench-" + spec.name) : fs::path(o.out_dir);
  const fs::path runs_dir = out / "runs";
  fs::create_directories(runs_dir);

  std::vector<BenchRow> rows;
  for (int p : processes)
    for (int t : threads) {
      BenchRow row;
      row.threads = t;
      row.processes = p;
      rows.push_back(std::move(row));
    }
  const int per_combo = o.warmup + o.repeat;
  const int total_runs = static_cast<int>(rows.size()) * per_combo;
  if (!o.quiet)
    std::fprintf(
        stderr,
        "bench: %s, %zu combinations x (%d warmup + %d measured) = %d runs%s; %d cores (%s)\n",
        spec.name.c_str(), rows.size(), o.warmup, o.repeat, total_runs,
        start_sim
            ? (", each against a fresh sim" + (o.sim.empty() ? "" : " (" + o.sim + ")")).c_str()
            : "",
        machine.cores, machine.cpu_model.c_str());
  const bool tty = isatty(STDERR_FILENO);
  const auto t0 = Clock::now();
  int done_runs = 0;
  bool interrupted = false;
  std::string first_failure;

  for (size_t ri = 0; ri < rows.size() && !interrupted; ++ri) {
    BenchRow& row = rows[ri];
    for (int k = 0; k < per_combo && !interrupted; ++k) {
      const bool warm = k < o.warmup;
      if (!o.quiet) {
        double el = std::chrono::duration<double>(Clock::now() - t0).count();
        std::string eta = done_runs > 0
                              ? "  ETA " + human_duration(el / done_runs * (total_runs - done_runs))
                              : "";
        std::string what =
            warm ? "warmup " + std::to_string(k + 1) + "/" + std::to_string(o.warmup)
                 : "run " + std::to_string(k - o.warmup + 1) + "/" + std::to_string(o.repeat);
        std::fprintf(stderr, "%sbench: [%zu/%zu] %s, %s  elapsed %s%s%s", tty ? "\r\033[K" : "",
                     ri + 1, rows.size(), combo_text(row.threads, row.processes).c_str(),
                     what.c_str(), human_duration(el).c_str(), eta.c_str(), tty ? "" : "\n");
        std::fflush(stderr);
      }
      std::string stem =
          "t" + std::to_string(row.threads) + "-p" + std::to_string(row.processes) +
          (warm ? "-warmup" + std::to_string(k + 1) : "-run" + std::to_string(k - o.warmup + 1));
      const fs::path report_path = runs_dir / (stem + ".json");
      const fs::path log_path = runs_dir / (stem + ".log");
      fs::remove(report_path);
      std::vector<std::string> args = {"run",
                                       o.graph,
                                       "--quiet",
                                       "--threads",
                                       std::to_string(row.threads),
                                       "--processes",
                                       std::to_string(row.processes),
                                       "--report",
                                       report_path.string(),
                                       "--state",
                                       (runs_dir / "state").string(),
                                       "--max-restarts",
                                       "0"};
      for (const auto& s : o.sets) {
        args.emplace_back("--set");
        args.push_back(s);
      }
      std::unique_ptr<sim::SimServer> server;
      if (start_sim) {
        server = std::make_unique<sim::SimServer>(sim_opts);
        int port = server->start();
        args.emplace_back("--set");
        args.push_back("sim=http://127.0.0.1:" + std::to_string(port));
      }
      ChildResult cr = run_child(o.self_exe, args, log_path, o.run_timeout_s, o.interrupt);
      server.reset();
      ++done_runs;
      BenchRun run;
      run.exit_code = cr.exit_code;
      run.cpu_s = cr.cpu_s;
      std::string report_text = fs::exists(report_path) ? read_file(report_path) : "";
      bool have_report = !report_text.empty() && RunReport::from_json(report_text, run.report);
      if (cr.timed_out) run.failure = "timed out after " + human_duration(o.run_timeout_s);
      else if (cr.exit_code == 130 || (o.interrupt && o.interrupt->load()))
        run.failure = "interrupted";
      else if (!have_report)
        run.failure = "exit status " + std::to_string(cr.exit_code) + " without a report";
      else if (!run.report.error.empty()) run.failure = run.report.error;
      else if (run.report.lost > 0)
        run.failure = std::to_string(run.report.lost) + " documents lost";
      else if (cr.exit_code != 0) run.failure = "exit status " + std::to_string(cr.exit_code);
      if (run.failure == "interrupted") interrupted = true;
      if (!run.failure.empty() && !interrupted) {
        std::string log_tail = tail_lines(read_file(log_path), 5);
        std::fprintf(stderr, "%sbench: %s %s failed: %s (log: %s)%s%s\n", tty ? "\r\033[K" : "",
                     combo_text(row.threads, row.processes).c_str(), stem.c_str(),
                     run.failure.c_str(), log_path.c_str(), log_tail.empty() ? "" : "\n",
                     log_tail.c_str());
        if (first_failure.empty()) first_failure = run.failure;
      }
      if (!warm) row.runs.push_back(std::move(run));
    }
  }
  if (!o.quiet && tty) std::fputs("\r\033[K", stderr);

  // Summaries, ideals and bottlenecks.
  for (auto& row : rows) {
    summarize(row);
    if (start_sim)
      row.ideal_docs_per_s = io_ideal(spec, sim_opts, row.threads, row.processes, row.ideal_from);
  }
  // A graph with no known I/O ideal: linear scaling from 1 thread x 1 process, capped at the cores.
  const BenchRow* base = nullptr;
  for (const auto& row : rows)
    if (row.threads == 1 && row.processes == 1 && median_run(row)) base = &row;
  for (auto& row : rows) {
    if (row.ideal_docs_per_s > 0 || !base) continue;
    int lanes = std::min(row.threads * row.processes, machine.cores);
    row.ideal_docs_per_s = median_run(*base)->report.docs_per_s() * lanes;
    row.ideal_from =
        "linear from 1x1, " + std::to_string(lanes) + (lanes == 1 ? " core" : " cores");
  }
  for (auto& row : rows) name_bottleneck(row, start_sim ? &sim_opts : nullptr, machine.cores);

  // Files.
  write_file(out / "results.csv", bench_csv(rows));
  std::string title = spec.name + ": docs/s vs threads (median of " + std::to_string(o.repeat) +
                      ", " + std::to_string(machine.cores) + "-core machine)";
  write_file(out / "throughput.svg", bench_svg(title, rows));
  {
    std::string j =
        "{\"graph\":" + json::quoted(spec.name) + ",\"graph_file\":" + json::quoted(o.graph) +
        ",\"command\":" + json::quoted(o.command_line) + ",\"date\":" + json::quoted(utc_now()) +
        ",\"machine\":{\"cores\":" + std::to_string(machine.cores) +
        ",\"cpu_model\":" + json::quoted(machine.cpu_model) +
        ",\"memory_bytes\":" + std::to_string(machine.memory_bytes) + "}" +
        ",\"repeat\":" + std::to_string(o.repeat) + ",\"warmup\":" + std::to_string(o.warmup) +
        ",\"sim\":" + (start_sim ? json::quoted(o.sim) : std::string("null")) +
        ",\"interrupted\":" + (interrupted ? "true" : "false") + ",\"combinations\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      if (i) j += ',';
      const auto& cols = bench_csv_columns();
      auto vals = csv_values(rows[i]);
      j += "{\"summary\":{";
      for (size_t c = 0; c < cols.size(); ++c) {
        if (c) j += ',';
        j += json::quoted(cols[c]) + ":";
        const std::string& v = vals[c];
        const bool text =
            cols[c] == "ideal_from" || cols[c] == "bottleneck" || cols[c] == "busiest_node";
        if (text) j += json::quoted(v);
        else if (v.empty()) j += "null";
        else j += v;  // numbers, always finite (num() leaves non-finite values empty)
      }
      j += "},\"runs\":[";
      for (size_t k = 0; k < rows[i].runs.size(); ++k)
        j += (k ? "," : "") + run_json(rows[i].runs[k]);
      j += "]}";
    }
    j += "]}\n";
    write_file(out / "results.json", j);
  }

  // The table.
  std::printf("%s on %d cores (%s), median of %d runs after %d warmup\n", spec.name.c_str(),
              machine.cores, machine.cpu_model.c_str(), o.repeat, o.warmup);
  std::printf("%7s %5s  %-24s %9s %9s %26s %9s %8s %5s %4s %9s %6s  %s\n", "threads", "procs",
              "docs/s (min-max)", "chunks/s", "req/s", "latency p50/p95/p99 ms", "cpu ms/doc",
              "RSS MiB", "429s", "lost", "ideal", "ratio", "bottleneck");
  for (const auto& row : rows) {
    const BenchRun* m = median_run(row);
    if (!m) {
      std::printf("%7d %5d  failed (%d of %zu runs)\n", row.threads, row.processes, row.failed_runs,
                  row.runs.size());
      continue;
    }
    const RunReport& r = m->report;
    std::string rate = fmt("%.0f", r.docs_per_s()) + " (" + fmt("%.0f", row.docs_per_s_min) + "-" +
                       fmt("%.0f", row.docs_per_s_max) + ")";
    std::string lat = r.http.requests ? fmt("%.1f", r.http.latency.quantile_ms(0.5)) + "/" +
                                            fmt("%.1f", r.http.latency.quantile_ms(0.95)) + "/" +
                                            fmt("%.1f", r.http.latency.quantile_ms(0.99))
                                      : "-";
    std::printf(
        "%7d %5d  %-24s %9.0f %9.0f %26s %10.3f %8.1f %5llu %4llu %9s %6s  %s\n", row.threads,
        row.processes, rate.c_str(), per_s(static_cast<double>(r.chunks), r.elapsed_s),
        per_s(static_cast<double>(r.http.requests), r.elapsed_s), lat.c_str(),
        r.docs ? 1000 * m->cpu_s / static_cast<double>(r.docs) : 0.0, r.peak_rss_bytes / 1048576.0,
        static_cast<unsigned long long>(r.http.throttled), static_cast<unsigned long long>(r.lost),
        row.ideal_docs_per_s > 0 ? fmt("%.0f", row.ideal_docs_per_s).c_str() : "-",
        row.ideal_docs_per_s > 0 ? fmt("%.2fx", r.docs_per_s() / row.ideal_docs_per_s).c_str()
                                 : "-",
        row.bottleneck.c_str());
  }
  bool ideal_known = false;
  for (const auto& row : rows) ideal_known = ideal_known || row.ideal_docs_per_s > 0;
  if (ideal_known) {
    std::printf("ideal: ");
    std::string last;
    for (const auto& row : rows)
      if (row.ideal_docs_per_s > 0 && row.ideal_from != last) {
        std::printf("%s%s", last.empty() ? "" : "; ",
                    (combo_text(row.threads, row.processes) + ": " + row.ideal_from).c_str());
        last = row.ideal_from;
      }
    std::printf("\n");
  }
  uint64_t throttled = 0, attempts = 0;
  for (const auto& row : rows)
    if (const BenchRun* m = median_run(row)) {
      throttled += m->report.http.throttled;
      attempts += m->report.http.attempts;
    }
  if (attempts > 0 && throttled * 50 > attempts)
    std::printf(
        "hint: %llu of %llu requests were answered 429: tell the graph the upstream's limit (its "
        "rpm "
        "params; graphs/bench-sim.json takes --set rpm=N) so it paces instead of retrying\n",
        static_cast<unsigned long long>(throttled), static_cast<unsigned long long>(attempts));
  std::printf("wrote %s, %s, %s (per-run reports and logs in %s)\n", (out / "results.csv").c_str(),
              (out / "results.json").c_str(), (out / "throughput.svg").c_str(), runs_dir.c_str());
  if (interrupted) {
    std::fprintf(stderr, "bench: interrupted; results hold the runs that finished\n");
    return 130;
  }
  int failed = 0;
  for (const auto& row : rows) failed += row.failed_runs;
  if (failed > 0) {
    std::fprintf(stderr, "bench: %d run%s failed (first: %s)\n", failed, failed == 1 ? "" : "s",
                 first_failure.c_str());
    return 1;
  }
  return 0;
}

}  // namespace sluice
