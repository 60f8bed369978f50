#include "nodes/embed_http.hpp"

#include <cmath>
#include <future>
#include <mutex>

#include "engine/graph/batcher.hpp"
#include "engine/http/client.hpp"
#include "engine/http/inflight_cap.hpp"
#include "engine/http/request_options.hpp"
#include "engine/json/json.hpp"
#include "engine/json/value.hpp"
#include "engine/text/tokenizer.hpp"

namespace sluice {

namespace {

// Embedders given no `concurrency`: adaptive up to this many requests in flight per process
// (within their rpm and tpm).
constexpr int kEmbedAdaptiveMax = 64;

// A request's inputs and their tokens (counted in the model's encoding, or estimated).
struct EmbedBatch {
  std::vector<RecordPtr> records;
  uint64_t tokens = 0;
};
using Batch = std::shared_ptr<EmbedBatch>;

// Token estimate where the model's encoding is unknown: ~4 characters a token.
uint64_t estimate_tokens(const std::string& text) { return (text.size() + 3) / 4; }

// What both HTTP embedders share: batching by count and tokens, the cap on batches in
// flight, rate limits, retries, and checking a response's vectors before they go on the records.
// A subclass gives the endpoint and how its key is sent, and says how a batch becomes a request
// body and where the vectors are in the answer.
class HttpEmbedder : public Node {
 public:
  // `url`: the endpoint, already checked; `auth_prefix`: the header the key follows, e.g.
  // "Authorization: Bearer ".
  HttpEmbedder(const NodeInit& init, std::string url, const char* auth_prefix)
      : _model(init.params.str("model")),
        _dimensions(init.params.has("dimensions") ? init.params.integer("dimensions") : 0),
        _batcher(static_cast<size_t>(init.params.integer("batch")),
                 static_cast<int>(init.params.integer("linger_ms"))),
        _cap(init.concurrency, init.adaptive),
        _opts(http::read_request_options(init.params, init.id)),
        _price(init.params.number("price_per_mtok")) {
    // Tokens counted as the model counts them where its encoding is known (named, or an OpenAI
    // model's); estimated otherwise, and where the ranks are not installed (open() says so).
    const std::string enc = init.params.str("encoding");
    const std::string use = enc == "auto"       ? text::Tokenizer::encoding_of_model(_model)
                            : enc == "estimate" ? std::string()
                                                : enc;
    if (!use.empty()) {
      try {
        _tok = text::Tokenizer::named(use);
      } catch (const std::runtime_error& e) {
        if (enc != "auto") throw ParamError("encoding", e.what());
        _tok_missing = use;
      }
    }
    _batcher.set_max_bytes(static_cast<size_t>(init.params.integer("max_batch_tokens")) *
                           (_tok ? 1 : 4));
    _id = init.id;
    if (const json::Value* k = init.params.get("api_key");
        k && k->kind == json::Kind::string && !k->unset_env && !k->str.empty())
      _auth = http::static_header("api_key", auth_prefix + k->str);
    _url = std::move(url);
  }

  void open(NodeOutput& out) override {
    Node::open(out);
    _client = &out.http();
    _opts.set_rate_limit(*_client);
    if (!_tok_missing.empty())
      out.warn("node \"" + _id + "\": model " + _model + " counts tokens in " + _tok_missing +
               ", whose ranks are not installed (scripts/setup installs them): batches and tpm "
               "use an estimate of 4 characters a token");
  }

  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    const size_t units = _tok ? _tok->count(in->text) : in->text.size();
    auto full = _batcher.add(std::move(in), units);
    if (!full.empty()) send(std::move(full));
  }

  void flush(bool force) override {
    auto due = _batcher.take_due(force);
    if (!due.empty()) send(std::move(due));
  }

  bool has_pending() const override { return _batcher.pending(); }

  Load load() const override {
    auto f = _cap.load();
    return {f.queued, f.in_flight, f.limit, f.peak};
  }

