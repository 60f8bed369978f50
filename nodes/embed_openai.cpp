#include "nodes/embed_openai.hpp"

#include <cmath>

#include "engine/batcher.hpp"
#include "engine/http_client.hpp"
#include "engine/inflight_cap.hpp"
#include "engine/json.hpp"
#include "engine/json_value.hpp"

namespace sluice {

namespace {

using Batch = std::shared_ptr<std::vector<RecordPtr>>;

// Token estimate for pacing under tpm before the server counts them: ~4 characters a token.
uint64_t estimate_tokens(const std::string& text) { return (text.size() + 3) / 4; }

class OpenAIEmbed final : public Node {
 public:
  explicit OpenAIEmbed(const NodeInit& init)
      : _url(init.params.str("url")),
        _model(init.params.str("model")),
        _batcher(static_cast<size_t>(init.params.integer("batch")), static_cast<int>(init.params.integer("linger_ms"))),
        _cap(init.concurrency),
        _dimensions(init.params.has("dimensions") ? init.params.integer("dimensions") : 0),
        _rpm(init.params.number("rpm")),
        _tpm(init.params.number("tpm")),
        _price(init.params.number("price_per_mtok")) {
    if (!http::is_http_url(_url))
      throw ParamError("url", "url must be the full endpoint, e.g. https://api.openai.com/v1/embeddings");
    _batcher.set_max_bytes(static_cast<size_t>(init.params.integer("max_batch_tokens")) * 4);
    if (const json::Value* k = init.params.get("api_key"); k && k->kind == json::Kind::string && !k->unset_env && !k->str.empty())
      _auth = "Authorization: Bearer " + k->str;
    _key = init.params.has("limit_key") ? init.params.str("limit_key") : _url;
    _timeout_ms = init.params.integer("timeout_ms");
    _policy.max_attempts = static_cast<int>(init.params.integer("max_attempts"));
    if (_dimensions > 0) _spec = make_spec(_dimensions);
  }

  void open(NodeOutput& out) override {
    Node::open(out);
    _client = &out.http();
    if (_rpm > 0 || _tpm > 0) _client->set_rate_limit(_key, {_rpm, _tpm});
  }

  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    _output->hold();
    size_t bytes = in->text.size();
    auto full = _batcher.add(std::move(in), bytes);
    if (!full.empty()) send(std::move(full));
  }

  void flush(bool force) override {
    auto due = _batcher.take_due(force);
    if (!due.empty()) send(std::move(due));
  }

  bool has_pending() const override { return _batcher.pending(); }

  Load load() const override {
    auto [queued, in_flight] = _cap.load();
    return {queued, in_flight};
  }

 private:
  std::shared_ptr<const std::string> make_spec(int64_t dim) const {
    return std::make_shared<const std::string>("{\"type\":\"embed.openai\",\"model\":" + json::quoted(_model) +
                                               ",\"dim\":" + std::to_string(dim) + "}");
  }

  void send(std::vector<RecordPtr> records) {
    auto batch = std::make_shared<std::vector<RecordPtr>>(std::move(records));
    if (_cap.admit(batch)) submit(std::move(batch));
  }

  void submit(Batch batch) {
    http::Request req;
    req.method = "POST";
    req.url = _url;
    req.timeout_ms = _timeout_ms;
    req.headers.push_back("Content-Type: application/json");
    if (!_auth.empty()) req.headers.push_back(_auth);
    std::string body = "{\"model\":" + json::quoted(_model) + ",\"input\":[";
    uint64_t tokens = 0;
    for (size_t i = 0; i < batch->size(); ++i) {
      if (i) body += ',';
      json::append_quoted(body, (*batch)[i]->text);
      tokens += estimate_tokens((*batch)[i]->text);
    }
    body += ']';
    if (_dimensions > 0) body += ",\"dimensions\":" + std::to_string(_dimensions);
    body += '}';
    req.body = std::move(body);
    _client->submit(std::move(req), _policy, _key, static_cast<double>(tokens),
                    [this, batch](http::Response&& resp) { done(batch, std::move(resp)); });
  }

  // On the HTTP loop thread.
  void done(const Batch& batch, http::Response&& resp) {
    std::string error = resp.ok() ? apply(*batch, resp.body) : resp.failure();
    if (!error.empty())
      for (auto& r : *batch) _output->finish(r, Outcome::dead_lettered, error, resp.attempts, resp.status);
    size_t n = batch->size();
    batch->clear();
    if (auto next = _cap.done()) submit(std::move(*next));
    for (size_t i = 0; i < n; ++i) _output->release();
  }

