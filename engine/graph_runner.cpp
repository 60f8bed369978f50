#include "engine/graph_runner.hpp"

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

#include "engine/checkpoint_ledger.hpp"
#include "engine/http_client.hpp"
#include "engine/json.hpp"
#include "engine/thread_role.hpp"

namespace sluice {

namespace {

using Clock = std::chrono::steady_clock;
using MultiNode = tbb::flow::multifunction_node<RecordPtr, std::tuple<RecordPtr>>;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Per-thread counter slots: each arena thread writes its own cache line; outside threads share
// the last slot.
struct alignas(64) CounterSlot {
  std::atomic<uint64_t> in{0}, out{0}, errors{0}, busy_ns{0};
  void add_busy_since(Clock::time_point t0) {
    busy_ns.fetch_add(
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()),
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
    std::lock_guard lock(_cost_mu);
    r.cost_usd = _cost;
    return r;
  }
  uint64_t out_count() const {
    uint64_t n = 0;
    for (int i = 0; i < _nslots; ++i) n += _slots[i].out.load(std::memory_order_relaxed);
    return n;
  }

  void put(const RecordPtr& r);

  // Runs a node body on one input and settles the input's ticket.
  void run_body(const RecordPtr& in);

  Runner& _runner;
  const NodeSpec& spec;
  size_t index;
  int fanout = 0;
  int gate = -1;  // sources: index of their limiter
  std::unique_ptr<Node> node;
  std::unique_ptr<Source> source;
  std::unique_ptr<MultiNode> fn;  // the node itself, or a source's admission node
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
    _queue_sum += static_cast<double>(queued);
    _queue_peak = std::max<uint64_t>(_queue_peak, queued);
    _inflight_sum += static_cast<double>(l.in_flight);
    _inflight_peak = std::max<uint64_t>(_inflight_peak, l.in_flight);
  }

 private:
  std::unique_ptr<CounterSlot[]> _slots;
  int _nslots;
  uint64_t _samples = 0, _queue_peak = 0, _inflight_peak = 0;
  double _queue_sum = 0, _inflight_sum = 0;
  std::atomic<uint64_t> _tokens{0};
  mutable std::mutex _cost_mu;
  double _cost = 0;
};

class Runner final : public CompletionListener {
 public:
  Runner(const GraphSpec& spec, const RunOptions& opts)
      : _spec(spec), _opts(opts), _part(opts.shard.split(opts.worker, opts.workers)) {
    _threads = opts.threads > 0 ? opts.threads
               : spec.settings.threads > 0 ? spec.settings.threads
                                           : hardware_threads();
  }