  // One text's vector now, through `client` (see embed_query_http).
  std::vector<float> embed_now(const std::string& text, http::Client& client) {
    auto r = std::make_shared<Record>();
    r->text = text;
    http::Request req = request({r});
    std::promise<http::Response> done;
    auto answer = done.get_future();
    client.submit(std::move(req), _opts.retry, "", 0,
                  [&done](http::Response&& resp) { done.set_value(std::move(resp)); });
    http::Response resp = answer.get();
    if (!resp.ok()) throw std::runtime_error(std::string(type()) + ": " + resp.failure());
    rapidjson::Document d;
    if (!parse_untrusted(d, resp.body) || !d.IsObject())
      throw std::runtime_error(std::string(type()) +
                               ": malformed embeddings response (not a JSON object)");
    std::vector<std::vector<float>> vecs(1);
    uint64_t tokens = 0;
    if (std::string err = vectors(d, 1, vecs, tokens); !err.empty())
      throw std::runtime_error(std::string(type()) + ": " + err);
    return std::move(vecs[0]);
  }

 protected:
  // The request body for `batch`.
  virtual std::string body(const std::vector<RecordPtr>& batch) const = 0;
  // The vectors in a parsed response, one per input in order, or an error. `tokens` is left 0
  // where the response does not count them.
  virtual std::string vectors(const rapidjson::Document& d, size_t inputs,
                              std::vector<std::vector<float>>& out, uint64_t& tokens) const = 0;
  virtual const char* type() const = 0;

  // Appends one JSON array of numbers to `out`; an error for anything but finite floats.
  static std::string read_vector(const rapidjson::Value& arr, std::vector<float>& out) {
    if (!arr.IsArray()) return "malformed embeddings response (a vector is not an array)";
    for (const auto& x : arr.GetArray()) {
      if (!x.IsNumber()) return "malformed embeddings response (non-number in a vector)";
      float f = static_cast<float>(x.GetDouble());
      if (!std::isfinite(f)) return "malformed embeddings response (a value is not a finite float)";
      out.push_back(f);
    }
    if (out.empty()) return "malformed embeddings response (empty vector)";
    return {};
  }

  std::string _model;
  int64_t _dimensions;

 private:
  std::shared_ptr<const std::string> make_spec(int64_t dim) const {
    std::string spec = "{\"type\":\"";
    spec += type();
    spec += "\",\"model\":" + json::quoted(_model) + ",\"dim\":" + std::to_string(dim) + "}";
    return std::make_shared<const std::string>(std::move(spec));
  }

  // A batch holds the graph from here until its records are released in done(). A partial batch
  // does not: a graph idle but for partial batches is how the runner sees the end of input (or
  // a full in-flight limit) and flushes them at once instead of after linger_ms.
  void send(Batcher::Batch&& b) {
    for (size_t i = 0; i < b.items.size(); ++i) _output->hold();
    auto batch = std::make_shared<EmbedBatch>();
    batch->records = std::move(b.items);
    if (_tok) {
      batch->tokens = b.bytes;
    } else {
      for (const auto& r : batch->records) batch->tokens += estimate_tokens(r->text);
    }
    if (_cap.admit(batch)) submit(batch);
  }

  http::Request request(const std::vector<RecordPtr>& records) const {
    http::Request req;
    req.method = "POST";
    req.url = _url;
    _opts.apply(req);
    req.headers.emplace_back("Content-Type: application/json");
    if (!_auth.empty()) req.headers.push_back(_auth);
    req.body = body(records);
    return req;
  }

  void submit(const Batch& batch) {
    http::Request req = request(batch->records);
    const uint64_t tokens = batch->tokens;
    _cap.watch(req);
    // Parsing the vectors (thousands of numbers a batch) and building the next batch's body are
    // CPU work the HTTP loop should not do: a TBB worker does them.
    _client->submit(std::move(req), _opts.retry, _opts.limit_key, static_cast<double>(tokens),
                    [this, batch](http::Response&& resp) {
                      _output->offload([this, batch, resp = std::move(resp)]() mutable {
                        done(batch, std::move(resp));
                      });
                    });
  }

  // On a TBB worker, possibly beside another batch's.
  void done(const Batch& batch, http::Response&& resp) {
    std::string error = resp.ok() ? apply(*batch, resp.body) : resp.failure();
    if (!error.empty())
      for (auto& r : batch->records)
        _output->finish(r, Outcome::dead_lettered, error, resp.attempts, resp.status);
    size_t n = batch->records.size();
    batch->records.clear();
    _cap.done([this](Batch&& next) { submit(next); });
    for (size_t i = 0; i < n; ++i) _output->release();
  }

