#include "engine/graph/graph_runner.hpp"
#include "engine/graph/runtime.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <tbb/flow_graph.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include "engine/http/client.hpp"
#include "engine/json/json.hpp"
#include "engine/state/checkpoint_ledger.hpp"
#include "engine/thread_role.hpp"

namespace sluice {

namespace runtime {

void Runner::drain_posted() {
  std::vector<Posted> batch;
  for (;;) {
    {
      std::lock_guard lock(_post_mu);
      if (_posted.empty()) {
        _drain = DrainState::idle;
        return;
      }
      batch.swap(_posted);
    }
    for (auto& p : batch) {
      switch (p.kind) {
        case Posted::put: std::get<0>(p.node->fn->output_ports()).try_put(p.record); break;
        case Posted::decrement:
          p.node->limiter->decrementer().try_put(tbb::flow::continue_msg());
          break;
        case Posted::push: p.node->push_queue->try_put(p.record); break;
      }
    }
    batch.clear();
  }
}

void Runner::build(tbb::flow::graph& g) {
  using namespace tbb::flow;
  int nsources = 0;
  for (const auto& ns : _spec.nodes)
    if (ns.info->role == NodeRole::source) ++nsources;
  const int per_source = std::max(1, _spec.settings.max_inflight_docs / std::max(1, nsources));
  for (size_t i = 0; i < _spec.nodes.size(); ++i) {
    NodeRuntime& nr = *_nodes[i];
    nr.fanout = static_cast<int>(_spec.successors[i].size());
    const size_t conc = nr.spec.concurrency == 0 || nr.spec.info->io
                            ? static_cast<size_t>(unlimited)
                            : static_cast<size_t>(nr.spec.concurrency);
    if (nr.source) {
      nr.gate = static_cast<int>(i);
      if (nr.source->pushes()) nr.push_queue = std::make_unique<queue_node<RecordPtr>>(g);
      else
        nr.input = std::make_unique<input_node<RecordPtr>>(
            g, [this, &nr](tbb::flow_control& fc) -> RecordPtr {
              if (stopping()) {
                nr.exhausted.store(true);
                fc.stop();
                return {};
              }
              RecordPtr r;
              auto t0 = Clock::now();
              try {
                for (;;) {
                  r = nr.source->next();
                  if (!r) break;
                  if (r->doc_id.empty()) r->doc_id = r->id;
                  if (wanted(r->doc_id, !nr.source->splits_itself())) break;
                  if (stopping()) {
                    r.reset();
                    break;
                  }
                }
              } catch (const std::exception& e) {
                fail("source \"" + nr.spec.id + "\": " + e.what());
              }
              nr.slot().add_busy_since(t0);
              if (!r) {
                nr.exhausted.store(true);
                fc.stop();
                return {};
              }
              return r;
            });
      nr.limiter = std::make_unique<limiter_node<RecordPtr>>(g, static_cast<size_t>(per_source));
      // Admission: the document gets its ticket once it passed the limiter, so the in-flight
      // count is exact.
      nr.fn = std::make_unique<MultiNode>(
          g, unlimited, [this, &nr](const RecordPtr& r, MultiNode::output_ports_type&) {
            nr.slot().in.fetch_add(1, std::memory_order_relaxed);
            if (nr.push_queue) {
              nr.push_waiting.fetch_sub(1, std::memory_order_acq_rel);
              if (stopping()) {  // never started: give the slot back, no ticket, not a document
                nr.limiter->decrementer().try_put(tbb::flow::continue_msg());
                return;
              }
              nr.source->on_admitted();
            }
            admitted();
            if (!r->error.empty()) {
              r->ticket = std::make_shared<Ticket>(this, r->doc_id, nr.gate, 1);
              nr.finish(r, Outcome::dead_lettered, r->error);
              return;
            }
            r->ticket = std::make_shared<Ticket>(this, r->doc_id, nr.gate, nr.fanout);
            nr.slot().out.fetch_add(1, std::memory_order_relaxed);
            nr.put(r);
          });
      if (nr.input) make_edge(*nr.input, *nr.limiter);
      else make_edge(*nr.push_queue, *nr.limiter);
      make_edge(*nr.limiter, *nr.fn);
    } else {
      nr.fn = std::make_unique<MultiNode>(
          g, conc, [&nr](const RecordPtr& r, MultiNode::output_ports_type&) { nr.run_body(r); });
    }
  }
  for (auto [a, b] : _spec.edges) {
    make_edge(output_port<0>(*_nodes[a]->fn), *_nodes[b]->fn);
    _nodes[b]->preds.push_back(_nodes[a].get());
  }
}

void Runner::open_all() {
  for (auto& nr : _nodes) {
    try {
      if (nr->source) nr->source->open();
      else nr->node->open(*nr);
    } catch (const std::exception& e) {
      throw std::runtime_error("node \"" + nr->spec.id + "\" (" + nr->spec.type + "): " + e.what());
    }
  }
}

bool Runner::any_pending() const {
  for (const auto& nr : _nodes)
    if (nr->node && nr->node->has_pending()) return true;
  return false;
}

void Runner::flush_all(bool force) {
  for (size_t i : _spec.topo_order) {
    auto& nr = *_nodes[i];
    if (nr.node && nr.node->has_pending()) {
      auto t0 = Clock::now();
      try {
        nr.node->flush(force);
      } catch (const std::exception& e) {
        nr.fail_run(std::string("flush failed: ") + e.what());
      }
      nr.slot().add_busy_since(t0);
    }
  }
}

void Runner::tick_loop() {
  t_outside_arena = true;
  auto last_progress = Clock::now();
  auto last_commit = Clock::now();
  auto last_sample = Clock::now();
  while (!_ticker_stop.load(std::memory_order_acquire)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    flush_all(false);
    kick_drain();
    if (Clock::now() - last_sample >= std::chrono::milliseconds(100)) {
      last_sample = Clock::now();
      for (auto& nr : _nodes) nr->sample_load();
    }
    if (Clock::now() - last_commit >= std::chrono::milliseconds(500)) {
      last_commit = Clock::now();
      _outcomes.flush();
      if (_opts.ledger) commit_ledger();
    }
    if (Clock::now() - last_progress >= std::chrono::milliseconds(250)) {
      last_progress = Clock::now();
      progress(false);
      if (_opts.on_snapshot) {
        RunReport snap = report_header();
        fill_counts(snap);
        fill_http(snap, http_stats());
        _opts.on_snapshot(snap);
      }
    }
  }
  kick_drain();  // owed before the stop; post() enqueues at once from now on
}

namespace {

// The progress event's expansion fields: ,"unit":"books","expanded_unit":"sections","expanded":N
std::string expansion_json(const ProgressFigures& fig) {
  std::string out = ",\"unit\":";
  json::append_quoted(out, fig.unit);
  out += ",\"expanded_unit\":";
  json::append_quoted(out, fig.expanded_unit);
  out += ",\"expanded\":" + std::to_string(fig.expanded);
  return out;
}

}  // namespace

std::optional<uint64_t> Runner::total_now() const {
  uint64_t total = 0;
  for (const auto& nr : _nodes) {
    if (!nr->source) continue;
    auto t = nr->source->total();
    if (!t) return std::nullopt;
    total += *t;
  }
  // Sharded or resumed: the share of this process, assuming the hash spreads ids evenly.
  total /= static_cast<uint64_t>(std::max(1, _part.count));
  uint64_t skip = _opts.skip ? _opts.skip->size() : 0;
  return total > skip ? total - skip : 0;
}

ProgressFigures Runner::progress_figures() const {
  ProgressFigures fig;
  fig.done = _done_docs.load();
  fig.total = total_now();
  fig.in_flight = _inflight.load();
  fig.elapsed_s = seconds_since(_t0);
  const NodeRuntime* source = nullptr;
  int sources = 0;
  for (size_t i : _spec.topo_order) {
    const NodeRuntime& nr = *_nodes[i];
    if (nr.spec.info->role == NodeRole::chunker) fig.chunks += nr.out_count();
    if (nr.source) {
      source = &nr;
      ++sources;
    }
    if (uint64_t n = nr.docs_out_count(); n > 0) {
      fig.expanded_unit = nr.spec.id;
      fig.expanded = n;
    }
  }
  if (!fig.expanded_unit.empty() && sources == 1) fig.unit = source->spec.id;
  return fig;
}

void Runner::progress(bool final_line) {
  const ProgressFigures fig = progress_figures();
  const double el = fig.elapsed_s;
  const uint64_t done = fig.done, docs = _docs.load(), chunks = fig.chunks;
  double rate = el > 0 ? done / el : 0;
  if (_opts.progress_line) {
    std::string line = "\r\033[K" + progress_text(fig);
    std::fputs(line.c_str(), stderr);
    if (final_line) std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }
  if (_opts.events_interval_s > 0 && !final_line && el - _last_events >= _opts.events_interval_s) {
    _last_events = el;
    dprintf(_opts.events_fd >= 0 ? _opts.events_fd : STDERR_FILENO,
            "{\"event\":\"progress\",\"elapsed_s\":%.1f,\"docs\":%llu,\"docs_done\":%llu,"
            "\"chunks\":%llu,"
            "\"docs_per_s\":%.1f,\"in_flight\":%lld,\"docs_skipped_done\":%llu%s%s}\n",
            el, static_cast<unsigned long long>(docs), static_cast<unsigned long long>(done),
            static_cast<unsigned long long>(chunks), rate, static_cast<long long>(fig.in_flight),
            static_cast<unsigned long long>(_skipped_done.load()),
            fig.total ? (",\"total\":" + std::to_string(*fig.total)).c_str() : "",
            fig.expanded_unit.empty() ? "" : expansion_json(fig).c_str());
  }
}

RunReport Runner::report_header() const {
  RunReport rep;
  rep.graph = _spec.name;
  rep.config_hash = _spec.config_hash;
  rep.shard = _part.text();
  rep.threads = _threads;
  rep.max_inflight_docs = _spec.settings.max_inflight_docs;
  return rep;
}

// The report's counts as they stand (the end of the run, or a snapshot while it runs).
void Runner::fill_counts(RunReport& rep) {
  rep.elapsed_s = seconds_since(_t0);
  rep.docs = _docs.load();
  rep.docs_skipped_done = _skipped_done.load();
  for (const auto& nr : _nodes) {
    rep.nodes.push_back(nr->report());
    if (nr->spec.info->role == NodeRole::chunker) rep.chunks += rep.nodes.back().out;
    rep.tokens += rep.nodes.back().tokens;
    rep.cost_usd += rep.nodes.back().cost_usd;
  }
  // Records indexed: by the sink that took the most (each sink's own count is its node's `out`),
  // not summed over sinks, which would count a record once per sink.
  rep.indexed = 0;
  for (const auto& n : rep.nodes)
    if (n.role == NodeRole::sink) rep.indexed = std::max(rep.indexed, n.out);
  rep.filtered = _filtered.load();
  rep.dead_lettered = _dead.load();
  rep.lost = _lost.load();
  rep.docs_indexed = _docs_indexed.load();
  rep.docs_filtered = _docs_filtered.load();
  rep.docs_dead_lettered = _docs_dead.load();
  rep.duplicate_ids = _duplicates.load();
  rep.peak_inflight_docs = _peak_inflight.load();
  rep.inflight_docs = _inflight.load();
  rep.peak_rss_bytes = peak_rss_bytes();
  rep.peak_rss_total_bytes = rep.peak_rss_bytes;
  rep.cpu_s = process_cpu_seconds() - _cpu0;
  rep.dead_letter_file = _spec.settings.dead_letter;
  rep.dead_letter_reasons = _outcomes.reasons();
  {
    std::lock_guard lock(_mu);
    rep.duplicate_id_example = _spec.secrets.redact(_duplicate_example);
    rep.warnings = _warnings;
  }
}

void Runner::fill_http(RunReport& rep, const http::ClientStats& s) {
  rep.http.requests = s.completed + s.failed;
  rep.http.attempts = s.attempts;
  rep.http.retries = s.retries;
  rep.http.throttled = s.throttled;
  rep.http.rpm_waited = s.rpm_waited;
  rep.http.tpm_waited = s.tpm_waited;
  rep.http.failed = s.failed;
  rep.http.loop_cpu_s = s.loop_cpu_s;
  rep.http.latency = s.latency;
  rep.http.latency_sum_s = s.latency_sum_s;
  rep.http.by_status = s.by_status;
}

RunReport Runner::run() {
  RunReport rep = report_header();
  _t0 = Clock::now();
  _cpu0 = process_cpu_seconds();

  const int slots = _threads + 1;
  for (size_t i = 0; i < _spec.nodes.size(); ++i) {
    const NodeSpec& ns = _spec.nodes[i];
    auto nr = std::make_unique<NodeRuntime>(*this, ns, i, slots);
    NodeInit init{ns.id,
                  ns.type,
                  ns.params,
                  _spec.name,
                  ns.concurrency,
                  _opts.shard,
                  "w" + std::to_string(_opts.worker) + "." + std::to_string(getpid()),
                  ns.adaptive,
                  _opts.state_dir,
                  _part,
                  _opts.limit_sharers};
    if (ns.info->make_source) {
      nr->source = ns.info->make_source(init);
      const bool check_part = !nr->source->splits_itself();
      if (!_part.all() || _opts.skip)
        nr->source->set_wanted(
            [this, check_part](const std::string& id) { return wanted(id, check_part); });
      nr->source->set_stopping([this] { return stopping(); });
    } else nr->node = ns.info->make_node(init);
    if (ns.info->role == NodeRole::sink) nr->seen_ids = std::make_unique<IdSet>();
    _nodes.push_back(std::move(nr));
  }
  try {
    if (_opts.reset_outputs) reset_outputs(_spec, _opts.shard);
    // Appended to: reset_outputs() empties them for a fresh run; a resume or a worker adds.
    _outcomes.open(_spec.settings.dead_letter, _spec.settings.outcomes);
    open_all();
  } catch (const std::exception& e) {
    rep.error = _spec.secrets.redact(e.what());
    _outcomes.close();
    return rep;
  }

  // The main thread waits outside the arena. Inside graph::wait_for_all it would be an arena
  // thread that spins (about a hundred sched_yields) on every wake-up of the arena, which was half
  // of sluice's CPU at 50 requests in flight. So the arena has no slot reserved for it, and the
  // scheduler gets one worker per --threads.
  tbb::global_control workers(tbb::global_control::max_allowed_parallelism,
                              static_cast<size_t>(_threads) + 1);
  tbb::task_arena task_arena(_threads, 0);
  arena = &task_arena;
  std::optional<tbb::flow::graph> graph_holder;
  std::thread ticker;
  task_arena.execute([&] {
    tbb::flow::graph& g = graph_holder.emplace();
    graph = &g;
    build(g);
    ticker = std::thread([this] { tick_loop(); });
    for (auto& nr : _nodes)
      if (nr->input) nr->input->activate();
    for (auto& nr : _nodes) {
      if (!nr->push_queue) continue;
      try {
        nr->source->start(*nr);
      } catch (const std::exception& e) {
        fail("source \"" + nr->spec.id + "\": " + e.what());
        nr->push_done.store(true);
      }
    }
  });
  tbb::flow::graph& g = *graph_holder;
  // "Stalled" means no document or record reached anything for 30 s, not merely that the
  // graph went idle: the ticker may be committing the last batch right now.
  auto progress_mark = [this] {
    return _docs.load() + _done_docs.load() + _indexed.load() + _filtered.load() + _dead.load();
  };
  auto idle_since = Clock::now();
  uint64_t last_mark = progress_mark();
  for (;;) {
    // While async work holds the graph, poll each millisecond. Without it only CPU work runs,
    // and a graph whose limiter is full of documents parked in a partial batch goes idle
    // every few milliseconds until the batch is forced out: notice that sooner.
    std::this_thread::sleep_for(_holds.load(std::memory_order_acquire) > 0
                                    ? std::chrono::microseconds(1000)
                                    : std::chrono::microseconds(100));
    if (uint64_t mark = progress_mark(); mark != last_mark) {
      last_mark = mark;
      idle_since = Clock::now();
      if (!stopping()) continue;
    }
    // While a request or a queued hand-off holds the graph it cannot go idle: keep sleeping.
    // Otherwise only CPU work can be left, so the wait below is short.
    if (!stopping() && _holds.load(std::memory_order_acquire) > 0) continue;
    task_arena.execute([&] { g.wait_for_all(); });
    if (stopping()) {
      // wait_for_all returned, so no listing page is in flight (pages hold the graph): a
      // stopping run ends its push sources here, whether or not they were about to fetch.
      for (auto& nr : _nodes)
        if (nr->push_queue) nr->push_done.store(true);
    }
    if (uint64_t mark = progress_mark(); mark != last_mark) {
      last_mark = mark;
      idle_since = Clock::now();
    }
    bool exhausted = true;
    for (auto& nr : _nodes) {
      if (nr->input && !nr->exhausted.load()) exhausted = false;
      if (nr->push_queue && !(nr->push_done.load() && nr->push_waiting.load() == 0))
        exhausted = false;
    }
    if (any_pending()) {
      task_arena.execute([&] { flush_all(true); });  // end of input, or the limiter is full
      idle_since = Clock::now();
      continue;
    }
    if (exhausted && _inflight.load() == 0) break;
    if (exhausted && stopping() && seconds_since(idle_since) > 1.0 && _inflight.load() > 0) {
      break;  // records held by a node that will not finish them: counted as lost below
    }
    if (seconds_since(idle_since) > 30.0) {
      fail("the graph stalled: no progress for 30 s with " + std::to_string(_inflight.load()) +
           " documents in flight");
      break;
    }
  }
  _ticker_stop.store(true);
  ticker.join();
  task_arena.execute([&] { g.wait_for_all(); });
  // Anything still queued in the HTTP loop is called back (and finished) while the graph lives.
  // On this thread, not in the arena (whose functors run on a worker): joining the loop here
  // orders its last callbacks before what this thread frees below, an order ThreadSanitizer
  // can see (it cannot see one made inside libtbb).
  stop_http();
  task_arena.execute([&] {
    g.wait_for_all();
    // TBB nodes must go before their graph; completions after this point skip the limiters.
    _graph_alive.store(false, std::memory_order_release);
    for (auto& nr : _nodes) {
      nr->input.reset();
      nr->push_queue.reset();
      nr->limiter.reset();
      nr->fn.reset();
    }
    graph_holder.reset();
  });
  progress(true);

  // A sink's close may finish real work (index.sqlite's last full-text step): it is busy time.
  // Before it, a run in which every document reached its outcome lets the nodes commit to it
  // (index.sqlite removes the chunks its documents no longer have).
  const bool settled = !stopping() && _inflight.load() == 0;
  for (auto& nr : _nodes) {
    auto t0 = Clock::now();
    try {
      if (nr->source) {
        nr->source->close();
      } else {
        if (settled) nr->node->commit();
        nr->node->close();
      }
    } catch (const std::exception& e) {
      fail("node \"" + nr->spec.id + "\": close failed: " + e.what());
    }
    nr->slot().add_busy_since(t0);
  }
  // Records still held by nodes now can never finish: their tickets count them as lost.
  for (auto& n : _nodes) {
    n->node.reset();
    n->source.reset();
  }
  if (_inflight.load() > 0) _lost.fetch_add(static_cast<uint64_t>(_inflight.load()));
  _outcomes.close();
  if (std::string e = _outcomes.write_error(); !e.empty()) fail(e);
  if (_opts.ledger) commit_ledger();
  // A run that failed or was interrupted merges too, but keeps any earlier output whole.
  bool finished = !(_opts.interrupt && _opts.interrupt->load());
  {
    std::lock_guard lock(_mu);
    finished = finished && _error.empty();
  }
  if (_opts.merge_outputs) {
    try {
      merge_outputs(_spec, _opts.shard, finished);
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }

  fill_counts(rep);
  // The run's client, as stop_http() left it: a commit()'s own requests (deletes) are not the
  // run's.
  fill_http(rep, _http_stats);
  rep.interrupted = _opts.interrupt && _opts.interrupt->load();
  {
    std::lock_guard lock(_mu);
    rep.error = _spec.secrets.redact(_error);
  }
  return rep;
}

}  // namespace runtime

namespace {

// Calls `call(node)` for every node whose type has `hook`, naming the node in any error.
template <class Hook, class Call>
void run_output_hooks(const GraphSpec& spec, Hook hook, const char* what, Call call) {
  for (const auto& n : spec.nodes) {
    if (!(n.info->*hook)) continue;
    try {
      call(n);
    } catch (const std::exception& e) {
      throw std::runtime_error("node \"" + n.id + "\" (" + n.type + "): " + what + e.what());
    }
  }
}

}  // namespace

void reset_outputs(const GraphSpec& spec, const ShardSpec& shard) {
  // Logs of the run before, not outputs: a fresh run starts them anew.
  for (const std::string* f : {&spec.settings.dead_letter, &spec.settings.outcomes})
    if (!f->empty() && std::filesystem::is_regular_file(*f)) std::filesystem::remove(*f);
  run_output_hooks(spec, &NodeTypeInfo::reset_outputs, "",
                   [&](const NodeSpec& n) { n.info->reset_outputs(n.params, shard); });
}

void merge_outputs(const GraphSpec& spec, const ShardSpec& shard, bool finished) {
  run_output_hooks(spec, &NodeTypeInfo::merge_outputs, "merging its output failed: ",
                   [&](const NodeSpec& n) { n.info->merge_outputs(n.params, shard, finished); });
}

std::vector<FileLock> lock_outputs(const GraphSpec& spec, const ShardSpec& shard) {
  std::vector<FileLock> locks;
  for (const auto& n : spec.nodes) {
    if (!n.info->merge_outputs || !n.info->output_file) continue;
    std::string out = n.info->output_file(n.params);
    if (out.empty() || out.rfind("/dev/", 0) == 0) continue;
    std::string path = out + (shard.all() ? "" : "." + shard.file_tag()) + ".lock";
    bool taken = false;
    for (const auto& l : locks) taken = taken || l.path() == path;
    if (taken) continue;  // two sinks of the graph write one file
    FileLock lock(path, FileLock::Wait::no);
    if (!lock.held()) {
      std::string who = lock.holder() > 0 ? " (pid " + std::to_string(lock.holder()) + ")" : "";
      throw std::runtime_error("\"" + out + "\" is in use by another sluice run" + who +
                               (shard.all() ? "" : " of shard " + shard.text()) +
                               ": wait for it to end, or write to another path");
    }
    lock.remove_when_released();
    locks.push_back(std::move(lock));
  }
  return locks;
}

RunReport run_graph(const GraphSpec& spec, const RunOptions& options) {
  runtime::Runner r(spec, options);
  return r.run();
}

}  // namespace sluice
