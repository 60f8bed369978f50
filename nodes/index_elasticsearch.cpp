#include "nodes/index_elasticsearch.hpp"

#include <algorithm>

#include <cmath>
#include <mutex>
#include <random>

#include "engine/graph/batcher.hpp"
#include "engine/http/client.hpp"
#include "engine/http/inflight_cap.hpp"
#include "engine/http/request_options.hpp"
#include "engine/json/json.hpp"
#include "engine/json/value.hpp"
#include "nodes/replaced_docs.hpp"

namespace sluice {

namespace {

struct Bulk {
  std::vector<RecordPtr> records;
  int round = 0;  // how many times these items were sent already
};
using BulkPtr = std::shared_ptr<Bulk>;

class ElasticIndex final : public Node {
 public:
  explicit ElasticIndex(const NodeInit& init)
      : _url(init.params.str("url")), _index(init.params.str("index")),
        _batcher(static_cast<size_t>(init.params.integer("batch")),
                 static_cast<int>(init.params.integer("linger_ms"))),
        _cap(init.concurrency, init.adaptive), _create_index(init.params.boolean("create_index")),
        _opts(http::read_request_options(init.params, init.id)),
        _replace(init.params.boolean("replace_docs")) {
    while (!_url.empty() && _url.back() == '/') _url.pop_back();
    if (!http::is_http_url(_url))
      throw ParamError("url", "url must be the cluster's base URL, e.g. http://localhost:9200");
    if (_index.empty() || _index.find_first_of("/ ,\"*?<>|\\#") != std::string::npos)
      throw ParamError("index", "index must be a valid index name");
    _batcher.set_max_bytes(static_cast<size_t>(init.params.integer("max_batch_bytes")));
    auto usable = [](const json::Value* v) {
      return v && v->kind == json::Kind::string && !v->unset_env && !v->str.empty();
    };
    if (usable(init.params.get("api_key")))
      _auth = http::static_header("api_key", "Authorization: ApiKey " + init.params.str("api_key"));
    else if (usable(init.params.get("username")))
      _auth = "Authorization: Basic " +
              base64(init.params.str("username") + ":" + init.params.str("password"));
  }

  void open(NodeOutput& out) override {
    Node::open(out);
    _client = &out.http();
    _opts.set_rate_limit(*_client);
    if (_create_index) create_index();
  }

  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    size_t bytes = in->text.size() + in->vector.size() * 10 + 128;
    auto full = _batcher.add(std::move(in), bytes);
    if (!full.empty()) send(std::make_shared<Bulk>(Bulk{std::move(full.items), 0}));
  }

  void flush(bool force) override {
    auto due = _batcher.take_due(force);
    if (!due.empty()) send(std::make_shared<Bulk>(Bulk{std::move(due.items), 0}));
  }

  bool has_pending() const override { return _batcher.pending(); }

  // After a run that settled: the chunks of the documents this process wrote that an earlier run
  // wrote and this one did not (fewer chunks, other ids) go, by _delete_by_query on doc_id and
  // the run mark. The HTTP client of the run has stopped: this takes the process's next one.
  void commit() override {
    if (!_replace) return;
    auto groups = _replaced.to_clean();
    if (groups.empty()) return;
    http::Client& client = _output->http();
    _opts.set_rate_limit(client);
    // Every group at once (each is a round trip of its own), then their answers.
    std::vector<http::Request> deletes;
    for (const auto& group : groups) {
      std::string ids;
      for (const auto& doc : group) {
        if (!ids.empty()) ids += ',';
        json::append_quoted(ids, doc);
      }
      std::string run;
      json::append_quoted(run, _replaced.mark());
      // doc_id as a keyword field or as text with a .keyword sub-field (dynamic mapping).
      std::string body = R"({"query":{"bool":{"filter":[{"bool":{"should":[{"terms":{"doc_id":[)" +
                         ids + R"(]}},{"terms":{"doc_id.keyword":[)" + ids +
                         R"(]}}],"minimum_should_match":1}}],"must_not":[{"term":{"sluice_run":)" +
                         run + R"(}},{"term":{"sluice_run.keyword":)" + run + "}}]}}}";
      deletes.push_back(request("POST", _url + "/" + _index + "/_delete_by_query?conflicts=proceed",
                                std::move(body), "application/json"));
    }
    std::string error;  // the first failure, once every answer is in
    for (const auto& r : _opts.send_and_wait(client, std::move(deletes))) {
      if (!r.ok() && error.empty())
        error = "removing the chunks its documents no longer have from \"" + _index +
                "\" failed: " + r.failure() + " " + r.body.substr(0, 200) +
                " (\"replace_docs\": false leaves them and sends no delete)";
    }
    if (!error.empty()) throw std::runtime_error(error);
  }

