#include "app/launcher.hpp"

#include "app/spawn.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>

#include <rapidjson/document.h>

namespace sluice {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kEventsFd = 3;

struct Worker {
  int index = 0;
  pid_t pid = -1;
  int fd = -1;  // read end of the events pipe
  std::string buffer;
  int attempts = 0;
  int last_exit = 0;      // exit status, or 128 + signal
  bool finished = false;  // ended and will not be started again
  bool have_report = false;
  RunReport report;  // the last attempt's report
  std::string report_json;
  // Last progress event of the running attempt.
  uint64_t docs_done = 0, chunks = 0;
  int64_t in_flight = 0;
  uint64_t total = 0;
  bool total_known = false;
  uint64_t expanded = 0;  // documents its source items expanded into
  std::string unit, expanded_unit;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void start(Worker& w, const LaunchPlan& plan) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::vector<std::string> args = plan.worker_args;
  args.emplace_back("--worker");
  args.push_back(std::to_string(w.index) + "/" + std::to_string(plan.processes));
  args.emplace_back("--threads");
  args.push_back(std::to_string(plan.threads_per_worker));
  pid_t pid = -1;
  try {
    // Its own process group: a Ctrl-C at the terminal reaches a worker once, from us (twice, it
    // would read as the second Ctrl-C that stops a run at once).
    pid = spawn_child(plan.self_exe, args, SpawnOptions{true, {{fds[1], kEventsFd}}});
  } catch (...) {
    close(fds[0]);
    close(fds[1]);
    throw;
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  w.pid = pid;
  w.fd = fds[0];
  w.buffer.clear();
  w.docs_done = w.chunks = w.expanded = 0;
  w.in_flight = 0;
  ++w.attempts;
}

void handle_line(Worker& w, JobTotals& totals, const std::string& line) {
  rapidjson::Document d;
  d.Parse(line.data(), line.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("event") || !d["event"].IsString()) return;
  std::string ev = d["event"].GetString();
  auto u64 = [&](const char* k) -> uint64_t {
    auto it = d.FindMember(k);
    return it != d.MemberEnd() && it->value.IsNumber()
               ? static_cast<uint64_t>(it->value.GetDouble())
               : 0;
  };
  if (ev == "progress") {
    w.docs_done = u64("docs_done");
    w.chunks = u64("chunks");
    w.in_flight = static_cast<int64_t>(u64("in_flight"));
    w.total_known = d.HasMember("total");
    w.total = u64("total");
    w.expanded = u64("expanded");
    auto str = [&](const char* k, std::string& out) {
      if (auto it = d.FindMember(k); it != d.MemberEnd() && it->value.IsString())
        out.assign(it->value.GetString(), it->value.GetStringLength());
    };
    str("unit", w.unit);
    str("expanded_unit", w.expanded_unit);
  } else if ((ev == "report" || ev == "snapshot") && d.HasMember("report")) {
    size_t at = line.find("\"report\":");
    std::string body = line.substr(at + 9, line.rfind('}') - at - 9);
    RunReport r;
    if (!RunReport::from_json(body, r)) return;
    if (ev == "snapshot") {
      totals.snapshot(static_cast<size_t>(w.index), std::move(r));
      return;
    }
    totals.report(static_cast<size_t>(w.index), r);
    w.report = std::move(r);
    w.report_json = std::move(body);
    w.have_report = true;
  }
}

// Reads what is there; false at end of file.
bool drain(Worker& w, JobTotals& totals) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(w.fd, buf, sizeof buf);
    if (n > 0) {
      w.buffer.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = w.buffer.find('\n')) != std::string::npos) {
        handle_line(w, totals, w.buffer.substr(0, nl));
        w.buffer.erase(0, nl + 1);
      }
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return true;  // EAGAIN
  }
}

