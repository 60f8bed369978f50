// Which simulated upstream answers a path, and the faults shaped around it: latency draws,
// requests- and tokens-per-minute windows (429 + Retry-After), resets, timeouts, malformed bodies.
#include "sim/server_impl.hpp"

namespace sluice::sim {

int64_t SimServer::Impl::draw_latency_ns() {
  if (o.latency_ms <= 0 && o.latency_jitter_ms <= 0) return 0;
  double ms = o.latency_ms;
  if (o.latency_jitter_ms > 0) ms += (unit(rng) * 2 - 1) * o.latency_jitter_ms;
  if (ms <= 0) return 0;
  return int64_t(ms * 1e6);
}

bool SimServer::Impl::rpm_ok() {
  if (rpm_limit <= 0) return true;
  if (rpm_window != now_wall) {
    rpm_window = now_wall;
    rpm_used = 0;
  }
  if (rpm_used >= rpm_limit) return false;
  ++rpm_used;
  return true;
}

bool SimServer::Impl::tpm_ok(int64_t tokens) {
  if (tpm_limit <= 0) return true;
  if (tpm_window != now_wall) {
    tpm_window = now_wall;
    tpm_used = 0;
  }
  // A request larger than a whole window still passes when the window is fresh.
  if (tpm_used > 0 && tpm_used + tokens > tpm_limit) return false;
  tpm_used += tokens;
  return true;
}

Ep SimServer::Impl::route(std::string_view path, std::string_view& param) {
  constexpr std::string_view kDbq = "/_delete_by_query";
  if (path.size() > kDbq.size() + 1 && path.ends_with(kDbq) && path[0] == '/') {
    param = path.substr(1, path.size() - kDbq.size() - 1);
    return param.find('/') == std::string_view::npos ? kDeleteByQuery : kOther;
  }
  if (path.size() > 7 && path.ends_with("/_bulk") && path[0] == '/') {
    param = path.substr(1, path.size() - 7);
    if (param.find('/') == std::string_view::npos) return kIndexBulk;
    return kOther;
  }
  if (path == "/docs") return kDocsList;
  if (path.starts_with("/docs/")) {
    param = path.substr(6);
    if (!param.empty() && param.find('/') == std::string_view::npos) return kDoc;
    return kOther;
  }
  if (path == "/big") return kBig;
  if (path == "/stats") return kStats;
  if (path == "/v1/embeddings") return kEmbed;
  if (path.starts_with("/v1beta/models/") && path.ends_with(":batchEmbedContents")) {
    param = path.substr(15, path.size() - 15 - 19);
    return param.empty() || param.find('/') != std::string_view::npos ? kOther : kGemini;
  }
  if (path == "/_bulk") return kBulk;
  if (path == "/sefaria/api/index" || path == "/sefaria/api/index/") return kSefIndex;
  if (path.starts_with("/sefaria/api/v3/texts/")) {
    param = path.substr(22);
    return param.empty() ? kOther : kSefText;
  }
  if (path.starts_with("/sefaria/api/shape/")) {
    param = path.substr(19);
    return param.empty() ? kOther : kSefShape;
  }
  if (path == "/openalex/works") return kOaWorks;
  return kOther;
}

void SimServer::Impl::dispatch(Conn& c, Request& req) {
  std::string_view param;
  Ep ep = route(req.path, param);
  bool close = !req.keep_alive;
  {
    std::lock_guard lk(stats_mu);
    ++stats.requests;
    ++stats.eps[ep].requests;
  }
  int status = 200;
  bool retry_after = false;
  SlotKind kind = SlotKind::respond;
  int64_t delay = 0;
  bool expect_post = is_post(ep);
  bool method_ok = req.method == (expect_post ? "POST" : "GET");
  if (ep == kOther) {
    status = 404;
    error_body("not found");
  } else if (!method_ok) {
    status = 405;
    error_body("method not allowed");
  } else if (ep == kStats) {
    body.clear();
    std::lock_guard lk(stats_mu);
    stats_json_locked(body);
  }
  if (ep == kOther || !method_ok || ep == kStats) {
    finish(c, ep, kind, status, retry_after, close, 0);
    return;
  }

  if (o.max_concurrent > 0) {
    bool overloaded;
    {
      std::lock_guard lk(stats_mu);
      overloaded = stats.in_flight >= o.max_concurrent;
    }
    if (overloaded) {
      error_body("overloaded: too many requests at once");
      finish(c, ep, kind, 503, false, close, 0);
      return;
    }
  }
  delay = draw_latency_ns();
  if (ep == kGemini) {
    // As the real API: no key at all is 403, a key it does not know is 400. "bad" is the
    // unknown key here; any other passes.
    std::string_view qkey;
    bool has_key = req.has_goog_api_key || find_param(req.query, "key", qkey);
    if (req.has_goog_api_key) qkey = req.goog_api_key;
    if (!has_key || qkey.empty() || qkey == "bad") {
      if (!has_key)
        google_error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.");
      else google_error(400, "API key not valid. Please pass a valid API key.");
      finish(c, ep, kind, has_key ? 400 : 403, false, close, delay);
      return;
    }
  }
  if (!rpm_ok()) {
    if (ep == kGemini) google_error(429, "Resource has been exhausted (e.g. check quota).");
    else error_body("rate limited");
    if (ep == kOaWorks) body.insert(body.size() - 1, ",\"retryAfter\":1");
    finish(c, ep, kind, 429, true, close, delay);
    return;
  }
  int64_t tokens = 0;
  if (ep == kEmbed || ep == kGemini) {
    std::string_view err;
    if (ep == kEmbed ? !parse_embeddings(req.body, tokens, err)
                     : !parse_gemini(req.body, param, tokens, err)) {
      if (ep == kEmbed) error_body(err);
      else google_error(400, err);
      finish(c, ep, kind, 400, false, close, delay);
      return;
    }
    if (!tpm_ok(tokens)) {
      if (ep == kGemini) google_error(429, "Resource has been exhausted (e.g. check quota).");
      else error_body("rate limited");
      finish(c, ep, kind, 429, true, close, delay);
      return;
    }
  }
  // Faults, drawn in a fixed order so a seed replays the same sequence.
  if (chance(o.error_rate)) {
    error_body("simulated");
    finish(c, ep, kind, 500, false, close, delay);
    return;
  }
  if (chance(o.reset_rate)) {
    {
      std::lock_guard lk(stats_mu);
      ++stats.resets;
    }
    c.parse_done = true;
    enqueue(c, SlotKind::reset, 0, false, false, {}, delay);
    return;
  }
  if (chance(o.timeout_rate)) {
    std::lock_guard lk(stats_mu);
    ++stats.timeouts;
    c.stalled = true;  // the connection hangs from here on, as a stuck server's would
    return;
  }
  bool malformed = chance(o.malformed_rate);

  switch (ep) {
    case kDocsList: status = docs_list(req); break;
    case kDoc: status = doc(req, param, retry_after); break;
    case kBig: status = big(); break;
    case kEmbed: status = embeddings(tokens); break;
    case kGemini: status = gemini_embeddings(tokens); break;
    case kBulk: status = bulk(req.body, {}); break;
    case kIndexBulk: status = bulk(req.body, param); break;
    case kDeleteByQuery: status = delete_by_query(req.body, param); break;
    case kSefIndex: status = sefaria_index(); break;
    case kSefText: status = sefaria_text(req, param); break;
    case kSefShape: status = sefaria_shape(param); break;
    case kOaWorks: status = openalex_works(req); break;
    default:
      status = 404;
      error_body("not found");
      break;
  }
  if (malformed && status == 200 && body.size() >= 2) body.resize(body.size() / 2);
  finish(c, ep, kind, status, retry_after, close, delay);
}

}  // namespace sluice::sim
