// The runner's internals, shared by graph_runner.cpp (the Runner: graph build, run loop, ticker)
// and node_runtime.cpp (NodeRuntime: one node's counters and its output into the graph). Not a
// public interface: only those two files include it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <tbb/flow_graph.h>

#include "engine/graph/graph_runner.hpp"
#include "engine/graph/id_set.hpp"
#include "engine/graph/outcome_log.hpp"
#include "engine/graph/progress.hpp"
#include "engine/http/client.hpp"
#include "engine/state/checkpoint_ledger.hpp"
#include "engine/thread_role.hpp"

namespace sluice::runtime {

using Clock = std::chrono::steady_clock;
using MultiNode = tbb::flow::multifunction_node<RecordPtr, std::tuple<RecordPtr>>;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Per-thread counter slots: each arena thread writes its own cache line; outside threads share
// the last slot.
struct alignas(64) CounterSlot {
  std::atomic<uint64_t> in{0}, out{0}, errors{0}, busy_ns{0};
  std::atomic<uint64_t> docs_out{0};  // outputs that began a document of their own
  void add_busy_since(Clock::time_point t0) {
    busy_ns.fetch_add(
        static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()),
        std::memory_order_relaxed);
  }
};

class Runner;

class NodeRuntime final : public NodeOutput, public SourceOutput {
 public:
  NodeRuntime(Runner& runner, const NodeSpec& spec, size_t index, int slots)
      : _runner(runner), spec(spec), index(index), _slots(new CounterSlot[slots]), _nslots(slots) {}

  void forward(RecordPtr r) override;
  void finish(const RecordPtr& r, Outcome o, std::string_view reason = {}, int attempts = 1,
              long status = 0) override;
  void fail_run(std::string message) override;
  void hold() override;
  void release() override;
  void offload(std::function<void()> fn) override;
  http::Client& http() override;
  // Both NodeOutput::emit (a new record of a held document) and SourceOutput::emit (a new
  // document): told apart by whether the record already has a ticket.
  void emit(RecordPtr r) override;
  void done() override { push_done.store(true, std::memory_order_release); }
  size_t waiting() const override { return push_waiting.load(std::memory_order_acquire); }
  bool stopping() const override;
  const std::string& node_id() const override { return spec.id; }
  void warn(std::string message) override;
  void add_usage(uint64_t tokens, double cost_usd) override {
    _tokens.fetch_add(tokens, std::memory_order_relaxed);
    std::lock_guard lock(_cost_mu);
    _cost += cost_usd;
  }

  CounterSlot& slot() {
    int i = tbb::this_task_arena::current_thread_index();
    if (i < 0 || i >= _nslots - 1) i = _nslots - 1;
    return _slots[i];
  }
  NodeReport report() const {
    NodeReport r;
    r.id = spec.id;
    r.type = spec.type;
    r.role = spec.info->role;
    r.concurrency = spec.concurrency;
    uint64_t busy = 0;
    for (int i = 0; i < _nslots; ++i) {
      r.in += _slots[i].in.load(std::memory_order_relaxed);
      r.out += _slots[i].out.load(std::memory_order_relaxed);
      r.errors += _slots[i].errors.load(std::memory_order_relaxed);
      busy += _slots[i].busy_ns.load(std::memory_order_relaxed);
      r.docs_out += _slots[i].docs_out.load(std::memory_order_relaxed);
    }
    r.busy_s = busy / 1e9;
    r.tokens = _tokens.load(std::memory_order_relaxed);
    r.io = spec.info->io;
    if (_samples > 0) {
      r.queue_mean = _queue_sum / static_cast<double>(_samples);
      r.in_flight_mean = _inflight_sum / static_cast<double>(_samples);
    }
    r.queue_peak = _queue_peak;
    r.in_flight_peak = _inflight_peak;
    r.queue_now = _queue_now;
    r.in_flight_now = _inflight_now;
    r.adaptive = spec.adaptive;
    r.limit = _limit;
    r.limit_peak = _limit_peak;
    std::lock_guard lock(_cost_mu);
    r.cost_usd = _cost;
    return r;
  }
  uint64_t out_count() const {
    uint64_t n = 0;
    for (int i = 0; i < _nslots; ++i) n += _slots[i].out.load(std::memory_order_relaxed);
    return n;
  }
  uint64_t docs_out_count() const {
    uint64_t n = 0;
    for (int i = 0; i < _nslots; ++i) n += _slots[i].docs_out.load(std::memory_order_relaxed);
    return n;
  }