RunReport aggregate(const GraphSpec& spec, std::vector<Worker>& workers, double elapsed,
                    int threads) {
  RunReport rep;
  rep.graph = spec.name;
  rep.config_hash = spec.config_hash;
  rep.elapsed_s = elapsed;
  rep.threads = threads;
  rep.max_inflight_docs = spec.settings.max_inflight_docs;
  for (auto& w : workers) {
    rep.restarts += std::max(0, w.attempts - 1);
    std::string tail = ",\"worker\":" + std::to_string(w.index) +
                       ",\"attempts\":" + std::to_string(w.attempts) +
                       ",\"exit_status\":" + std::to_string(w.last_exit) + "}";
    if (!w.have_report) {
      rep.workers_json.push_back("{\"report\":null" + tail);
      if (rep.error.empty())
        rep.error = "worker " + std::to_string(w.index) + " ended without a report (exit status " +
                    std::to_string(w.last_exit) + ")";
      continue;
    }
    const RunReport& r = w.report;
    std::string j = w.report_json;
    j.pop_back();  // the closing brace: append the worker's own keys
    rep.workers_json.push_back(j + tail);
    rep.add_worker(r);
    if (rep.error.empty() && !r.error.empty())
      rep.error = "worker " + std::to_string(w.index) + ": " + r.error;
  }
  // Busy time summed over P workers: utilization is per worker on average.
  for (auto& n : rep.nodes) n.busy_s /= static_cast<double>(std::max<size_t>(1, workers.size()));
  return rep;
}

}  // namespace

namespace {

std::string event_with_report(const char* event, const RunReport& report) {
  std::string j = report.to_json();
  while (!j.empty() && j.back() == '\n') j.pop_back();
  return std::string("{\"event\":\"") + event + "\",\"report\":" + j + "}\n";
}

}  // namespace

std::string report_event(const RunReport& report) { return event_with_report("report", report); }

void JobTotals::snapshot(size_t worker, RunReport r) {
  if (worker >= _workers.size()) return;
  _workers[worker].latest = std::move(r);
  _workers[worker].have_latest = true;
}

void JobTotals::report(size_t worker, RunReport r) { snapshot(worker, std::move(r)); }

void JobTotals::restarted(size_t worker) {
  if (worker >= _workers.size()) return;
  Slot& w = _workers[worker];
  ++w.restarts;
  if (!w.have_latest) return;
  w.have_latest = false;
  RunReport ended = std::move(w.latest);
  // Its gauges (in flight and queued now, its share of the I/O caps) ended with it: the next
  // attempt has its own.
  ended.inflight_docs = 0;
  for (auto& n : ended.nodes) {
    n.queue_now = n.in_flight_now = 0;
    n.queue_mean = n.in_flight_mean = 0;  // utilization is the running attempt's
    n.limit = n.limit_peak = 0;
    if (n.io) n.concurrency = 0;
  }
  if (!w.have_earlier) {
    w.earlier = std::move(ended);
    w.have_earlier = true;
  } else {
    w.earlier.add_worker(ended);
  }
}

RunReport JobTotals::totals(const GraphSpec& spec, double elapsed_s, int threads) const {
  RunReport rep;
  rep.graph = spec.name;
  rep.config_hash = spec.config_hash;
  rep.threads = threads;
  rep.max_inflight_docs = spec.settings.max_inflight_docs;
  for (const Slot& w : _workers) {
    if (w.have_earlier) rep.add_worker(w.earlier);
    if (w.have_latest) rep.add_worker(w.latest);
  }
  rep.restarts = 0;
  for (const Slot& w : _workers) rep.restarts += w.restarts;
  rep.elapsed_s = elapsed_s;
  // Busy time summed over the workers: utilization is per worker on average.
  for (auto& n : rep.nodes) n.busy_s /= static_cast<double>(std::max<size_t>(1, _workers.size()));
  return rep;
}

std::string snapshot_event(const RunReport& report) {
  return event_with_report("snapshot", report);
}

