// The node interface every node kind implements, and what the engine hands to it.
// engine/ never includes a node header: nodes reach the engine only through these types.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/params.hpp"

namespace sluice::http {
class Client;
}
#include "engine/record.hpp"
#include "engine/state/shard.hpp"

namespace sluice {

enum class NodeRole { source, transform, chunker, embedder, sink };
const char* role_name(NodeRole r);

// Per-node services, owned by the runner; thread-safe; never blocks.
class NodeOutput {
 public:
  virtual ~NodeOutput() = default;
  // Sends a record this node kept (Emitter::defer) or created to every successor. The node's
  // hold on the record's ticket passes downstream.
  virtual void forward(RecordPtr r) = 0;
  // Sends a new record of a document whose ticket this node holds (e.g. one of the records an
  // async node derived from a kept input) to every successor.
  virtual void emit(RecordPtr r) = 0;
  // A kept record reached its outcome (dead-lettered ones go to the DLQ with `reason`, the
  // number of attempts and the last HTTP status, 0 if none).
  virtual void finish(const RecordPtr& r, Outcome o, std::string_view reason = {}, int attempts = 1,
                      long status = 0) = 0;
  // Async work in flight: hold() before handing a record to the I/O loop, release() after its
  // forward()/finish(). Holds keep the graph from looking idle (the graph's reserve_wait and
  // release_wait, as an async_node gateway does).
  virtual void hold() = 0;
  virtual void release() = 0;
  // Runs `fn` soon on a TBB worker, the graph held until it returns; its time counts as the
  // node's busy time. For CPU work an HTTP callback should not do on the loop thread, which every
  // request of the process shares: parsing a large response, building the next request's body.
  // Called from inside the arena, it runs `fn` at once. An exception fails the run.
  virtual void offload(std::function<void()> fn) = 0;
  // The process's HTTP client (one curl-multi loop thread), created on first use.
  virtual http::Client& http() = 0;
  // Aborts the run with a message shown to the user (e.g. the index cannot be written).
  virtual void fail_run(std::string message) = 0;
  virtual const std::string& node_id() const = 0;
  // Something the user should know that fails nothing (a JSON pointer that matched no record
  // yet): said once, on stderr and in the report.
  virtual void warn(std::string /*message*/) {}
  // Upstream usage for the run report (e.g. embedding tokens and their price).
  virtual void add_usage(uint64_t tokens, double cost_usd) = 0;
};

// Collects what one process() call did with its input. Not thread-safe: one per call.
class Emitter {
 public:
  void emit(RecordPtr r) { _out.push_back(std::move(r)); }
  // The input reached an outcome here (filtered on purpose, or dead-lettered with a reason).
  void drop(Outcome o, std::string reason = {}) {
    _outcome = o;
    _reason = std::move(reason);
    _dropped = true;
  }
  // The node keeps the input and will forward() or finish() it later (batching, async I/O).
  void defer() { _deferred = true; }

  std::vector<RecordPtr>& outputs() { return _out; }
  bool dropped() const { return _dropped; }
  bool deferred() const { return _deferred; }
  Outcome outcome() const { return _outcome; }
  const std::string& reason() const { return _reason; }
  void reset() {
    _out.clear();
    _dropped = _deferred = false;
    _reason.clear();
  }

 private:
  std::vector<RecordPtr> _out;
  bool _dropped = false;
  bool _deferred = false;
  Outcome _outcome = Outcome::filtered;
  std::string _reason;
};

// A transform, chunker, embedder or sink.
class Node {
 public:
  virtual ~Node() = default;
  // Before records flow, on the main thread. May do I/O (open a file or database); throws
  // std::runtime_error for a setup failure the user must fix.
  virtual void open(NodeOutput& out) { _output = &out; }
  // On a TBB worker, up to the node's `concurrency` calls at once. Must not block on the network
  // or sleep. Each input ends as outputs, a drop() or a defer().
  virtual void process(RecordPtr in, Emitter& out) = 0;
  // Batching nodes: emit or finish a partial batch whose oldest record waited `linger_ms`, or
  // everything when `force` (end of input). Called from the runner's thread, possibly while
  // process() runs on a worker: the node locks its own batch.
  virtual void flush(bool /*force*/) {}
  virtual bool has_pending() const { return false; }
  // I/O nodes: work waiting for a slot under `concurrency`, and requests in flight now (units the
  // node submits: a record, a batch). Sampled by the runner's ticker thread for the report.
  struct Load {
    size_t queued = 0;
    size_t in_flight = 0;
    int limit = 0;       // adaptive concurrency: the limit on requests in flight now
    int limit_peak = 0;  // and the highest it reached (0: a fixed cap)
  };
  virtual Load load() const { return {}; }
  // After a run in which every document reached its outcome and nothing failed or was
  // interrupted, on the main thread, before close(). A sink may finish replacing what it
  // replaced (index.sqlite deletes the chunks its documents no longer have). May throw.
  virtual void commit() {}
  // After the run, on the main thread.
  virtual void close() {}