  ~Runner() {
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
    if (_opts.ledger && t.doc_outcome() != Outcome::lost) _opts.ledger->record(t.doc_id(), t.doc_outcome());
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

  void record_outcome(NodeRuntime& node, const RecordPtr& r, Outcome o, std::string_view reason, int attempts = 1,
                      long status = 0) {
    switch (o) {
      case Outcome::indexed:
        _indexed.fetch_add(1, std::memory_order_relaxed);
        node.slot().out.fetch_add(1, std::memory_order_relaxed);
        break;
      case Outcome::filtered: _filtered.fetch_add(1, std::memory_order_relaxed); break;
      case Outcome::dead_lettered:
        _dead.fetch_add(1, std::memory_order_relaxed);
        node.slot().errors.fetch_add(1, std::memory_order_relaxed);
        write_dead_letter(node, r, reason, attempts, status);
        break;
      case Outcome::lost: node.slot().errors.fetch_add(1, std::memory_order_relaxed); break;
    }
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

  // Whether this process handles the document at all (its shard, not done in an earlier run).
  bool wanted(const std::string& doc_id) {
    if (!_part.owns(doc_id)) return false;
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
  void write_dead_letter(NodeRuntime& node, const RecordPtr& r, std::string_view reason, int attempts, long status);

 public:
  tbb::flow::graph* graph = nullptr;
  tbb::task_arena* arena = nullptr;
  // Graph work from threads outside the arena (the ticker, the HTTP loop) is queued and run by
  // one arena task that drains the queue: one enqueue and one wake-up per burst, not per record.
  // Wake-ups are also spaced at least kDrainGap apart: every wake-up of an idle arena costs a
  // thread's spin-then-yield phase (about a millisecond of CPU on a VM), so completions arriving
  // one per millisecond (a paced rate limit) would otherwise keep a core spinning. A drain owed
  // inside the gap is enqueued by the ticker (every 5 ms, and once as it stops). The graph is held (reserve_wait) from
  // the first queued item, so wait_for_all covers everything queued.
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
      if (Clock::now() - _last_drain < kDrainGap && !_ticker_stop.load(std::memory_order_acquire)) return;
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
      _http = std::make_unique<http::Client>(o);
    }
    return *_http;
  }
  void stop_http() {
    std::lock_guard lock(_http_mu);
    if (_http) _http_stats = _http->stats();
    _http.reset();
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
  std::mutex _mu;  // _error, dead letter file
  std::string _error;
  int _dead_letter = -1;  // O_APPEND: one write() per line, so processes sharing the file never interleave
  std::atomic<uint64_t> _docs{0}, _done_docs{0}, _indexed{0}, _filtered{0}, _dead{0}, _lost{0};
  std::atomic<uint64_t> _docs_indexed{0}, _docs_filtered{0}, _docs_dead{0}, _skipped_done{0};
  std::atomic<int64_t> _inflight{0}, _peak_inflight{0};
  Clock::time_point _t0;
  std::optional<uint64_t> _total;
  double _last_events = 0;
};

void NodeRuntime::forward(RecordPtr r) {
  slot().out.fetch_add(1, std::memory_order_relaxed);
  if (fanout == 0) {  // a sink cannot forward: that record would be lost
    finish(r, Outcome::lost, "sink forwarded a record");
    return;
  }
  r->ticket->add(fanout - 1);
  put(r);
}

void NodeRuntime::finish(const RecordPtr& r, Outcome o, std::string_view reason, int attempts, long status) {
  _runner.record_outcome(*this, r, o, reason, attempts, status);
  r->ticket->finish(o);
}

void NodeRuntime::put(const RecordPtr& r) {
  if (!t_outside_arena) {
    std::get<0>(fn->output_ports()).try_put(r);
    return;
  }
  _runner.post({Runner::Posted::put, this, r});
}

void NodeRuntime::hold() { _runner.hold_graph(); }
void NodeRuntime::release() { _runner.release_graph(); }

void NodeRuntime::offload(std::function<void()> fn) {
  auto run = [this, fn = std::move(fn)] {
    auto t0 = Clock::now();
    try {
      fn();
    } catch (const std::exception& e) {
      fail_run(e.what());
    }
    slot().add_busy_since(t0);
  };
  if (!t_outside_arena) {
    run();
    return;
  }
  _runner.hold_graph();
  _runner.arena->enqueue([this, run = std::move(run)] {
    run();
    _runner.release_graph();
  });
}
http::Client& NodeRuntime::http() { return _runner.http_client(); }

bool NodeRuntime::stopping() const { return _runner.stopping(); }

void NodeRuntime::emit(RecordPtr r) {
  if (r->ticket) {
    slot().out.fetch_add(1, std::memory_order_relaxed);
    if (fanout == 0) return;  // a sink has nowhere to send it; it never counted on the ticket
    r->ticket->add(fanout);
    put(r);
    return;
  }
  if (r->doc_id.empty()) r->doc_id = r->id;
  if (!_runner.wanted(r->doc_id)) return;
  push_waiting.fetch_add(1, std::memory_order_acq_rel);
  if (t_outside_arena) _runner.post({Runner::Posted::push, this, r});
  else push_queue->try_put(r);
}

void NodeRuntime::fail_run(std::string message) {
  _runner.fail("node \"" + spec.id + "\" (" + spec.type + "): " + message);
}

void NodeRuntime::run_body(const RecordPtr& in) {
  CounterSlot& s = slot();
  s.in.fetch_add(1, std::memory_order_relaxed);
  Emitter em;
  auto t0 = Clock::now();
  try {
    node->process(RecordPtr(in), em);
  } catch (const std::exception& e) {
    em.reset();
    em.drop(Outcome::dead_lettered, std::string("exception: ") + e.what());
  }
  s.add_busy_since(t0);
  auto& outs = em.outputs();
  const int64_t n = static_cast<int64_t>(outs.size());
  if (n > 0 && fanout == 0) {  // a sink emitted: nowhere to go
    outs.clear();
  }
  if (!outs.empty()) {
    // One atomic update per call: the input's own hold passes to the outputs unless the node
    // kept the input or dropped it explicitly.
    int64_t delta = static_cast<int64_t>(outs.size()) * fanout;
    if (!em.deferred() && !em.dropped()) delta -= 1;
    in->ticket->add(delta);
    s.out.fetch_add(outs.size(), std::memory_order_relaxed);
    for (auto& r : outs) {
      RecordPtr out = std::move(r);  // hold no extra reference once the record is downstream
      put(out);
    }
  }
  if (em.deferred()) return;
  if (em.dropped()) {
    finish(in, em.outcome(), em.reason());
  } else if (n == 0) {
    finish(in, Outcome::lost, "node produced no output and no outcome");
  }
}

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
        case Posted::decrement: p.node->limiter->decrementer().try_put(tbb::flow::continue_msg()); break;
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
  bool all_known = true;
  uint64_t total = 0;
  for (size_t i = 0; i < _spec.nodes.size(); ++i) {
    NodeRuntime& nr = *_nodes[i];
    nr.fanout = static_cast<int>(_spec.successors[i].size());
    const size_t conc = nr.spec.concurrency == 0 || nr.spec.info->io ? static_cast<size_t>(unlimited)
                                                                      : static_cast<size_t>(nr.spec.concurrency);
    if (nr.source) {
      if (auto t = nr.source->total()) total += *t;
      else all_known = false;
      nr.gate = static_cast<int>(i);
      if (nr.source->pushes()) nr.push_queue = std::make_unique<queue_node<RecordPtr>>(g);
      else nr.input = std::make_unique<input_node<RecordPtr>>(g, [this, &nr](tbb::flow_control& fc) -> RecordPtr {
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
            if (wanted(r->doc_id)) break;
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
      nr.fn = std::make_unique<MultiNode>(g, unlimited, [this, &nr](const RecordPtr& r, MultiNode::output_ports_type&) {
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
      nr.fn = std::make_unique<MultiNode>(g, conc, [&nr](const RecordPtr& r, MultiNode::output_ports_type&) {
        nr.run_body(r);
      });
    }
  }
  if (all_known) {
    // Sharded or resumed: the share of this process, assuming the hash spreads ids evenly.
    total /= static_cast<uint64_t>(std::max(1, _part.count));
    uint64_t skip = _opts.skip ? _opts.skip->size() : 0;
    _total = total > skip ? total - skip : 0;
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
    if (_opts.ledger && Clock::now() - last_commit >= std::chrono::milliseconds(500)) {
      last_commit = Clock::now();
      commit_ledger();
    }
    if (Clock::now() - last_progress >= std::chrono::milliseconds(250)) {
      last_progress = Clock::now();
      progress(false);
    }
  }
  kick_drain();  // owed before the stop; post() enqueues at once from now on
}


void Runner::progress(bool final_line) {
  double el = seconds_since(_t0);
  uint64_t done = _done_docs.load(), docs = _docs.load();
  uint64_t chunks = 0;
  for (const auto& nr : _nodes)
    if (nr->spec.info->role == NodeRole::chunker) chunks += nr->out_count();
  double rate = el > 0 ? done / el : 0;
  if (_opts.progress_line) {
    char line[256];
    std::string total_s = _total ? "/" + std::to_string(*_total) : "";
    std::string eta;
    if (_total && rate > 0 && *_total > done) eta = "  ETA " + human_duration((*_total - done) / rate);
    std::snprintf(line, sizeof line, "\r\033[Kdocs %llu%s  in flight %lld  chunks %llu  %.0f docs/s  %s%s",
                  static_cast<unsigned long long>(done), total_s.c_str(),
                  static_cast<long long>(_inflight.load()), static_cast<unsigned long long>(chunks), rate,
                  human_duration(el).c_str(), eta.c_str());
    std::fputs(line, stderr);
    if (final_line) std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }
  if (_opts.events_interval_s > 0 && !final_line && el - _last_events >= _opts.events_interval_s) {
    _last_events = el;
    dprintf(_opts.events_fd >= 0 ? _opts.events_fd : STDERR_FILENO,
            "{\"event\":\"progress\",\"elapsed_s\":%.1f,\"docs\":%llu,\"docs_done\":%llu,\"chunks\":%llu,"
            "\"docs_per_s\":%.1f,\"in_flight\":%lld,\"docs_skipped_done\":%llu%s}\n",
            el, static_cast<unsigned long long>(docs), static_cast<unsigned long long>(done),
            static_cast<unsigned long long>(chunks), rate, static_cast<long long>(_inflight.load()),
            static_cast<unsigned long long>(_skipped_done.load()),
            _total ? (",\"total\":" + std::to_string(*_total)).c_str() : "");
  }
}

void Runner::write_dead_letter(NodeRuntime& node, const RecordPtr& r, std::string_view reason, int attempts,
                               long status) {
  if (_dead_letter < 0) return;
  std::string line = "{\"id\":" + json::quoted(r->id) + ",\"doc_id\":" + json::quoted(r->doc_id) +
                     ",\"node\":" + json::quoted(node.spec.id) + ",\"attempts\":" + std::to_string(attempts) +
                     ",\"status\":" + (status ? std::to_string(status) : std::string("null")) + ",\"error\":" +
                     json::quoted(reason) + "}\n";
  std::lock_guard lock(_mu);
  ssize_t ignored = ::write(_dead_letter, line.data(), line.size());
  (void)ignored;
}

RunReport Runner::run() {
  RunReport rep;
  rep.graph = _spec.name;
  rep.config_hash = _spec.config_hash;
  rep.shard = _part.text();
  rep.threads = _threads;
  rep.max_inflight_docs = _spec.settings.max_inflight_docs;
  _t0 = Clock::now();
  const double cpu0 = process_cpu_seconds();

  const int slots = _threads + 1;
  for (size_t i = 0; i < _spec.nodes.size(); ++i) {
    const NodeSpec& ns = _spec.nodes[i];
    auto nr = std::make_unique<NodeRuntime>(*this, ns, i, slots);
    NodeInit init{ns.id, ns.type, ns.params, _spec.name, ns.concurrency, _opts.shard,
                  "w" + std::to_string(_opts.worker) + "." + std::to_string(getpid()), ns.adaptive};
    if (ns.info->make_source) {
      nr->source = ns.info->make_source(init);
      if (!_part.all() || _opts.skip) nr->source->set_wanted([this](const std::string& id) { return wanted(id); });
    }
    else nr->node = ns.info->make_node(init);
    _nodes.push_back(std::move(nr));
  }
  try {
    if (_opts.reset_outputs) reset_outputs(_spec, _opts.shard);
    if (!_spec.settings.dead_letter.empty()) {
      std::filesystem::path p(_spec.settings.dead_letter);
      if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
      // Appended to: reset_outputs() empties it for a fresh run; a resume or a worker adds to it.
      _dead_letter = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (_dead_letter < 0) throw std::runtime_error("cannot write dead-letter file " + p.string());
    }
    open_all();
  } catch (const std::exception& e) {
    rep.error = e.what();
    if (_dead_letter >= 0) ::close(_dead_letter);
    return rep;
  }

  // The main thread waits outside the arena. Inside graph::wait_for_all it would be an arena
  // thread that spins (about a hundred sched_yields) on every wake-up of the arena, which was half
  // of sluice's CPU at 50 requests in flight. So the arena has no slot reserved for it, and the
  // scheduler gets one worker per --threads.
  tbb::global_control workers(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(_threads) + 1);
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
    std::this_thread::sleep_for(_holds.load(std::memory_order_acquire) > 0 ? std::chrono::microseconds(1000)
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
      if (nr->push_queue && !(nr->push_done.load() && nr->push_waiting.load() == 0)) exhausted = false;
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
  task_arena.execute([&] {
    g.wait_for_all();
    stop_http();  // anything still queued there is called back (and finished) while the graph lives
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
  for (auto& nr : _nodes) {
    auto t0 = Clock::now();
    try {
      if (nr->source) nr->source->close();
      else nr->node->close();
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
  if (_dead_letter >= 0) ::close(_dead_letter);
  if (_opts.ledger) commit_ledger();
  if (_opts.merge_outputs) {
    try {
      merge_outputs(_spec, _opts.shard);
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }

  rep.elapsed_s = seconds_since(_t0);
  rep.docs = _docs.load();
  rep.docs_skipped_done = _skipped_done.load();
  for (const auto& nr : _nodes) {
    rep.nodes.push_back(nr->report());
    if (nr->spec.info->role == NodeRole::chunker) rep.chunks += rep.nodes.back().out;
    rep.tokens += rep.nodes.back().tokens;
    rep.cost_usd += rep.nodes.back().cost_usd;
  }
  rep.indexed = _indexed.load();
  rep.filtered = _filtered.load();
  rep.dead_lettered = _dead.load();
  rep.lost = _lost.load();
  rep.docs_indexed = _docs_indexed.load();
  rep.docs_filtered = _docs_filtered.load();
  rep.docs_dead_lettered = _docs_dead.load();
  rep.peak_inflight_docs = _peak_inflight.load();
  rep.peak_rss_bytes = peak_rss_bytes();
  rep.peak_rss_total_bytes = rep.peak_rss_bytes;
  rep.cpu_s = process_cpu_seconds() - cpu0;
  rep.http.requests = _http_stats.completed + _http_stats.failed;
  rep.http.attempts = _http_stats.attempts;
  rep.http.retries = _http_stats.retries;
  rep.http.throttled = _http_stats.throttled;
  rep.http.failed = _http_stats.failed;
  rep.http.loop_cpu_s = _http_stats.loop_cpu_s;
  rep.http.latency = _http_stats.latency;
  rep.interrupted = _opts.interrupt && _opts.interrupt->load();
  {
    std::lock_guard lock(_mu);
    rep.error = _error;
  }
  return rep;
}

}  // namespace

namespace {

using OutputHook = std::function<void(const Params&, const ShardSpec&)> NodeTypeInfo::*;

void run_output_hooks(const GraphSpec& spec, const ShardSpec& shard, OutputHook hook, const char* what) {
  for (const auto& n : spec.nodes) {
    if (!(n.info->*hook)) continue;
    try {
      (n.info->*hook)(n.params, shard);
    } catch (const std::exception& e) {
      throw std::runtime_error("node \"" + n.id + "\" (" + n.type + "): " + what + e.what());
    }
  }
}

}  // namespace

void reset_outputs(const GraphSpec& spec, const ShardSpec& shard) {
  if (!spec.settings.dead_letter.empty() && std::filesystem::is_regular_file(spec.settings.dead_letter))
    std::filesystem::resize_file(spec.settings.dead_letter, 0);
  run_output_hooks(spec, shard, &NodeTypeInfo::reset_outputs, "");
}

void merge_outputs(const GraphSpec& spec, const ShardSpec& shard) {
  run_output_hooks(spec, shard, &NodeTypeInfo::merge_outputs, "merging its output failed: ");
}

std::string human_duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

double cpu_seconds(const struct rusage& ru) {
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

double process_cpu_seconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return cpu_seconds(ru);
}

double NodeReport::utilization(double elapsed, int threads) const {
  if (elapsed <= 0) return 0;
  if (io) return concurrency > 0 ? in_flight_mean / concurrency : 0;
  int lanes = concurrency > 0 ? std::min(concurrency, std::max(1, threads)) : std::max(1, threads);
  return busy_s / elapsed / lanes;
}

int hardware_threads() {
  return std::max(1, tbb::this_task_arena::max_concurrency());
}

RunReport run_graph(const GraphSpec& spec, const RunOptions& options) {
  Runner r(spec, options);
  return r.run();
}

int RunReport::exit_code() const {
  if (interrupted) return 130;
  if (!error.empty() || lost > 0) return 1;
  return 0;
}

std::string RunReport::to_json() const {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("graph"); w.String(graph.c_str());
  w.Key("config_hash"); w.String(config_hash.c_str());
  w.Key("shard"); w.String(shard.c_str());
  w.Key("threads"); w.Int(threads);
  w.Key("docs"); w.Uint64(docs);
  w.Key("docs_skipped_done"); w.Uint64(docs_skipped_done);
  w.Key("chunks"); w.Uint64(chunks);
  w.Key("indexed"); w.Uint64(indexed);
  w.Key("filtered"); w.Uint64(filtered);
  w.Key("dead_lettered"); w.Uint64(dead_lettered);
  w.Key("lost"); w.Uint64(lost);
  w.Key("docs_indexed"); w.Uint64(docs_indexed);
  w.Key("docs_filtered"); w.Uint64(docs_filtered);
  w.Key("docs_dead_lettered"); w.Uint64(docs_dead_lettered);
  w.Key("max_inflight_docs"); w.Int(max_inflight_docs);
  w.Key("peak_inflight_docs"); w.Int64(peak_inflight_docs);
  w.Key("elapsed_s"); w.Double(elapsed_s);
  w.Key("docs_per_s"); w.Double(docs_per_s());
  w.Key("peak_rss_bytes"); w.Uint64(peak_rss_bytes);
  w.Key("tokens"); w.Uint64(tokens);
  w.Key("cost_usd"); w.Double(cost_usd);
  w.Key("cpu_s"); w.Double(cpu_s);
  w.Key("cpu_ms_per_doc"); w.Double(docs > 0 ? 1000.0 * cpu_s / static_cast<double>(docs) : 0);
  w.Key("peak_rss_total_bytes"); w.Uint64(peak_rss_total_bytes);
  w.Key("http");
  w.StartObject();
  w.Key("requests"); w.Uint64(http.requests);
  w.Key("requests_per_s"); w.Double(elapsed_s > 0 ? static_cast<double>(http.requests) / elapsed_s : 0);
  w.Key("attempts"); w.Uint64(http.attempts);
  w.Key("retries"); w.Uint64(http.retries);
  w.Key("throttled"); w.Uint64(http.throttled);
  w.Key("failed"); w.Uint64(http.failed);
  w.Key("loop_cpu_s"); w.Double(http.loop_cpu_s);
  w.Key("loop_cpu_us_per_request"); w.Double(http.loop_cpu_us_per_request());
  w.Key("latency_ms");
  w.StartObject();
  w.Key("p50"); w.Double(http.latency.quantile_ms(0.50));
  w.Key("p95"); w.Double(http.latency.quantile_ms(0.95));
  w.Key("p99"); w.Double(http.latency.quantile_ms(0.99));
  w.EndObject();
  w.Key("latency_histogram");
  std::string hist = http.latency.to_json();
  w.RawValue(hist.data(), hist.size(), rapidjson::kArrayType);
  w.EndObject();
  w.Key("interrupted"); w.Bool(interrupted);
  w.Key("error"); if (error.empty()) w.Null(); else w.String(error.c_str());
  w.Key("restarts"); w.Int(restarts);
  if (!workers_json.empty()) {
    w.Key("workers");
    w.StartArray();
    for (const auto& wj : workers_json) w.RawValue(wj.data(), wj.size(), rapidjson::kObjectType);
    w.EndArray();
  }
  w.Key("nodes");
  w.StartArray();
  for (const auto& n : nodes) {
    w.StartObject();
    w.Key("id"); w.String(n.id.c_str());
    w.Key("type"); w.String(n.type.c_str());
    w.Key("role"); w.String(role_name(n.role));
    w.Key("concurrency"); w.Int(n.concurrency);
    w.Key("in"); w.Uint64(n.in);
    w.Key("out"); w.Uint64(n.out);
    w.Key("errors"); w.Uint64(n.errors);
    w.Key("busy_s"); w.Double(n.busy_s);
    w.Key("tokens"); w.Uint64(n.tokens);
    w.Key("cost_usd"); w.Double(n.cost_usd);
    w.Key("io"); w.Bool(n.io);
    w.Key("utilization"); w.Double(n.utilization(elapsed_s, threads));
    w.Key("queue_mean"); w.Double(n.queue_mean);
    w.Key("queue_peak"); w.Uint64(n.queue_peak);
    w.Key("in_flight_mean"); w.Double(n.in_flight_mean);
    w.Key("in_flight_peak"); w.Uint64(n.in_flight_peak);
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
  auto u64 = [&](const char* k) -> uint64_t {
    auto it = d.FindMember(k);
    return it != d.MemberEnd() && it->value.IsUint64() ? it->value.GetUint64() : 0;
  };
  auto dbl = [&](const rapidjson::Value& o, const char* k) -> double {
    auto it = o.FindMember(k);
    return it != o.MemberEnd() && it->value.IsNumber() ? it->value.GetDouble() : 0;
  };
  auto str = [&](const char* k) -> std::string {
    auto it = d.FindMember(k);
    return it != d.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
  };
  r.graph = str("graph");
  r.config_hash = str("config_hash");
  r.shard = str("shard");
  r.threads = static_cast<int>(u64("threads"));
  r.docs = u64("docs");
  r.docs_skipped_done = u64("docs_skipped_done");
  r.chunks = u64("chunks");
  r.indexed = u64("indexed");
  r.filtered = u64("filtered");
  r.dead_lettered = u64("dead_lettered");
  r.lost = u64("lost");
  r.docs_indexed = u64("docs_indexed");
  r.docs_filtered = u64("docs_filtered");
  r.docs_dead_lettered = u64("docs_dead_lettered");
  r.max_inflight_docs = static_cast<int>(u64("max_inflight_docs"));
  r.peak_inflight_docs = static_cast<int64_t>(u64("peak_inflight_docs"));
  r.elapsed_s = dbl(d, "elapsed_s");
  r.peak_rss_bytes = u64("peak_rss_bytes");
  r.tokens = u64("tokens");
  r.cost_usd = dbl(d, "cost_usd");
  r.cpu_s = dbl(d, "cpu_s");
  r.peak_rss_total_bytes = u64("peak_rss_total_bytes");
  if (auto h = d.FindMember("http"); h != d.MemberEnd() && h->value.IsObject()) {
    const auto& o = h->value;
    auto hu = [&](const char* k) { return static_cast<uint64_t>(dbl(o, k)); };
    r.http.requests = hu("requests");
    r.http.attempts = hu("attempts");
    r.http.retries = hu("retries");
    r.http.throttled = hu("throttled");
    r.http.failed = hu("failed");
    r.http.loop_cpu_s = dbl(o, "loop_cpu_s");
    r.http.latency = LatencyHistogram();
    if (auto lh = o.FindMember("latency_histogram"); lh != o.MemberEnd() && lh->value.IsArray())
      for (const auto& b : lh->value.GetArray())
        if (b.IsArray() && b.Size() == 2 && b[0].IsInt() && b[1].IsUint64())
          r.http.latency.add_bucket(b[0].GetInt(), b[1].GetUint64());
  }
  auto it = d.FindMember("interrupted");
  r.interrupted = it != d.MemberEnd() && it->value.IsBool() && it->value.GetBool();
  r.error = str("error");
  r.nodes.clear();
  if (auto n = d.FindMember("nodes"); n != d.MemberEnd() && n->value.IsArray()) {
    for (const auto& o : n->value.GetArray()) {
      if (!o.IsObject()) continue;
      NodeReport nr;
      auto s = [&](const char* k) -> std::string {
        auto m = o.FindMember(k);
        return m != o.MemberEnd() && m->value.IsString() ? m->value.GetString() : "";
      };
      nr.id = s("id");
      nr.type = s("type");
      std::string role = s("role");
      for (NodeRole cand : {NodeRole::source, NodeRole::transform, NodeRole::chunker, NodeRole::embedder,
                            NodeRole::sink})
        if (role == role_name(cand)) nr.role = cand;
      nr.concurrency = static_cast<int>(dbl(o, "concurrency"));
      nr.in = static_cast<uint64_t>(dbl(o, "in"));
      nr.out = static_cast<uint64_t>(dbl(o, "out"));
      nr.errors = static_cast<uint64_t>(dbl(o, "errors"));
      nr.busy_s = dbl(o, "busy_s");
      nr.tokens = static_cast<uint64_t>(dbl(o, "tokens"));
      nr.cost_usd = dbl(o, "cost_usd");
      nr.queue_mean = dbl(o, "queue_mean");
      nr.queue_peak = static_cast<uint64_t>(dbl(o, "queue_peak"));
      nr.in_flight_mean = dbl(o, "in_flight_mean");
      nr.in_flight_peak = static_cast<uint64_t>(dbl(o, "in_flight_peak"));
      auto io = o.FindMember("io");
      nr.io = io != o.MemberEnd() && io->value.IsBool() && io->value.GetBool();
      r.nodes.push_back(std::move(nr));
    }
  }
  return true;
}

std::string RunReport::table() const {
  std::string out;
  char line[512];
  size_t idw = 4, tw = 4;
  for (const auto& n : nodes) {
    idw = std::max(idw, n.id.size());
    tw = std::max(tw, n.type.size());
  }
  std::snprintf(line, sizeof line, "%-*s  %-*s  %10s  %10s  %7s  %9s  %5s  %8s\n", int(idw), "node", int(tw),
                "type", "in", "out", "errors", "busy_s", "util", "queue");
  out += line;
  for (const auto& n : nodes) {
    std::snprintf(line, sizeof line, "%-*s  %-*s  %10llu  %10llu  %7llu  %9.3f  %4.0f%%  %8.1f\n", int(idw),
                  n.id.c_str(), int(tw), n.type.c_str(), static_cast<unsigned long long>(n.in),
                  static_cast<unsigned long long>(n.out), static_cast<unsigned long long>(n.errors), n.busy_s,
                  100.0 * n.utilization(elapsed_s, threads), n.queue_mean);
    out += line;
  }
  std::snprintf(line, sizeof line,
                "docs %llu (indexed %llu, filtered %llu, dead-lettered %llu)  chunks %llu  lost %llu\n",
                static_cast<unsigned long long>(docs), static_cast<unsigned long long>(docs_indexed),
                static_cast<unsigned long long>(docs_filtered), static_cast<unsigned long long>(docs_dead_lettered),
                static_cast<unsigned long long>(chunks), static_cast<unsigned long long>(lost));
  out += line;
  std::snprintf(line, sizeof line,
                "elapsed %.2f s  %.1f docs/s  peak RSS %.1f MiB  threads %d  peak in flight %lld/%d\n",
                elapsed_s, docs_per_s(), peak_rss_bytes / 1048576.0, threads,
                static_cast<long long>(peak_inflight_docs), max_inflight_docs);
  out += line;
  std::snprintf(line, sizeof line, "cpu %.2f s (%.2f ms/doc)\n", cpu_s,
                docs > 0 ? 1000.0 * cpu_s / static_cast<double>(docs) : 0.0);
  out += line;
  if (http.requests > 0) {
    std::snprintf(line, sizeof line,
                  "http %llu requests (%.1f/s)  retries %llu  429s %llu  failed %llu  latency p50 %.1f ms  p95 %.1f ms  "
                  "p99 %.1f ms  loop cpu %.2f s (%.0f us/request)\n",
                  static_cast<unsigned long long>(http.requests), elapsed_s > 0 ? http.requests / elapsed_s : 0.0,
                  static_cast<unsigned long long>(http.retries), static_cast<unsigned long long>(http.throttled),
                  static_cast<unsigned long long>(http.failed), http.latency.quantile_ms(0.5),
                  http.latency.quantile_ms(0.95), http.latency.quantile_ms(0.99), http.loop_cpu_s,
                  http.loop_cpu_us_per_request());
    out += line;
  }
  if (tokens > 0) {
    std::snprintf(line, sizeof line, "tokens %llu  cost $%.4f\n", static_cast<unsigned long long>(tokens), cost_usd);
    out += line;
  }
  if (docs_skipped_done > 0) {
    std::snprintf(line, sizeof line, "skipped %llu documents done in an earlier run (--resume)\n",
                  static_cast<unsigned long long>(docs_skipped_done));
    out += line;
  }
  if (restarts > 0) out += "worker restarts " + std::to_string(restarts) + "\n";
  if (interrupted) out += "interrupted: in-flight work was drained; run again with --resume to finish\n";
  if (!error.empty()) out += "error: " + error + "\n";
  return out;
}

}  // namespace sluice