  // Puts the vectors on the records and sends them on; returns an error instead if the
  // response does not fit the request.
  std::string apply(EmbedBatch& eb, const std::string& body) {
    std::vector<RecordPtr>& batch = eb.records;
    rapidjson::Document d;
    if (!parse_untrusted(d, body) || !d.IsObject())
      return "malformed embeddings response (not a JSON object)";
    std::vector<std::vector<float>> vecs(batch.size());
    uint64_t tokens = 0;
    if (std::string err = vectors(d, batch.size(), vecs, tokens); !err.empty()) return err;
    for (const auto& v : vecs)
      if (v.size() != vecs[0].size())
        return "malformed embeddings response (vectors of different sizes)";
    if (_dimensions > 0 && vecs[0].size() != static_cast<size_t>(_dimensions))
      return "embeddings response has " + std::to_string(vecs[0].size()) + " dimensions, not the " +
             std::to_string(_dimensions) + " asked for";
    std::shared_ptr<const std::string> spec;
    {
      // The first answer fixes the dimension: a vector store takes vectors of one size.
      std::lock_guard lock(_spec_mu);
      if (!_spec) {
        _spec = make_spec(static_cast<int64_t>(vecs[0].size()));
        _spec_dim = vecs[0].size();
      }
      if (vecs[0].size() != _spec_dim)
        return "embeddings response has " + std::to_string(vecs[0].size()) +
               " dimensions where earlier ones had " + std::to_string(_spec_dim);
      spec = _spec;
    }
    if (tokens == 0) tokens = eb.tokens;  // the server's count where it gives one
    _output->add_usage(tokens, static_cast<double>(tokens) / 1e6 * _price);
    for (size_t i = 0; i < batch.size(); ++i) {
      RecordPtr r = std::move(batch[i]);
      if (r.use_count() > 1) r = r->clone();
      r->vector = std::move(vecs[i]);
      r->embedder = spec;
      _output->forward(std::move(r));
    }
    return {};
  }

  std::string _url, _auth, _id;
  std::shared_ptr<const text::Tokenizer> _tok;
  std::string _tok_missing;  // the model's encoding, when its ranks are not installed
  Batcher _batcher;
  InflightCap<Batch> _cap;
  http::RequestOptions _opts;
  double _price;
  http::Client* _client = nullptr;
  std::mutex _spec_mu;
  std::shared_ptr<const std::string> _spec;  // under _spec_mu: set by the first answer
  size_t _spec_dim = 0;
};

class OpenAIEmbed final : public HttpEmbedder {
 public:
  explicit OpenAIEmbed(const NodeInit& init)
      : HttpEmbedder(init, endpoint(init), "Authorization: Bearer ") {}

 private:
  static std::string endpoint(const NodeInit& init) {
    std::string url = init.params.str("url");
    if (!http::is_http_url(url))
      throw ParamError("url",
                       "url must be the full endpoint, e.g. https://api.openai.com/v1/embeddings");
    return url;
  }

  const char* type() const override { return "embed.openai"; }

  std::string body(const std::vector<RecordPtr>& batch) const override {
    std::string body = "{\"model\":" + json::quoted(_model) + ",\"input\":[";
    for (size_t i = 0; i < batch.size(); ++i) {
      if (i) body += ',';
      json::append_quoted(body, batch[i]->text);
    }
    body += ']';
    if (_dimensions > 0) body += ",\"dimensions\":" + std::to_string(_dimensions);
    body += '}';
    return body;
  }

  // {"data": [{"index": i, "embedding": [...]}, ...], "usage": {"total_tokens": n}}
  std::string vectors(const rapidjson::Document& d, size_t inputs,
                      std::vector<std::vector<float>>& out, uint64_t& tokens) const override {
    if (!d.HasMember("data") || !d["data"].IsArray())
      return "malformed embeddings response (no data array)";
    const auto& data = d["data"];
    if (data.Size() != inputs)
      return "embeddings response has " + std::to_string(data.Size()) + " vectors for " +
             std::to_string(inputs) + " inputs";
    for (const auto& item : data.GetArray()) {
      if (!item.IsObject() || !item.HasMember("embedding") || !item["embedding"].IsArray())
        return "malformed embeddings response (item without embedding)";
      size_t idx = item.HasMember("index") && item["index"].IsUint() ? item["index"].GetUint() : 0;
      if (idx >= inputs || !out[idx].empty()) return "malformed embeddings response (bad index)";
      if (std::string err = read_vector(item["embedding"], out[idx]); !err.empty()) return err;
    }
    if (d.HasMember("usage") && d["usage"].IsObject() && d["usage"].HasMember("total_tokens") &&
        d["usage"]["total_tokens"].IsUint64())
      tokens = d["usage"]["total_tokens"].GetUint64();
    return {};
  }
};

// Gemini's batch call: one request per input, answered in order. The key goes in the
// x-goog-api-key header, never in the URL, so it stays out of logs and error messages.
class GeminiEmbed final : public HttpEmbedder {
 public:
  static constexpr int64_t kMaxBatch = 100;  // the API refuses larger batches