RunReport launch_workers(const GraphSpec& spec, const LaunchPlan& plan) {
  auto t0 = Clock::now();
  std::vector<Worker> workers(static_cast<size_t>(plan.processes));
  JobTotals totals(workers.size());
  for (int i = 0; i < plan.processes; ++i) {
    workers[static_cast<size_t>(i)].index = i;
    start(workers[static_cast<size_t>(i)], plan);
  }
  bool forwarded = false;
  std::optional<Clock::time_point> aborted_at;
  double last_events = 0;
  auto last_line = Clock::now();
  auto last_totals = Clock::now();
  for (;;) {
    bool interrupted = plan.interrupt && plan.interrupt->load();
    if (interrupted && !forwarded) {
      forwarded = true;
      for (auto& w : workers)
        if (w.pid > 0) kill(w.pid, SIGINT);
    }
    if (plan.abort && plan.abort->load()) {
      if (!aborted_at) {
        aborted_at = Clock::now();
        for (auto& w : workers)
          if (w.pid > 0) kill(w.pid, SIGINT);  // their second: stop now and report
      } else if (Clock::now() - *aborted_at > std::chrono::seconds(3)) {
        for (auto& w : workers)
          if (w.pid > 0) kill(w.pid, SIGKILL);
      }
    }
    std::vector<pollfd> pfds;
    for (auto& w : workers)
      if (w.fd >= 0) pfds.push_back({w.fd, POLLIN, 0});
    if (!pfds.empty()) poll(pfds.data(), pfds.size(), 100);
    else usleep(20000);
    for (auto& w : workers) {
      if (w.fd >= 0 && !drain(w, totals)) {
        close(w.fd);
        w.fd = -1;
      }
      if (w.pid <= 0) continue;
      int status = 0;
      pid_t got = waitpid(w.pid, &status, w.fd >= 0 ? WNOHANG : 0);
      if (got != w.pid) continue;
      if (w.fd >= 0) {
        drain(w, totals);
        close(w.fd);
        w.fd = -1;
      }
      w.pid = -1;
      w.last_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // An interrupted worker exits 130 on purpose and is never restarted.
      if (w.last_exit != 0 && !interrupted && w.attempts <= plan.max_restarts) {
        std::fprintf(
            stderr, "\r\033[Ksluice: worker %d %s; restarting it with resume (%d of %d)\n", w.index,
            WIFSIGNALED(status) ? ("killed by signal " + std::to_string(WTERMSIG(status))).c_str()
                                : ("exited with status " + std::to_string(w.last_exit)).c_str(),
            w.attempts, plan.max_restarts);
        totals.restarted(static_cast<size_t>(w.index));
        w.have_report = false;
        start(w, plan);
        continue;
      }
      w.finished = true;
    }
    bool all_done = true;
    for (auto& w : workers) all_done = all_done && w.finished;
    if (all_done) break;

    double el = seconds_since(t0);
    uint64_t done = 0, chunks = 0, total = 0;
    int64_t in_flight = 0;
    bool total_known = true;
    ProgressFigures fig;
    for (auto& w : workers) {
      if (!w.expanded_unit.empty()) {
        fig.unit = w.unit;
        fig.expanded_unit = w.expanded_unit;
      }
      if (const NodeReport* e = w.have_report ? w.report.expander() : nullptr) {
        fig.expanded += e->docs_out;
        fig.unit = w.report.source_unit();
        fig.expanded_unit = e->id;
      } else fig.expanded += w.expanded;
      done += w.have_report
                  ? w.report.docs_indexed + w.report.docs_filtered + w.report.docs_dead_lettered
                  : w.docs_done;
      chunks += w.have_report ? w.report.chunks : w.chunks;
      in_flight += w.in_flight;
      total += w.total;
      total_known = total_known && w.total_known;
    }
    double rate = el > 0 ? done / el : 0;
    if (plan.on_totals && Clock::now() - last_totals >= std::chrono::milliseconds(500)) {
      last_totals = Clock::now();
      plan.on_totals(totals.totals(spec, el, plan.threads_per_worker));
    }
    if (plan.progress_line && Clock::now() - last_line >= std::chrono::milliseconds(250)) {
      last_line = Clock::now();
      fig.done = done;
      fig.in_flight = in_flight;
      fig.chunks = chunks;
      fig.elapsed_s = el;
      fig.workers = plan.processes;
      if (total_known) fig.total = total;
      std::fprintf(stderr, "\r\033[K%s", progress_text(fig).c_str());
      std::fflush(stderr);
    }
    if (plan.events_interval_s > 0 && el - last_events >= plan.events_interval_s) {
      last_events = el;
      std::fprintf(stderr,
                   "{\"event\":\"progress\",\"elapsed_s\":%.1f,\"docs_done\":%llu,\"chunks\":%llu,"
                   "\"docs_per_s\":%.1f,"
                   "\"workers\":%d}\n",
                   el, static_cast<unsigned long long>(done),
                   static_cast<unsigned long long>(chunks), rate, plan.processes);
    }
  }
  if (plan.progress_line) std::fputs("\r\033[K", stderr);
  if (plan.on_totals)
    plan.on_totals(totals.totals(spec, seconds_since(t0), plan.threads_per_worker));
  RunReport rep = aggregate(spec, workers, seconds_since(t0), plan.threads_per_worker);
  if (plan.interrupt && plan.interrupt->load()) rep.interrupted = true;
  return rep;
}

}  // namespace sluice