  void put(const RecordPtr& r);

  // Runs a node body on one input and settles the input's ticket.
  void run_body(const RecordPtr& in);
  // Chunkers and embedders work on text: a record that reaches them with only a raw body is
  // dead-lettered before the body runs.
  bool needs_text() const {
    return spec.info->role == NodeRole::chunker || spec.info->role == NodeRole::embedder;
  }

  Runner& _runner;
  const NodeSpec& spec;
  size_t index;
  int fanout = 0;
  int gate = -1;  // sources: index of their limiter
  std::unique_ptr<Node> node;
  std::unique_ptr<Source> source;
  std::unique_ptr<IdSet> seen_ids;  // sinks: ids taken in this run
  std::unique_ptr<MultiNode> fn;    // the node itself, or a source's admission node
  std::unique_ptr<tbb::flow::input_node<RecordPtr>> input;
  std::unique_ptr<tbb::flow::queue_node<RecordPtr>> push_queue;  // push sources
  std::atomic<bool> push_done{false};
  std::atomic<size_t> push_waiting{0};
  std::unique_ptr<tbb::flow::limiter_node<RecordPtr>> limiter;
  std::atomic<bool> exhausted{false};
  std::vector<const NodeRuntime*> preds;

  // Load samples, taken by the ticker thread only and read after it stopped.
  void sample_load() {
    if (source) return;
    uint64_t arrived = 0;
    for (const NodeRuntime* p : preds) arrived += p->out_count();
    uint64_t in = 0;
    for (int i = 0; i < _nslots; ++i) in += _slots[i].in.load(std::memory_order_relaxed);
    Node::Load l = node ? node->load() : Node::Load{};
    uint64_t queued = (arrived > in ? arrived - in : 0) + l.queued;
    ++_samples;
    _queue_now = queued;
    _inflight_now = l.in_flight;
    _queue_sum += static_cast<double>(queued);
    _queue_peak = std::max<uint64_t>(_queue_peak, queued);
    _inflight_sum += static_cast<double>(l.in_flight);
    _inflight_peak = std::max<uint64_t>(_inflight_peak, l.in_flight);
    _limit = l.limit;
    _limit_peak = std::max(_limit_peak, l.limit_peak);
  }

 private:
  std::unique_ptr<CounterSlot[]> _slots;
  int _nslots;
  uint64_t _samples = 0, _queue_peak = 0, _inflight_peak = 0;
  uint64_t _queue_now = 0, _inflight_now = 0;
  int _limit = 0, _limit_peak = 0;  // adaptive concurrency, as last sampled
  double _queue_sum = 0, _inflight_sum = 0;
  std::atomic<uint64_t> _tokens{0};
  mutable std::mutex _cost_mu;
  double _cost = 0;
};

class Runner final : public CompletionListener {
 public:
  Runner(const GraphSpec& spec, const RunOptions& opts)
      : _spec(spec), _opts(opts), _part(opts.shard.split(opts.worker, opts.workers)) {
    _threads = opts.threads > 0            ? opts.threads
               : spec.settings.threads > 0 ? spec.settings.threads
                                           : hardware_threads();
  }

  ~Runner() override {
    // Nodes may still hold records (e.g. after a failed open): drop them while we can count.
    for (auto& n : _nodes) {
      n->node.reset();
      n->source.reset();
    }
  }

  RunReport run();

  void on_doc_done(Ticket& t) override {
    switch (t.doc_outcome()) {
      case Outcome::indexed: _docs_indexed.fetch_add(1, std::memory_order_relaxed); break;
      case Outcome::filtered: _docs_filtered.fetch_add(1, std::memory_order_relaxed); break;
      case Outcome::dead_lettered: _docs_dead.fetch_add(1, std::memory_order_relaxed); break;
      case Outcome::lost: _lost.fetch_add(1, std::memory_order_relaxed); break;
    }
    if (_opts.ledger && t.doc_outcome() != Outcome::lost)
      _opts.ledger->record(t.doc_id(), t.doc_outcome());
    for (auto& n : _nodes)
      if (n->seen_ids) n->seen_ids->forget(t.doc_id());
    _inflight.fetch_sub(1, std::memory_order_acq_rel);
    _done_docs.fetch_add(1, std::memory_order_relaxed);
    if (t.gate() >= 0 && _graph_alive.load(std::memory_order_acquire)) {
      auto& gate_node = *_nodes[static_cast<size_t>(t.gate())];
      if (gate_node.limiter) {
        auto* lim = gate_node.limiter.get();
        if (t_outside_arena) post({Posted::decrement, &gate_node, nullptr});
        else lim->decrementer().try_put(tbb::flow::continue_msg());
      }
    }
  }

