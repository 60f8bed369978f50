// OpenAI-compatible /v1/embeddings and Gemini batchEmbedContents: parsed and checked as the
// real APIs do, answered with deterministic unit vectors.
#include "sim/server_impl.hpp"

namespace sluice::sim {

// Parses an embeddings request into `inputs` (views into parse_buf) and counts tokens.
bool SimServer::Impl::parse_embeddings(std::string_view b, int64_t& tokens, std::string_view& err) {
  parse_buf.assign(b);
  pool.Clear();
  rapidjson::Document d(&pool);
  d.ParseInsitu(parse_buf.data());
  inputs.clear();
  emb_model = "sim-embedding";
  emb_dim = kDefaultEmbeddingDim;
  if (d.HasParseError() || !d.IsObject()) {
    err = "request body must be a JSON object";
    return false;
  }
  auto in = d.FindMember("input");
  if (in == d.MemberEnd()) {
    err = "'input' is required";
    return false;
  }
  if (in->value.IsString()) {
    inputs.emplace_back(in->value.GetString(), in->value.GetStringLength());
  } else if (in->value.IsArray()) {
    if (in->value.Empty()) {
      err = "'input' must not be empty";
      return false;
    }
    for (auto& v : in->value.GetArray()) {
      if (!v.IsString()) {
        err = "'input' must be a string or an array of strings";
        return false;
      }
      inputs.emplace_back(v.GetString(), v.GetStringLength());
    }
  } else {
    err = "'input' must be a string or an array of strings";
    return false;
  }
  auto m = d.FindMember("model");
  if (m != d.MemberEnd()) {
    if (!m->value.IsString()) {
      err = "'model' must be a string";
      return false;
    }
    emb_model = std::string_view(m->value.GetString(), m->value.GetStringLength());
  }
  auto dim = d.FindMember("dimensions");
  if (dim != d.MemberEnd() && !dim->value.IsNull()) {
    if (!dim->value.IsInt() || dim->value.GetInt() < 1 || dim->value.GetInt() > kMaxEmbeddingDim) {
      err = "'dimensions' must be an integer between 1 and 8192";
      return false;
    }
    emb_dim = dim->value.GetInt();
  }
  tokens = 0;
  for (auto s : inputs) tokens += int64_t((text::count_code_points(s) + 3) / 4);
  return true;
}

int SimServer::Impl::embeddings(int64_t tokens) {
  body.clear();
  body.reserve(inputs.size() * size_t(emb_dim) * 12 + 256);
  body.append("{\"object\":\"list\",\"data\":[");
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i) body.push_back(',');
    body.append("{\"object\":\"embedding\",\"index\":");
    append_uint(body, i);
    body.append(",\"embedding\":");
    append_vector(inputs[i]);
    body.push_back('}');
  }
  body.append("],\"model\":");
  json::append_quoted(body, emb_model);
  body.append(",\"usage\":{\"prompt_tokens\":");
  append_int(body, tokens);
  body.append(",\"total_tokens\":");
  append_int(body, tokens);
  body.append("}}");
  count_embeddings(tokens);
  return 200;
}

void SimServer::Impl::count_embeddings(int64_t tokens) {
  std::lock_guard lk(stats_mu);
  stats.emb_inputs += inputs.size();
  stats.emb_tokens += uint64_t(tokens);
}

// The deterministic unit vector of `input` (emb_dim floats from its hash) as a JSON array:
// the same text gets the same vector from both embedding endpoints.
void SimServer::Impl::append_vector(std::string_view input) {
  vec.resize(size_t(emb_dim));
  uint64_t s = text::stable_hash64(input);
  double norm = 0;
  for (auto& x : vec) {
    x = float(unit(s) * 2 - 1);
    norm += double(x) * double(x);
  }
  float inv = norm > 0 ? float(1 / std::sqrt(norm)) : 0.f;
  body.push_back('[');
  for (size_t k = 0; k < vec.size(); ++k) {
    if (k) body.push_back(',');
    append_float(body, vec[k] * inv);
  }
  body.push_back(']');
}