  Load load() const override {
    auto f = _cap.load();
    return {f.queued, f.in_flight, f.limit, f.peak};
  }

 private:
  http::Request request(const std::string& method, const std::string& url, std::string body,
                        const char* type) {
    http::Request req;
    req.method = method;
    req.url = url;
    req.body = std::move(body);
    _opts.apply(req);
    req.headers.push_back(std::string("Content-Type: ") + type);
    if (!_auth.empty()) req.headers.push_back(_auth);
    return req;
  }

  // Optional: many clusters forbid ingest keys to create indices, so only when asked.
  void create_index() {
    std::vector<http::Request> put;
    put.push_back(request("PUT", _url + "/" + _index, "{}", "application/json"));
    // open() runs on the main thread before records flow.
    const http::Response r = _opts.send_and_wait(*_client, std::move(put)).front();
    if (!r.ok() && r.body.find("resource_already_exists_exception") == std::string::npos)
      throw std::runtime_error("creating index \"" + _index + "\" failed: " + r.error + " " +
                               r.body.substr(0, 200));
  }

  // As in the embedders: a sent batch holds the graph until its items settle; a partial batch
  // does not, so the runner flushes it as soon as nothing else can add to it.
  void send(BulkPtr bulk) {
    for (size_t i = 0; i < bulk->records.size(); ++i) _output->hold();
    if (_cap.admit(bulk)) submit(bulk);
  }

  void submit(const BulkPtr& bulk) {
    std::string body;
    for (const auto& r : bulk->records) {
      body += "{\"index\":{\"_index\":";
      json::append_quoted(body, _index);
      body += ",\"_id\":";
      json::append_quoted(body, r->id);
      body += "}}\n{\"doc_id\":";
      json::append_quoted(body, r->doc_id);
      if (_replace) {
        body += ",\"sluice_run\":\"";
        body += _replaced.mark();
        body += '"';
      }
      body += ",\"seq\":" + std::to_string(r->seq) + ",\"text\":";
      json::append_quoted(body, r->text);
      body += ",\"meta\":" + r->meta.to_json();
      if (!r->vector.empty()) {
        body += ",\"vector\":";
        json::append_floats(body, r->vector);
      }
      body += "}\n";
    }
    auto req = request("POST", _url + "/_bulk", std::move(body), "application/x-ndjson");
    if (bulk->round > 0) {
      // Items a 200 refused (429/5xx): back off as the client does before a retry.
      std::lock_guard lock(_rng_mu);
      req.delay_s = http::backoff_delay_s(_opts.retry, bulk->round, _rng);
    }
    _cap.watch(req);
    // Reading the answer (an item per record) and building the next batch's body are CPU work
    // the HTTP loop should not do: a TBB worker does them.
    _client->submit(std::move(req), _opts.retry, _opts.limit_key, 0,
                    [this, bulk](http::Response&& resp) {
                      _output->offload([this, bulk, resp = std::move(resp)]() mutable {
                        done(bulk, std::move(resp));
                      });
                    });
  }