  void record_outcome(NodeRuntime& node, const RecordPtr& r, Outcome o, std::string_view reason,
                      int attempts = 1, long status = 0) {
    _outcomes.record(node.spec.id, *r, o, reason, attempts, status);
    switch (o) {
      case Outcome::indexed:
        _indexed.fetch_add(1, std::memory_order_relaxed);
        node.slot().out.fetch_add(1, std::memory_order_relaxed);
        break;
      case Outcome::filtered: _filtered.fetch_add(1, std::memory_order_relaxed); break;
      case Outcome::dead_lettered:
        _dead.fetch_add(1, std::memory_order_relaxed);
        node.slot().errors.fetch_add(1, std::memory_order_relaxed);
        break;
      case Outcome::lost: node.slot().errors.fetch_add(1, std::memory_order_relaxed); break;
    }
  }

  // A node's warning: kept once for the report, and said on stderr at once by a run that is not
  // a launcher's worker (the launcher prints the job's warnings with its summary).
  void warn(const std::string& node, const std::string& message) {
    std::string text = _spec.secrets.redact("node \"" + node + "\": " + message);
    {
      std::lock_guard lock(_mu);
      if (_warnings.size() >= kMaxWarnings ||
          std::find(_warnings.begin(), _warnings.end(), text) != _warnings.end())
        return;
      _warnings.push_back(text);
    }
    if (_opts.events_fd < 0 && !_opts.quiet)
      std::fprintf(stderr, "\nsluice: warning: %s\n", escape_controls(text).c_str());
  }

  void duplicate_id(const std::string& id) {
    if (_duplicates.fetch_add(1, std::memory_order_relaxed) > 0) return;
    std::lock_guard lock(_mu);
    _duplicate_example = id;
  }

