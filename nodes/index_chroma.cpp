#include "nodes/index_chroma.hpp"

#include <algorithm>
#include <mutex>

#include "engine/graph/batcher.hpp"
#include "engine/http/client.hpp"
#include "engine/http/inflight_cap.hpp"
#include "engine/http/request_options.hpp"
#include "engine/json/json.hpp"
#include "engine/json/value.hpp"
#include "nodes/replaced_docs.hpp"

namespace sluice {

namespace {

using BatchPtr = std::shared_ptr<std::vector<RecordPtr>>;

// A Chroma name: 3-512 characters of [a-zA-Z0-9._-], alphanumeric at both ends (the server's
// own rule for collections; tenants and databases are kept to the same, as they go in paths).
bool valid_name(const std::string& s) {
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (s.size() < 3 || s.size() > 512 || !alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

// A collection id as the server gives it: a UUID (it goes into every later URL).
bool valid_uuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// A record's metadata as Chroma takes it: scalar values only, so an object or array becomes its
// JSON text; strings are written anew (invalid UTF-8 replaced: one bad value must not make the
// whole batch's body invalid JSON); keys Chroma reserves (a leading '#' or '$') get a leading
// '_', and an empty key is left out.
void append_metadata(std::string& out, const Record& r, const std::string& run) {
  out += "{\"doc_id\":";
  json::append_quoted(out, r.doc_id);
  out += ",\"seq\":" + std::to_string(r.seq);
  if (!run.empty()) {
    out += ",\"sluice_run\":";
    json::append_quoted(out, run);
  }
  for (const auto& [key, value] : r.meta.items()) {
    if (key.empty() || key == "doc_id" || key == "seq" || key == "sluice_run" || value.empty())
      continue;
    out += ',';
    json::append_quoted(out, key.front() == '#' || key.front() == '$' ? "_" + key : key);
    out += ':';
    if (value.front() == '"') {
      rapidjson::Document d;
      d.Parse(value.data(), value.size());
      if (!d.HasParseError() && d.IsString())
        json::append_quoted(out, std::string_view(d.GetString(), d.GetStringLength()));
      else json::append_quoted(out, value);
    } else if (value.front() == '{' || value.front() == '[') {
      json::append_quoted(out, value);
    } else {
      out += value;
    }
  }
  out += '}';
}

class ChromaIndex final : public Node {
 public:
  explicit ChromaIndex(const NodeInit& init)
      : _url(init.params.str("url")), _tenant(init.params.str("tenant")),
        _database(init.params.str("database")), _collection(init.params.str("collection")),
        _distance(init.params.str("distance")),
        _batch(static_cast<size_t>(init.params.integer("batch"))),
        _batcher(_batch, static_cast<int>(init.params.integer("linger_ms"))),
        _cap(init.concurrency, init.adaptive), _create(init.params.boolean("create_collection")),
        _opts(http::read_request_options(init.params, init.id)),
        _replace(init.params.boolean("replace_docs")) {
    while (!_url.empty() && _url.back() == '/') _url.pop_back();
    if (!http::is_http_url(_url))
      throw ParamError("url", "url must be the server's base URL, e.g. http://localhost:8000");
    for (const auto& [name, value] :
         {std::pair{"collection", &_collection}, {"tenant", &_tenant}, {"database", &_database}})
      if (!valid_name(*value))
        throw ParamError(name, std::string(name) +
                                   " must be 3-512 characters of a-z, A-Z, 0-9, '.', '_' and "
                                   "'-', starting and ending with a letter or digit");
    _batcher.set_max_bytes(static_cast<size_t>(init.params.integer("max_batch_bytes")));
    if (const json::Value* k = init.params.get("api_key");
        k && k->kind == json::Kind::string && !k->unset_env && !k->str.empty())
      _auth = http::static_header("api_key", "X-Chroma-Token: " + k->str);
    if (_replace) _run = _replaced.mark();
  }

  // On the main thread, before records flow: the server's batch limit, then the collection.
  void open(NodeOutput& out) override {
    Node::open(out);
    _client = &out.http();
    _opts.set_rate_limit(*_client);
    http::Response pre = call("GET", "/api/v2/pre-flight-checks", "");
    if (!pre.ok())
      throw std::runtime_error("Chroma at " + _url + " did not answer its pre-flight check: " +
                               pre.failure() + " (is the server running, and is url its base?)");
    rapidjson::Document d;
    if (parse_untrusted(d, pre.body) && d.IsObject() && d.HasMember("max_batch_size") &&
        d["max_batch_size"].IsUint64() && d["max_batch_size"].GetUint64() > 0 &&
        d["max_batch_size"].GetUint64() < _batch) {
      _batch = static_cast<size_t>(d["max_batch_size"].GetUint64());
      _batcher.set_max_items(_batch);
    }
    std::string base = "/api/v2/tenants/" + _tenant + "/databases/" + _database + "/collections";
    http::Response coll;
    if (_create) {
      std::string body = "{\"name\":";
      json::append_quoted(body, _collection);
      body += ",\"get_or_create\":true,\"metadata\":{\"hnsw:space\":";
      json::append_quoted(body, _distance);
      body += "}}";
      coll = call("POST", base, std::move(body));
    } else {
      coll = call("GET", base + "/" + _collection, "");
    }
    if (!coll.ok())
      throw std::runtime_error(
          std::string(_create ? "creating" : "opening") + " Chroma collection \"" + _collection +
          "\" (tenant \"" + _tenant + "\", database \"" + _database +
          "\") failed: " + coll.failure() +
          (_create ? "" : " (\"create_collection\": true creates it when it is missing)"));
    rapidjson::Document c;
    if (!parse_untrusted(c, coll.body) || !c.IsObject() || !c.HasMember("id") ||
        !c["id"].IsString() || !valid_uuid(c["id"].GetString()))
      throw std::runtime_error("Chroma's answer for collection \"" + _collection +
                               "\" has no collection id: " + coll.body.substr(0, 200));
    _collection_path = base + "/" + c["id"].GetString();
    // An empty collection has no chunks an earlier run wrote: nothing to replace after the run.
    if (_replace) {
      http::Response n = call("GET", _collection_path + "/count", "");
      _was_empty = n.ok() && n.body == "0";
    }
  }

  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    if (in->vector.empty()) {
      // Chroma computes no embeddings for a REST client: every record needs its vector.
      _output->finish(in, Outcome::dead_lettered,
                      "index.chroma needs a vector: put an embed.* node before it");
      return;
    }
    size_t bytes = in->text.size() + in->vector.size() * 12 + 256;
    auto full = _batcher.add(std::move(in), bytes);
    if (!full.empty()) send(std::make_shared<std::vector<RecordPtr>>(std::move(full.items)));
  }

  void flush(bool force) override {
    auto due = _batcher.take_due(force);
    if (!due.empty()) send(std::make_shared<std::vector<RecordPtr>>(std::move(due.items)));
  }

  bool has_pending() const override { return _batcher.pending(); }

  // After a run that settled: the chunks of this run's documents that an earlier run wrote and
  // this one did not (fewer chunks, other ids) go, by a delete on doc_id and the run mark. The
  // run's HTTP client has stopped: this takes the process's next one.
  void commit() override {
    if (!_replace || _was_empty) return;
    auto groups = _replaced.to_clean();
    if (groups.empty()) return;
    _client = &_output->http();
    _opts.set_rate_limit(*_client);
    std::vector<http::Request> deletes;
    for (const auto& group : groups) {
      std::string ids;
      for (const auto& doc : group) {
        if (!ids.empty()) ids += ',';
        json::append_quoted(ids, doc);
      }
      std::string body = R"({"where":{"$and":[{"doc_id":{"$in":[)" + ids +
                         R"(]}},{"sluice_run":{"$ne":")" + _run + R"("}}]}})";
      deletes.push_back(request("POST", _collection_path + "/delete", std::move(body)));
    }
    std::string error;
    for (const auto& r : _opts.send_and_wait(*_client, std::move(deletes))) {
      if (!r.ok() && error.empty())
        error = "removing the chunks its documents no longer have from Chroma collection \"" +
                _collection + "\" failed: " + r.failure() +
                " (\"replace_docs\": false leaves them and sends no delete)";
    }
    if (!error.empty()) throw std::runtime_error(error);
  }

  Load load() const override {
    auto f = _cap.load();
    return {f.queued, f.in_flight, f.limit, f.peak};
  }

 private:
  http::Request request(const std::string& method, const std::string& path, std::string body) {
    http::Request req;
    req.method = method;
    req.url = _url + path;
    req.body = std::move(body);
    _opts.apply(req);
    if (method != "GET") req.headers.emplace_back("Content-Type: application/json");
    if (!_auth.empty()) req.headers.push_back(_auth);
    return req;
  }

  // A request and its answer, waited for (open() only: before records flow).
  http::Response call(const std::string& method, const std::string& path, std::string body) {
    std::vector<http::Request> one;
    one.push_back(request(method, path, std::move(body)));
    return _opts.send_and_wait(*_client, std::move(one)).front();
  }

  // A sent batch holds the graph until its records settle.
  void send(BatchPtr batch) {
    for (size_t i = 0; i < batch->size(); ++i) _output->hold();
    if (_cap.admit(batch)) submit(batch);
  }

  void submit(const BatchPtr& batch) {
    std::string ids = "[", embeddings = "[", documents = "[", metadatas = "[";
    for (const auto& r : *batch) {
      if (ids.size() > 1) {
        ids += ',';
        embeddings += ',';
        documents += ',';
        metadatas += ',';
      }
      json::append_quoted(ids, r->id);
      json::append_floats(embeddings, r->vector);
      json::append_quoted(documents, r->text);
      append_metadata(metadatas, *r, _run);
    }
    std::string body = "{\"ids\":" + ids + "],\"embeddings\":" + embeddings +
                       "],\"documents\":" + documents + "],\"metadatas\":" + metadatas + "]}";
    auto req = request("POST", _collection_path + "/upsert", std::move(body));
    _cap.watch(req);
    _client->submit(std::move(req), _opts.retry, _opts.limit_key, 0,
                    [this, batch](http::Response&& resp) {
                      _output->offload([this, batch, resp = std::move(resp)]() mutable {
                        done(batch, std::move(resp));
                      });
                    });
  }

  // On a TBB worker. Chroma takes a batch whole or refuses it whole: a batch refused for what
  // it holds (a 4xx other than 408 and 429: a wrong dimension, a bad value) is halved and each
  // half sent again, down to the records at fault, which are dead-lettered with the reason.
  void done(const BatchPtr& batch, http::Response&& resp) {
    const bool refused = !resp.ok() && resp.status >= 400 && resp.status < 500 &&
                         resp.status != 408 && resp.status != 429;
    if (refused && batch->size() > 1) {
      const auto mid = batch->begin() + static_cast<std::ptrdiff_t>(batch->size() / 2);
      auto first = std::make_shared<std::vector<RecordPtr>>(batch->begin(), mid);
      auto second = std::make_shared<std::vector<RecordPtr>>(mid, batch->end());
      submit(first);  // in this batch's slot; the second takes a slot of its own
      if (_cap.admit(second)) submit(second);
      return;
    }
    if (resp.ok()) {
      if (_replace && !_was_empty)
        for (const auto& r : *batch) _replaced.written(r->doc_id);
      for (auto& r : *batch) _output->finish(r, Outcome::indexed);
    } else {
      std::string why = resp.failure();
      for (const auto& r : *batch) _replaced.refused(r->doc_id);
      for (auto& r : *batch)
        _output->finish(r, Outcome::dead_lettered, why, resp.attempts, resp.status);
    }
    _cap.done([this](BatchPtr&& next) { submit(next); });
    for (size_t i = 0; i < batch->size(); ++i) _output->release();
  }

  std::string _url, _tenant, _database, _collection, _distance, _auth;
  size_t _batch;
  Batcher _batcher;
  InflightCap<BatchPtr> _cap;
  bool _create;
  http::RequestOptions _opts;
  bool _replace;
  std::string _run;  // this process's run mark, in every chunk it writes (replace_docs)
  bool _was_empty = false;
  http::Client* _client = nullptr;
  std::string _collection_path;  // /api/v2/tenants/T/databases/D/collections/ID
  ReplacedDocs _replaced;
};

}  // namespace

NodeTypeInfo index_chroma_info() {
  NodeTypeInfo info;
  info.type = "index.chroma";
  info.role = NodeRole::sink;
  info.io = true;
  info.description =
      "A Chroma collection through its v2 REST API: batches of upserts (ids = chunk ids, with "
      "embeddings, documents and metadatas: doc_id, seq and the record's meta, objects and arrays "
      "as JSON text), within the server's max_batch_size. A refused batch is dead-lettered with "
      "the server's reason. After a run that settled, the chunks an earlier run left for the same "
      "documents are deleted (replace_docs). Records need a vector.";
  info.params = {
      required_param("url", ParamType::string, "server base URL, e.g. http://localhost:8000"),
      required_param("collection", ParamType::string,
                     "collection name (3-512 of a-z A-Z 0-9 . _ -)"),
      param("tenant", ParamType::string, "\"default_tenant\"", "tenant"),
      param("database", ParamType::string, "\"default_database\"", "database"),
      param("create_collection", ParamType::boolean, "true",
            "create the collection when it is missing (get_or_create); false: it must exist"),
      with_choices(param("distance", ParamType::string, "\"cosine\"",
                         "distance of a collection it creates (hnsw:space)"),
                   {"cosine", "l2", "ip"}),
      with_min(param("batch", ParamType::integer, "500",
                     "records per upsert (at most the server's max_batch_size)"),
               1),
      with_min(param("max_batch_bytes", ParamType::integer, "8000000",
                     "approximate bytes per upsert request"),
               1),
      with_min(
          param("linger_ms", ParamType::integer, "200", "send a partial batch after this long"), 0),
      param("api_key", ParamType::string, "null",
            "sent as X-Chroma-Token (e.g. \"${env:CHROMA_API_KEY}\")"),
      param("replace_docs", ParamType::boolean, "true",
            "mark each chunk with its run (sluice_run) and, after a run that settled, delete the "
            "chunks of its documents that an earlier run wrote and this one did not; false: plain "
            "upserts, no delete"),
  };
  http::add_request_params(info.params, {.unit = "upsert request"});
  info.default_concurrency = 2;
  info.adaptive_max = 16;
  info.make_node = [](const NodeInit& init) { return std::make_unique<ChromaIndex>(init); };
  info.cost = batched_sink_cost;
  return info;
}

}  // namespace sluice