 protected:
  NodeOutput* _output = nullptr;
};

// What a push source (see Source::pushes) hands its records to. Thread-safe; never blocks.
class SourceOutput {
 public:
  virtual ~SourceOutput() = default;
  // A new document; it waits in a queue for admission under max_inflight_docs.
  virtual void emit(RecordPtr r) = 0;
  // No more documents will come (after the last emit).
  virtual void done() = 0;
  // Documents emitted and not yet admitted: fetch more only when this runs low.
  virtual size_t waiting() const = 0;
  virtual void hold() = 0;  // as NodeOutput::hold/release, around async work
  virtual void release() = 0;
  virtual http::Client& http() = 0;
  virtual void fail_run(std::string message) = 0;
  // The run is stopping (interrupt or failure): fetch nothing more, then call done().
  virtual bool stopping() const = 0;
  // As NodeOutput::warn: something the user should know, once.
  virtual void warn(std::string /*message*/) {}
};

// A source is pulled one record at a time (next()), or pushes records it gets from async work
// (pushes() = true: start(), then on_admitted()). Either way the engine gates documents on
// max_inflight_docs.
class Source {
 public:
  virtual ~Source() = default;
  virtual void open() {}  // main thread, may do I/O; throws std::runtime_error on failure
  // Serially on a TBB worker; nullptr = exhausted. May read local files; never the network.
  virtual RecordPtr next() = 0;
  // Number of documents, when known (progress ETA). May become known during the run (a listing
  // that announces its count on its first page) and is asked from the progress thread, so it
  // must be cheap and thread-safe.
  virtual std::optional<uint64_t> total() const { return std::nullopt; }
  virtual void close() {}

  // Push sources: next() is never called. start() runs once on the main thread after open();
  // on_admitted() runs (on a TBB worker, possibly concurrently) each time one of its documents
  // was admitted, so the source can fetch more when out.waiting() runs low. Neither may block.
  virtual bool pushes() const { return false; }
  // True when the source gives only this process's share of the documents itself (a listing
  // whose pages are split among the processes): the runner then keeps every document it gives
  // instead of keeping those whose id hashes to this process. Documents done before (--resume)
  // are still skipped.
  virtual bool splits_itself() const { return false; }
  virtual void start(SourceOutput& /*out*/) {}
  virtual void on_admitted() {}

  // The runner's filter (this process's shard, documents done before a --resume), set before
  // open(). A source that knows a document's id before the costly part (reading a file,
  // generating text) asks wanted() and skips the document; the runner filters again anyway.
  void set_wanted(std::function<bool(const std::string&)> f) { _wanted = std::move(f); }
  // Whether the run is stopping (an interrupt, a failure), set before open(). A source that may
  // wait on its input (a FIFO, a terminal) asks it while waiting, in open() and next().
  void set_stopping(std::function<bool()> f) { _stopping = std::move(f); }

 protected:
  bool wanted(const std::string& doc_id) const { return !_wanted || _wanted(doc_id); }
  std::function<bool()> stopping_check() const { return _stopping; }