  void commit_ledger() {
    try {
      _opts.ledger->commit();
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }

  void fail(std::string message) {
    std::lock_guard lock(_mu);
    if (_error.empty()) _error = std::move(message);
    _stop.store(true, std::memory_order_release);
  }

  bool stopping() const {
    return _stop.load(std::memory_order_acquire) ||
           (_opts.interrupt && _opts.interrupt->load(std::memory_order_acquire));
  }

  // Whether this process handles the document at all (its shard, unless the source gave only
  // this process's share itself; not done in an earlier run).
  bool wanted(const std::string& doc_id, bool check_part = true) {
    if (check_part && !_part.owns(doc_id)) return false;
    if (_opts.skip && _opts.skip->count(doc_id)) {
      _skipped_done.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  }

  void admitted() {
    _docs.fetch_add(1, std::memory_order_relaxed);
    int64_t now = _inflight.fetch_add(1, std::memory_order_acq_rel) + 1;
    int64_t peak = _peak_inflight.load(std::memory_order_relaxed);
    while (now > peak && !_peak_inflight.compare_exchange_weak(peak, now)) {
    }
  }

 private:
  void build(tbb::flow::graph& g);
  void open_all();
  void tick_loop();
  void flush_all(bool force);
  bool any_pending() const;
  void progress(bool final_line);
  // Documents done and their total (when every source knows its own: a listing may learn it
  // on its first page), what source items expanded into, chunks.
  ProgressFigures progress_figures() const;
  std::optional<uint64_t> total_now() const;
  RunReport report_header() const;
  void fill_counts(RunReport& rep);
  static void fill_http(RunReport& rep, const http::ClientStats& s);

 public:
  tbb::flow::graph* graph = nullptr;
  tbb::task_arena* arena = nullptr;
  // Graph work from threads outside the arena (the ticker, the HTTP loop) is queued and run by
  // one arena task that drains the queue: one enqueue and one wake-up per burst, not per record.
  // Wake-ups are also spaced at least kDrainGap apart: every wake-up of an idle arena costs a
  // thread's spin-then-yield phase (about a millisecond of CPU on a VM), so completions arriving
  // one per millisecond (a paced rate limit) would otherwise keep a core spinning. A drain owed
  // inside the gap is enqueued by the ticker (every 5 ms, and once as it stops). The graph is held
  // (reserve_wait) from the first queued item, so wait_for_all covers everything queued.
  struct Posted {
    enum Kind { put, decrement, push } kind;
    NodeRuntime* node;
    RecordPtr record;
  };
  static constexpr std::chrono::microseconds kDrainGap{5000};
  void post(Posted p) {
    {
      std::lock_guard lock(_post_mu);
      _posted.push_back(std::move(p));
      if (_drain != DrainState::idle) return;  // the owed or enqueued drain will take it
      hold_graph();
      _drain = DrainState::owed;
      // Once the ticker stopped (the end of a run) nobody would enqueue an owed drain.
      if (Clock::now() - _last_drain < kDrainGap && !_ticker_stop.load(std::memory_order_acquire))
        return;
      _drain = DrainState::enqueued;
      _last_drain = Clock::now();
    }
    enqueue_drain();
  }
  // The ticker: enqueue a drain that post() left owed.
  void kick_drain() {
    {
      std::lock_guard lock(_post_mu);
      if (_drain != DrainState::owed) return;
      _drain = DrainState::enqueued;
      _last_drain = Clock::now();
    }
    enqueue_drain();
  }
  void enqueue_drain() {
    arena->enqueue([this] {
      drain_posted();
      release_graph();
    });
  }
  void drain_posted();
  // Async work (a request, a queued drain) keeps the graph from going idle; the count lets the
  // main thread see that without waiting inside the arena.
  void hold_graph() {
    _holds.fetch_add(1, std::memory_order_acq_rel);
    graph->reserve_wait();
  }
  void release_graph() {
    graph->release_wait();
    _holds.fetch_sub(1, std::memory_order_acq_rel);
  }

 private:
  std::atomic<int64_t> _holds{0};
  std::mutex _post_mu;
  std::vector<Posted> _posted;
  enum class DrainState { idle, owed, enqueued };
  DrainState _drain = DrainState::idle;
  Clock::time_point _last_drain{};

 public:
  http::Client& http_client() {
    std::lock_guard lock(_http_mu);
    if (!_http) {
      http::ClientOptions o;
      o.loop = _spec.settings.http_loop;
      o.max_host_connections = static_cast<long>(_spec.settings.max_host_connections);
      o.max_total_connections = static_cast<long>(_spec.settings.max_connections);
      o.max_body_bytes = static_cast<size_t>(_spec.settings.max_body_mb) << 20;
      _http = std::make_unique<http::Client>(o);
    }
    return *_http;
  }
  void stop_http() {
    std::lock_guard lock(_http_mu);
    if (_http) _http_stats = _http->stats();
    _http.reset();
  }
  // The HTTP client's figures so far, while the run goes on (its last ones once it stopped).
  http::ClientStats http_stats() {
    std::lock_guard lock(_http_mu);
    return _http ? _http->stats() : _http_stats;
  }

 private:
  std::mutex _http_mu;
  std::unique_ptr<http::Client> _http;
  http::ClientStats _http_stats;

  const GraphSpec& _spec;
  RunOptions _opts;
  ShardSpec _part;  // the documents this process handles: its shard's share for this worker
  int _threads = 1;
  std::vector<std::unique_ptr<NodeRuntime>> _nodes;
  std::atomic<bool> _stop{false};
  std::atomic<bool> _ticker_stop{false};
  std::atomic<bool> _graph_alive{true};
  std::mutex _mu;  // _error, _warnings, _duplicate_example
  std::string _error;
  static constexpr size_t kMaxWarnings = 20;
  std::vector<std::string> _warnings;
  OutcomeLog _outcomes{_spec.secrets};
  std::atomic<uint64_t> _docs{0}, _done_docs{0}, _indexed{0}, _filtered{0}, _dead{0}, _lost{0};
  std::atomic<uint64_t> _docs_indexed{0}, _docs_filtered{0}, _docs_dead{0}, _skipped_done{0};
  std::atomic<int64_t> _inflight{0}, _peak_inflight{0};
  std::atomic<uint64_t> _duplicates{0};
  std::string _duplicate_example;  // under _mu
  Clock::time_point _t0;
  double _cpu0 = 0;
  double _last_events = 0;
};

}  // namespace sluice::runtime