  explicit GeminiEmbed(const NodeInit& init)
      : HttpEmbedder(init, endpoint(init), "x-goog-api-key: ") {
    if (init.params.integer("batch") > kMaxBatch)
      throw ParamError(
          "batch",
          "batch must be at most 100: batchEmbedContents takes at most 100 requests a call");
    _prefix = "{\"model\":" + json::quoted("models/" + _model) + ",";
    if (std::string task = init.params.has("task_type") ? init.params.str("task_type") : "";
        !task.empty())
      _prefix += "\"taskType\":" + json::quoted(task) + ",";
    if (_dimensions > 0) _prefix += "\"outputDimensionality\":" + std::to_string(_dimensions) + ",";
    _prefix += "\"content\":{\"parts\":[{\"text\":";
  }

 private:
  static std::string endpoint(const NodeInit& init) {
    std::string base = init.params.str("base_url");
    while (!base.empty() && base.back() == '/') base.pop_back();
    if (!http::is_http_url(base))
      throw ParamError(
          "base_url",
          "base_url must be an http(s) URL, e.g. https://generativelanguage.googleapis.com/v1beta");
    std::string model = init.params.str("model");
    if (model.empty() || model.find_first_of("/:?#") != std::string::npos)
      throw ParamError(
          "model",
          "model must be a bare model name such as gemini-embedding-001 (no \"models/\" prefix)");
    return base + "/models/" + model + ":batchEmbedContents";
  }

  const char* type() const override { return "embed.gemini"; }

  std::string body(const std::vector<RecordPtr>& batch) const override {
    std::string body = "{\"requests\":[";
    for (size_t i = 0; i < batch.size(); ++i) {
      if (i) body += ',';
      body += _prefix;
      json::append_quoted(body, batch[i]->text);
      body += "}]}}";
    }
    body += "]}";
    return body;
  }

  // {"embeddings": [{"values": [...]}, ...]} in the order of the requests; no token counts.
  std::string vectors(const rapidjson::Document& d, size_t inputs,
                      std::vector<std::vector<float>>& out, uint64_t& /*tokens*/) const override {
    if (!d.HasMember("embeddings") || !d["embeddings"].IsArray())
      return "malformed embeddings response (no embeddings array)";
    const auto& list = d["embeddings"];
    if (list.Size() != inputs)
      return "embeddings response has " + std::to_string(list.Size()) + " vectors for " +
             std::to_string(inputs) + " inputs";
    for (rapidjson::SizeType i = 0; i < list.Size(); ++i) {
      if (!list[i].IsObject() || !list[i].HasMember("values"))
        return "malformed embeddings response (item without values)";
      if (std::string err = read_vector(list[i]["values"], out[i]); !err.empty()) return err;
    }
    return {};
  }

  std::string _prefix;  // each request's JSON up to its text
};

// Parameters both HTTP embedders take, after their own.
void add_common_params(std::vector<ParamSpec>& params, const char* batch_default) {
  std::vector<ParamSpec> common = {
      param("api_key", ParamType::string, "null",
            "API key, e.g. \"${env:OPENAI_API_KEY}\" (not sent when unset)"),
      with_min(param("batch", ParamType::integer, batch_default, "inputs per request"), 1),
      with_min(param("max_batch_tokens", ParamType::integer, "8000",
                     "tokens per request, counted in `encoding` (else 4 characters a token)"),
               1),
      with_choices(param("encoding", ParamType::string, "\"auto\"",
                         "how tokens are counted for batches, tpm and the report: auto (the "
                         "model's encoding when sluice knows it: OpenAI's text-embedding-3-* and "
                         "ada-002 use cl100k_base), cl100k_base, o200k_base, or estimate (4 "
                         "characters a token)"),
                   {"auto", "cl100k_base", "o200k_base", "estimate"}),
      with_min(param("linger_ms", ParamType::integer, "50", "send a partial batch after this long"),
               0),
      with_min(param("dimensions", ParamType::integer, "null",
                     "ask for this many dimensions (models that support it)"),
               1),
      with_min(
          param("price_per_mtok", ParamType::number, "0", "USD per million tokens, for the report"),
          0),
  };
  params.insert(params.end(), common.begin(), common.end());
  http::add_request_params(params, {.unit = "batch", .tpm = true, .legacy_max_attempts = true});
}

// Tokens estimated at 4 characters each; batches bounded by count and by max_batch_tokens.
NodeCost embedder_cost(const Params& p, const CostInput& in) {
  NodeCost c;
  c.io = true;
  const double tokens_per_chunk = std::max(1.0, std::ceil(in.chunk_chars / 4));
  const double batch =
      std::max(1.0, std::min(p.number("batch"),
                             std::floor(p.number("max_batch_tokens") / tokens_per_chunk)));
  c.requests_per_doc = in.chunks_per_doc / batch;
  c.tokens_per_doc = in.chunks_per_doc * tokens_per_chunk;
  c.cost_per_doc = c.tokens_per_doc * p.number("price_per_mtok") / 1e6;
  return c;
}

}  // namespace