  // Puts the vectors on the records and sends them on; returns an error instead if the
  // response does not fit the request.
  std::string apply(std::vector<RecordPtr>& batch, const std::string& body) {
    rapidjson::Document d;
    if (!parse_untrusted(d, body) || !d.IsObject() || !d.HasMember("data") || !d["data"].IsArray())
      return "malformed embeddings response (no data array)";
    const auto& data = d["data"];
    if (data.Size() != batch.size())
      return "embeddings response has " + std::to_string(data.Size()) + " vectors for " + std::to_string(batch.size()) + " inputs";
    std::vector<std::vector<float>> vectors(batch.size());
    for (const auto& item : data.GetArray()) {
      if (!item.IsObject() || !item.HasMember("embedding") || !item["embedding"].IsArray())
        return "malformed embeddings response (item without embedding)";
      size_t idx = item.HasMember("index") && item["index"].IsUint() ? item["index"].GetUint() : 0;
      if (idx >= batch.size() || !vectors[idx].empty()) return "malformed embeddings response (bad index)";
      for (const auto& x : item["embedding"].GetArray()) {
        if (!x.IsNumber()) return "malformed embeddings response (non-number in a vector)";
        float f = static_cast<float>(x.GetDouble());
        if (!std::isfinite(f)) return "malformed embeddings response (a value is not a finite float)";
        vectors[idx].push_back(f);
      }
      if (vectors[idx].empty()) return "malformed embeddings response (empty vector)";
    }
    for (const auto& v : vectors)
      if (v.size() != vectors[0].size()) return "malformed embeddings response (vectors of different sizes)";
    if (!_spec) _spec = make_spec(static_cast<int64_t>(vectors[0].size()));
    uint64_t tokens = 0;
    if (d.HasMember("usage") && d["usage"].IsObject() && d["usage"].HasMember("total_tokens") &&
        d["usage"]["total_tokens"].IsUint64())
      tokens = d["usage"]["total_tokens"].GetUint64();
    else
      for (const auto& r : batch) tokens += estimate_tokens(r->text);
    _output->add_usage(tokens, static_cast<double>(tokens) / 1e6 * _price);
    for (size_t i = 0; i < batch.size(); ++i) {
      RecordPtr r = std::move(batch[i]);
      if (r.use_count() > 1) r = r->clone();
      r->vector = std::move(vectors[i]);
      r->embedder = _spec;
      _output->forward(std::move(r));
    }
    return {};
  }

  std::string _url, _model, _auth, _key;
  Batcher _batcher;
  InflightCap<Batch> _cap;
  int64_t _dimensions;
  double _rpm, _tpm, _price;
  int64_t _timeout_ms = 60000;
  http::RetryPolicy _policy;
  http::Client* _client = nullptr;
  std::shared_ptr<const std::string> _spec;  // written once on the HTTP loop thread
};

}  // namespace

NodeTypeInfo embed_openai_info() {
  NodeTypeInfo info;
  info.type = "embed.openai";
  info.role = NodeRole::embedder;
  info.io = true;
  info.description =
      "Embeddings from an OpenAI-compatible /v1/embeddings endpoint (OpenAI, TEI, vLLM, Ollama); input is always "
      "sent as an array. Batches by count and estimated tokens, flushes a partial batch after linger_ms, paces "
      "rpm and tpm, retries like fetch.http; tokens and cost go to the run report. `concurrency` caps batches "
      "in flight.";
  info.params = {
      required_param("url", ParamType::string, "full endpoint, e.g. https://api.openai.com/v1/embeddings"),
      required_param("model", ParamType::string, "model name, e.g. text-embedding-3-small"),
      param("api_key", ParamType::string, "null", "bearer key, e.g. \"${env:OPENAI_API_KEY}\" (not sent when unset)"),
      with_min(param("batch", ParamType::integer, "64", "inputs per request"), 1),
      with_min(param("max_batch_tokens", ParamType::integer, "8000", "estimated tokens per request (4 chars a token)"), 1),
      with_min(param("linger_ms", ParamType::integer, "50", "send a partial batch after this long"), 0),
      with_min(param("dimensions", ParamType::integer, "null", "ask for this many dimensions (models that support it)"), 1),
      job_total(with_min(param("rpm", ParamType::number, "0", "requests per minute, whole job (0 = none)"), 0)),
      job_total(with_min(param("tpm", ParamType::number, "0", "tokens per minute, whole job (0 = none)"), 0)),
      param("limit_key", ParamType::string, "null", "rate-limit name shared by nodes (default: the url)"),
      with_min(param("price_per_mtok", ParamType::number, "0", "USD per million tokens, for the report"), 0),
      with_min(param("timeout_ms", ParamType::integer, "60000", "time for one attempt"), 1),
      with_min(param("max_attempts", ParamType::integer, "8", "attempts for network errors, 408 and 5xx"), 1),
  };
  info.default_concurrency = 4;
  info.make_node = [](const NodeInit& init) { return std::make_unique<OpenAIEmbed>(init); };
  return info;
}

}  // namespace sluice
