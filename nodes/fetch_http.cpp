#include "nodes/fetch_http.hpp"

#include "engine/json/value.hpp"

#include <deque>
#include <memory>
#include <mutex>
#include <unordered_set>

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>

#include "engine/http/client.hpp"
#include "engine/http/inflight_cap.hpp"
#include "engine/http/request_options.hpp"
#include "engine/json/scan.hpp"
#include "engine/record_template.hpp"

namespace sluice {

namespace {

RecordTemplate compile(const Params& p, const char* name) {
  try {
    return RecordTemplate(p.str(name));
  } catch (const std::invalid_argument& e) {
    throw ParamError(name, e.what());
  }
}

class FetchHttp final : public Node {
 public:
  explicit FetchHttp(const NodeInit& init)
      : _id(init.id), _url(compile(init.params, "url")),
        _body(init.params.has("body") ? compile(init.params, "body") : RecordTemplate("")),
        _method(init.params.str("method")), _cap(init.concurrency, init.adaptive),
        _opts(http::read_request_options(init.params, init.id)) {
    const std::string url = init.params.str("url");
    if (!http::is_http_url(url) && url.rfind("{+", 0) != 0)
      throw ParamError(
          "url",
          "url must start with http:// or https:// (or be {+id}: a whole URL from the record)");
    if (const json::Value* h = init.params.get("headers"); h && h->kind == json::Kind::object) {
      for (const auto& m : h->members) {
        if (m.value.kind != json::Kind::string)
          throw ParamError("headers", "header \"" + m.key + "\" must be a string");
        if (m.value.unset_env)
          continue;  // built from an unset ${env:...}: an optional key, not sent
        // What the config fixes is checked now; what records fill in, per request (the client
        // refuses a header with a line break, and the record is dead-lettered).
        http::static_header("headers", m.key + ": " + m.value.str);
        try {
          _headers.emplace_back(m.key, RecordTemplate(m.value.str));
        } catch (const std::invalid_argument& e) {
          throw ParamError("headers", "header \"" + m.key + "\": " + e.what());
        }
      }
    }
    if (const json::Value* f = init.params.get("follow");
        f && f->kind == json::Kind::object && !f->members.empty()) {
      _follow = true;
      for (const auto& m : f->members) {
        if (m.key == "max") {
          if (m.value.kind != json::Kind::number || m.value.number < 1)
            throw ParamError("follow", "follow.max must be a number >= 1");
          _follow_max = static_cast<int>(m.value.number);
          continue;
        }
        if (m.key != "first" && m.key != "next")
          throw ParamError("follow", "unknown follow setting \"" + m.key + "\" (first, next, max)");
        if (m.value.kind != json::Kind::string)
          throw ParamError("follow", "follow." + m.key + " must be a JSON pointer");
        json_pointer(m.value.str, "follow");  // checks it
        (m.key == "first" ? _first : _next).emplace(m.value.str);
      }
      if (!_next)
        throw ParamError("follow",
                         "follow needs \"next\": the pointer to the next id in a response");
    }
  }

  void open(NodeOutput& out) override {
    Node::open(out);
    _client = &out.http();
    _opts.set_rate_limit(*_client);
  }

  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    _output->hold();
    auto chain = std::make_shared<Chain>();
    chain->input = in;
    chain->current = std::move(in);
    chain->phase = !_follow ? Chain::single : !_first ? Chain::follow : Chain::first;
    if (chain->phase == Chain::follow) chain->current = step_record(*chain, chain->input->id);
    if (_cap.admit(chain)) submit(std::move(chain));
  }

  Load load() const override {
    auto f = _cap.load();
    return {f.queued, f.in_flight, f.limit, f.peak};
  }

 private:
  // One input's requests: a single fetch, or (follow) a chain of fetches through `next`, one
  // request in flight at a time, each response a new record of the input's document.
  struct Chain {
    enum Phase { single, first, follow } phase = single;
    RecordPtr input;    // holds the document's ticket
    RecordPtr current;  // the record whose id fills the URL
    int steps = 0;
    std::unordered_set<std::string> seen;
  };

  RecordPtr step_record(Chain& c, const std::string& ref) {
    c.seen.insert(ref);
    auto r = c.input->derive(ref);
    r->doc_id = ref;  // each followed record is a document of its own in the index
    r->ticket = c.input->ticket;
    return r;
  }

  void submit(std::shared_ptr<Chain> chain) {
    const RecordPtr& r = chain->current;
    http::Request req;
    req.method = _method;
    req.url = _url.expand(*r, true);
    if (!_body.empty()) req.body = _body.expand(*r, false);
    for (const auto& [name, tpl] : _headers) {
      std::string v = tpl.expand(*r, false);
      if (!v.empty())
        req.headers.push_back(name + ": " + v);  // an unset ${env:...} sends no header
    }
    _opts.apply(req);
    _cap.watch(req);
    _client->submit(std::move(req), _opts.retry, _opts.limit_key, 0,
                    [this, chain = std::move(chain)](http::Response&& resp) mutable {
                      done(std::move(chain), std::move(resp));
                    });
  }