  // On a TBB worker, possibly beside another batch's.
  void done(const BulkPtr& bulk, http::Response&& resp) {
    // A refused chunk's document keeps what an earlier run wrote: no delete may take it.
    auto dead_letter = [this](const RecordPtr& r, std::string_view why, int attempts, long status) {
      _replaced.refused(r->doc_id);
      _output->finish(r, Outcome::dead_lettered, why, attempts, status);
    };
    size_t settled = 0;
    std::vector<RecordPtr> again;
    if (!resp.ok()) {
      std::string why = resp.failure();
      for (auto& r : bulk->records) dead_letter(r, why, resp.attempts, resp.status);
      settled = bulk->records.size();
    } else {
      rapidjson::Document d;
      const bool shaped = parse_untrusted(d, resp.body) && d.IsObject() && d.HasMember("items") &&
                          d["items"].IsArray() && d["items"].Size() == bulk->records.size();
      if (!shaped) {
        for (auto& r : bulk->records) dead_letter(r, "malformed _bulk response", 1, resp.status);
        settled = bulk->records.size();
      } else {
        const auto& items = d["items"];
        for (size_t i = 0; i < bulk->records.size(); ++i) {
          const rapidjson::Value& item = items[static_cast<rapidjson::SizeType>(i)];
          const rapidjson::Value* action =
              item.IsObject() && item.MemberCount() == 1 ? &item.MemberBegin()->value : nullptr;
          int status = action && action->IsObject() && action->HasMember("status") &&
                               (*action)["status"].IsInt()
                           ? (*action)["status"].GetInt()
                           : 0;
          RecordPtr& r = bulk->records[i];
          if (status >= 200 && status < 300) {
            if (_replace && status == 200) {
              // Updated, not created (201): the document was written before, and may have
              // chunks this run does not write again. A new document (every item 201) needs
              // no delete, so a first run into an index sends none.
              _replaced.written(r->doc_id);
            }
            _output->finish(r, Outcome::indexed);
            ++settled;
          } else if ((status == 429 || status >= 500) &&
                     bulk->round + 1 < _opts.retry.max_attempts) {
            again.push_back(std::move(r));
          } else {
            std::string why = "bulk item status " + std::to_string(status);
            if (action && action->HasMember("error"))
              why += ": " + json_text((*action)["error"]).substr(0, 300);
            dead_letter(r, why, bulk->round + 1, status);
            ++settled;
          }
        }
      }
    }
    if (!again.empty()) _cap.observe(-1, true);  // items refused with 429/5xx push back too
    if (!again.empty()) {
      // Only the refused items go again, in the same slot: their chunk ids make it an upsert.
      submit(std::make_shared<Bulk>(Bulk{std::move(again), bulk->round + 1}));
    } else {
      _cap.done([this](BulkPtr&& next) { submit(next); });
    }
    for (size_t i = 0; i < settled; ++i) _output->release();
  }

  std::string _url, _index, _auth;
  Batcher _batcher;
  InflightCap<BulkPtr> _cap;
  bool _create_index;
  http::RequestOptions _opts;
  http::Client* _client = nullptr;
  bool _replace;
  ReplacedDocs _replaced;  // its mark is in every document it writes
  std::mutex _rng_mu;
  std::mt19937_64 _rng{7};  // under _rng_mu
};

}  // namespace

std::string base64(std::string_view in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

NodeTypeInfo index_elasticsearch_info() {
  NodeTypeInfo info;
  info.type = "index.elasticsearch";
  info.role = NodeRole::sink;
  info.io = true;
  info.description =
      "Elasticsearch or OpenSearch via POST {url}/_bulk: an index action per record with _id = "
      "chunk id (an "
      "upsert). Items a 200 answers with 429 or 5xx are retried alone with backoff; other failed "
      "items are "
      "dead-lettered. After a run that settled, one _delete_by_query per 500 documents removes "
      "their chunks an earlier run left (replace_docs). Sends nothing else (no health check, no "
      "index creation unless create_index).";
  info.params = {
      required_param("url", ParamType::string, "cluster base URL, e.g. http://localhost:9200"),
      required_param("index", ParamType::string, "index name (named in every action)"),
      with_min(param("batch", ParamType::integer, "500", "records per _bulk request"), 1),
      with_min(param("max_batch_bytes", ParamType::integer, "5000000",
                     "approximate bytes per _bulk request"),
               1),
      with_min(
          param("linger_ms", ParamType::integer, "200", "send a partial batch after this long"), 0),
      param("api_key", ParamType::string, "null",
            "sent as Authorization: ApiKey (e.g. \"${env:ES_API_KEY}\")"),
      param("username", ParamType::string, "null", "basic auth user"),
      param("password", ParamType::string, "null",
            "basic auth password (e.g. \"${env:ES_PASSWORD}\")"),
      param("create_index", ParamType::boolean, "false",
            "PUT the index first (ignored if it exists)"),
      param("replace_docs", ParamType::boolean, "true",
            "mark each document with its run (sluice_run) and, after a run that settled, delete "
            "the chunks of its documents that an earlier run wrote and this one did not "
            "(_delete_by_query); false: plain upserts, no delete"),
  };
  http::add_request_params(info.params, {.unit = "_bulk request", .legacy_max_attempts = true});
  info.default_concurrency = 2;
  info.adaptive_max = 32;  // bulk requests are heavy for the cluster: fewer, larger
  info.make_node = [](const NodeInit& init) { return std::make_unique<ElasticIndex>(init); };
  info.cost = batched_sink_cost;
  return info;
}

}  // namespace sluice