NodeTypeInfo embed_openai_info() {
  NodeTypeInfo info;
  info.type = "embed.openai";
  info.role = NodeRole::embedder;
  info.io = true;
  info.description = "Embeddings from an OpenAI-compatible /v1/embeddings endpoint (OpenAI, TEI, "
                     "vLLM, Ollama); input is always "
                     "sent as an array. Batches by count and estimated tokens, flushes a partial "
                     "batch after linger_ms, paces "
                     "rpm and tpm, retries like fetch.http; tokens and cost go to the run report. "
                     "`concurrency` caps batches "
                     "in flight.";
  info.params = {
      required_param("url", ParamType::string,
                     "full endpoint, e.g. https://api.openai.com/v1/embeddings"),
      required_param("model", ParamType::string, "model name, e.g. text-embedding-3-small"),
  };
  add_common_params(info.params, "64");
  info.default_concurrency = 4;
  info.adaptive_max = kEmbedAdaptiveMax;
  info.make_node = [](const NodeInit& init) { return std::make_unique<OpenAIEmbed>(init); };
  info.cost = embedder_cost;
  return info;
}

NodeTypeInfo embed_gemini_info() {
  NodeTypeInfo info;
  info.type = "embed.gemini";
  info.role = NodeRole::embedder;
  info.io = true;
  info.description = "Embeddings from Gemini's models/{model}:batchEmbedContents (at most 100 "
                     "inputs a call); the key is sent "
                     "as x-goog-api-key. Batching, rate limits, retries, the report's tokens "
                     "(estimated: the API does not "
                     "count them) and `concurrency` work as for embed.openai.";
  info.params = {
      param("base_url", ParamType::string, "\"https://generativelanguage.googleapis.com/v1beta\"",
            "API root; the node calls {base_url}/models/{model}:batchEmbedContents"),
      required_param("model", ParamType::string,
                     "model name without \"models/\", e.g. gemini-embedding-001"),
      param("task_type", ParamType::string, "\"RETRIEVAL_DOCUMENT\"",
            "taskType sent with each input (RETRIEVAL_DOCUMENT, SEMANTIC_SIMILARITY, ...; null to "
            "omit)"),
  };
  add_common_params(info.params, "100");
  info.default_concurrency = 4;
  info.adaptive_max = kEmbedAdaptiveMax;
  info.make_node = [](const NodeInit& init) { return std::make_unique<GeminiEmbed>(init); };
  info.cost = embedder_cost;
  return info;
}

std::vector<float> embed_query_http(const NodeInit& init, const std::string& text) {
  NodeInit query = init;
  json::Value params = init.params.value();
  if (json::Value* t = params.find("task_type");
      t && t->kind == json::Kind::string && t->str == "RETRIEVAL_DOCUMENT")
    t->str = "RETRIEVAL_QUERY";
  query.params = Params(std::move(params));
  std::unique_ptr<Node> node;
  if (init.type == "embed.openai") node = std::make_unique<OpenAIEmbed>(query);
  else if (init.type == "embed.gemini") node = std::make_unique<GeminiEmbed>(query);
  else throw std::runtime_error("node \"" + init.id + "\" (" + init.type + ") embeds no query");
  http::Client client;
  return static_cast<HttpEmbedder&>(*node).embed_now(text, client);
}

}  // namespace sluice