  // On the HTTP loop thread. Returns true when the chain goes on with another request.
  bool advance(Chain& c, http::Response&& resp) {
    if (!resp.ok()) {
      std::string reason = resp.failure();
      if (c.phase == Chain::follow) reason = c.current->id + ": " + reason;
      _output->finish(c.input, Outcome::dead_lettered, reason, resp.attempts, resp.status);
      return false;
    }
    if (c.phase == Chain::single) {
      c.current.reset();  // the same record as the input: drop it so use_count sees one owner
      RecordPtr r = std::move(c.input);
      if (r.use_count() > 1) r = r->clone();  // fanned out upstream: others see the original
      r->body = std::move(resp.body);
      _output->forward(std::move(r));
      return false;
    }
    // Only the pointer's field is read here, on the loop thread; the next node parses the body.
    std::string next;
    const JsonPointerScan& ptr = c.phase == Chain::first ? *_first : *_next;
    if (ptr.find_string(resp.body, next) == JsonPointerScan::Result::malformed) {
      _output->finish(c.input, Outcome::dead_lettered,
                      "malformed JSON while following " + c.current->id);
      return false;
    }
    if (c.phase == Chain::first) {
      if (next.empty()) {
        _output->finish(c.input, Outcome::dead_lettered,
                        "no value at " + _first->pointer() + " to start from");
        return false;
      }
      c.phase = Chain::follow;
    } else {
      c.current->body = std::move(resp.body);
      _output->emit(std::move(c.current));
      ++c.steps;
    }
    if (next.empty() || c.seen.count(next) || c.steps >= _follow_max) {
      // The input itself was a container: it ends here, its records go on.
      _output->finish(c.input, Outcome::filtered,
                      "followed into " + std::to_string(c.steps) + " records");
      return false;
    }
    c.current = step_record(c, next);
    return true;
  }

  void done(std::shared_ptr<Chain> chain, http::Response&& resp) {
    if (advance(*chain, std::move(resp))) {
      submit(std::move(chain));  // same slot: one request in flight per chain
      return;
    }
    _cap.done([this](std::shared_ptr<Chain>&& next) { submit(std::move(next)); });
    _output->release();
  }

  std::string _id;
  RecordTemplate _url, _body;
  std::string _method;
  std::vector<std::pair<std::string, RecordTemplate>> _headers;
  InflightCap<std::shared_ptr<Chain>> _cap;
  http::RequestOptions _opts;
  http::Client* _client = nullptr;
  bool _follow = false;
  std::optional<JsonPointerScan> _first, _next;
  int _follow_max = 100000;
};

}  // namespace

NodeTypeInfo fetch_http_info() {
  NodeTypeInfo info;
  info.type = "fetch.http";
  info.role = NodeRole::transform;
  info.io = true;
  info.description = "One HTTP request per record on the shared curl-multi loop (no thread per "
                     "request); the response "
                     "body goes to the next node. `concurrency` caps requests in flight, retries "
                     "included. Retries network "
                     "errors, 408 and 5xx with backoff; a 429 slows the rate limit and retries "
                     "without using an attempt; "
                     "other 4xx are dead-lettered with the server's message.";
  info.params = {
      required_param("url", ParamType::string,
                     "URL template: {id}, {doc_id}, {meta.NAME} (values URL-encoded; {+id} as is)"),
      with_choices(param("method", ParamType::string, "\"GET\"", "GET, POST, PUT or HEAD"),
                   {"GET", "POST", "PUT", "HEAD"}),
      param("headers", ParamType::object, "{}",
            "header name -> value template; empty ones (or from an unset ${env:...}) are not sent"),
      param("body", ParamType::string, "null", "request body template (POST/PUT)"),
      param("follow", ParamType::object, "{}",
            "enumerate: {\"first\": pointer to the first id (optional), \"next\": pointer to the "
            "next id, \"max\": N}; "
            "each response becomes a record with that id, until next is null"),
  };
  http::add_request_params(info.params, {.transfer_limits = true});
  info.default_concurrency = 32;
  // A host it does not know: start at 8, grow while round trips stay flat, back off on a 429, a
  // 503 or a rising round trip, and hold at most 32 (a browser opens 6 connections a host; HTTP/2
  // servers allow 100 streams). With `rpm` declared the rate paces it: up to 1024.
  info.adaptive_max = 32;
  info.adaptive_max_rpm = 1024;
  info.make_node = [](const NodeInit& init) { return std::make_unique<FetchHttp>(init); };
  info.cost = [](const Params&, const CostInput&) {
    NodeCost c;
    c.io = true;
    c.requests_per_doc = 1;
    return c;
  };
  return info;
}

}  // namespace sluice