 private:
  std::function<bool(const std::string&)> _wanted;
  std::function<bool()> _stopping;
};

struct NodeInit {
  std::string id;
  std::string type;
  Params params;
  std::string graph_name;
  int concurrency =
      0;  // the node's `concurrency` (0 = unlimited): I/O nodes cap requests in flight
  // This process's part of the job: its shard (sinks that write part files name them after it)
  // and a tag unique to this worker and attempt (e.g. "w1.12345").
  ShardSpec shard;
  std::string part_tag;
  // `"concurrency": "adaptive[:N]"`: the node finds its cap on requests in flight in [1,
  // concurrency].
  bool adaptive = false;
  // The job's state directory (the checkpoint ledger's; shared by its processes and shards), for
  // state a node keeps across them; "" when the run has none (a library call).
  std::string state_dir;
  // The documents this process handles: its shard's share for this worker (shard.split(worker,
  // workers)); "0/1" = all. A source that splits its listing among processes reads it.
  ShardSpec part;
  // How many processes the job-total limits in params (rpm, tpm) were divided among
  // (split_job_limits): all of `part.count`, or under limits_scope "shard" the shard's own; 1 =
  // not divided.
  int limit_sharers = 1;
};

// What one document costs at a node, for `sluice plan` (a steady-state model: no retries, no
// ramp-up). The plan walks the graph in order, handing each node what the nodes before it made.
struct CostInput {
  double doc_chars = 0;       // text per source document
  double chunks_per_doc = 1;  // records per document reaching this node
  double chunk_chars = 0;     // text per record reaching this node
};
struct NodeCost {
  // A chunker: what it makes of a document (the input of the nodes after it).
  std::optional<double> chunks_per_doc;
  double chunk_chars = 0;
  // An I/O node: its demand per source document. Its limits (concurrency, rpm, tpm) come from
  // its spec and params.
  bool io = false;
  std::string what = "requests";  // what it sends: "requests", "pages"
  double requests_per_doc = 0;
  double tokens_per_doc = 0;
  double cost_per_doc = 0;  // USD
  // A paged listing, one page at a time: every process pages the whole listing, unless
  // `listing_splits` (each process pages only its share of the pages).
  bool listing = false;
  bool listing_splits = false;
  double listing_parts = 0;  // a listing split by partitions: how many (> 0); by pages: 0
  double per_page = 1;
};

struct NodeTypeInfo {
  std::string type;  // family.kind
  NodeRole role = NodeRole::transform;
  std::string description;
  std::vector<ParamSpec> params;
  int default_concurrency = 0;  // 0 = unlimited, 1 = serial, N
  // I/O nodes given no `concurrency`: adaptive (AIMD, see AimdLimit) up to `adaptive_max`
  // requests in flight, or up to `adaptive_max_rpm` when the node's `rpm` is set (the rate limit
  // then keeps the node considerate, and the ceiling must not keep it below the rate). 0: the
  // fixed default_concurrency.
  int adaptive_max = 0;
  int adaptive_max_rpm = 0;
  // I/O nodes: `concurrency` caps requests in flight (retries included) and the node's bodies
  // run unlimited, since they only hand work to the HTTP loop.
  bool io = false;
  // Exactly one of these is set. Factories validate params (throw ParamError) and do no I/O.
  std::function<std::unique_ptr<Source>(const NodeInit&)> make_source;
  std::function<std::unique_ptr<Node>(const NodeInit&)> make_node;
  // Sinks whose output is written as part files by each process (index.jsonl). Called once per
  // shard, by the single process or by the launcher, never by a worker: `reset_outputs` before a
  // fresh run (not a resume), `merge_outputs` after the last worker ended. Shards sharing one
  // output path may call them concurrently. Both may throw. `finished` is false after a run that
  // failed or was interrupted: the merge must then keep any earlier output whole.
  std::function<void(const Params&, const ShardSpec&)> reset_outputs;
  std::function<void(const Params&, const ShardSpec&, bool finished)> merge_outputs;
  // The file a sink writes, from its params (the run's state directory goes beside the first
  // one); unset, or "": none (a sink that sends its records to a server).
  std::function<std::string(const Params&)> output_file;
  // Its cost per document for `sluice plan`; unset: free (a CPU node the plan does not model).
  std::function<NodeCost(const Params&, const CostInput&)> cost;
};

class Registry {
 public:
  void add(NodeTypeInfo info);
  const NodeTypeInfo* find(std::string_view type) const;
  std::vector<std::string> types() const;  // sorted
  const std::vector<NodeTypeInfo>& all() const { return _infos; }

 private:
  std::vector<NodeTypeInfo> _infos;
};

}  // namespace sluice