// Google APIs' error shape: {"error": {"code": 400, "message": "...", "status":
// "INVALID_ARGUMENT"}}.
void SimServer::Impl::google_error(int code, std::string_view msg) {
  body.assign("{\"error\":{\"code\":");
  append_int(body, code);
  body.append(",\"message\":");
  json::append_quoted(body, msg);
  body.append(",\"status\":\"");
  body.append(code == 429   ? "RESOURCE_EXHAUSTED"
              : code == 403 ? "PERMISSION_DENIED"
                            : "INVALID_ARGUMENT");
  body.append("\"}}");
}

// Parses a Gemini batchEmbedContents request into `inputs`, as the real API checks it: at most
// 100 requests, each naming the model of the URL, one text part or more (joined).
bool SimServer::Impl::parse_gemini(std::string_view b, std::string_view url_model, int64_t& tokens,
                                   std::string_view& err) {
  parse_buf.assign(b);
  pool.Clear();
  rapidjson::Document d(&pool);
  d.ParseInsitu(parse_buf.data());
  inputs.clear();
  joined.clear();
  emb_model = url_model;
  emb_dim = kDefaultEmbeddingDim;
  if (d.HasParseError() || !d.IsObject()) {
    err = "Invalid JSON payload received.";
    return false;
  }
  auto reqs = d.FindMember("requests");
  if (reqs == d.MemberEnd() || !reqs->value.IsArray() || reqs->value.Empty()) {
    err = "* BatchEmbedContentsRequest.requests: requests must not be empty";
    return false;
  }
  if (reqs->value.Size() > 100) {
    err = "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch";
    return false;
  }
  std::string want = "models/";
  want.append(url_model);
  auto member = [](const rapidjson::Value& v, const char* name) -> const rapidjson::Value* {
    if (!v.IsObject()) return nullptr;
    auto it = v.FindMember(name);
    return it == v.MemberEnd() ? nullptr : &it->value;
  };
  int dim = 0;
  for (auto& r : reqs->value.GetArray()) {
    const rapidjson::Value* m = member(r, "model");
    if (!m || !m->IsString() || m->GetString() != want) {
      err = "* BatchEmbedContentsRequest.model: each request's model must match the model of the "
            "call";
      return false;
    }
    const rapidjson::Value* content = member(r, "content");
    const rapidjson::Value* parts = content ? member(*content, "parts") : nullptr;
    if (!parts || !parts->IsArray() || parts->Empty()) {
      err = "* BatchEmbedContentsRequest.requests[].content.parts: contents are required";
      return false;
    }
    std::string text;
    for (auto& part : parts->GetArray()) {
      const rapidjson::Value* t = member(part, "text");
      if (!t || !t->IsString()) {
        err =
            "* BatchEmbedContentsRequest.requests[].content.parts[].text: a text part is required";
        return false;
      }
      text.append(t->GetString(), t->GetStringLength());
    }
    joined.push_back(std::move(text));
    const rapidjson::Value* od = member(r, "outputDimensionality");
    int this_dim = kDefaultEmbeddingDim;
    if (od) {
      if (!od->IsInt() || od->GetInt() < 1 || od->GetInt() > kMaxEmbeddingDim) {
        err = "* BatchEmbedContentsRequest.requests[].output_dimensionality: must be between 1 and "
              "8192";
        return false;
      }
      this_dim = od->GetInt();
    }
    if (dim != 0 && this_dim != dim) {
      err = "* BatchEmbedContentsRequest.requests[].output_dimensionality: must be the same for "
            "every request";
      return false;
    }
    dim = this_dim;
  }
  emb_model_buf.assign(url_model);
  emb_model = emb_model_buf;
  emb_dim = dim;
  tokens = 0;
  for (const auto& t : joined) {
    inputs.emplace_back(t);
    tokens += int64_t((text::count_code_points(t) + 3) / 4);
  }
  return true;
}

int SimServer::Impl::gemini_embeddings(int64_t tokens) {
  body.clear();
  body.reserve(inputs.size() * size_t(emb_dim) * 12 + 64);
  body.append("{\"embeddings\":[");
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i) body.push_back(',');
    body.append("{\"values\":");
    append_vector(inputs[i]);
    body.push_back('}');
  }
  body.append("]}");
  count_embeddings(tokens);
  return 200;
}

}  // namespace sluice::sim
