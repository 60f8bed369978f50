#include <unistd.h>

#include <cstdio>

#include "engine/graph/runtime.hpp"
#include "engine/thread_role.hpp"

namespace sluice::runtime {

void NodeRuntime::forward(RecordPtr r) {
  slot().out.fetch_add(1, std::memory_order_relaxed);
  if (fanout == 0) {  // a sink cannot forward: that record would be lost
    finish(r, Outcome::lost, "sink forwarded a record");
    return;
  }
  r->ticket->add(fanout - 1);
  put(r);
}

void NodeRuntime::finish(const RecordPtr& r, Outcome o, std::string_view reason, int attempts,
                         long status) {
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
    CounterSlot& s = slot();
    s.out.fetch_add(1, std::memory_order_relaxed);
    // A record of a held document under another doc_id (fetch.http's follow) begins a document.
    if (r->doc_id != r->ticket->doc_id()) s.docs_out.fetch_add(1, std::memory_order_relaxed);
    if (fanout == 0) return;  // a sink has nowhere to send it; it never counted on the ticket
    r->ticket->add(fanout);
    put(r);
    return;
  }
  if (r->doc_id.empty()) r->doc_id = r->id;
  if (!_runner.wanted(r->doc_id, !(source && source->splits_itself()))) return;
  push_waiting.fetch_add(1, std::memory_order_acq_rel);
  if (t_outside_arena) _runner.post({Runner::Posted::push, this, r});
  else push_queue->try_put(r);
}

void NodeRuntime::warn(std::string message) { _runner.warn(spec.id, message); }

void NodeRuntime::fail_run(std::string message) {
  _runner.fail("node \"" + spec.id + "\" (" + spec.type + "): " + message);
}

void NodeRuntime::run_body(const RecordPtr& in) {
  CounterSlot& s = slot();
  s.in.fetch_add(1, std::memory_order_relaxed);
  if (seen_ids && !seen_ids->insert(in->ticket ? in->ticket->doc_id() : in->doc_id, in->id)) {
    _runner.duplicate_id(in->id);
    finish(in, Outcome::filtered, "duplicate id");
    return;
  }
  if (in->text.empty() && !in->body.empty() && needs_text()) {
    // Raw content (a PDF a source read, a response body) with nothing made of it yet.
    std::string type = in->meta.get_text("content_type");
    finish(in, Outcome::dead_lettered,
           (type.empty() ? std::string("raw content") : "binary content (" + type + ")") +
               " and no text: put an extractor (extract.auto, extract.json) before node \"" +
               spec.id + "\"");
    return;
  }
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
    uint64_t new_docs = 0;  // outputs under another doc_id than the input's (expand.json)
    for (const auto& r : outs) new_docs += r->doc_id != in->doc_id;
    if (new_docs > 0) s.docs_out.fetch_add(new_docs, std::memory_order_relaxed);
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

}  // namespace sluice::runtime
