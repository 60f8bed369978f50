#include "engine/http/request_options.hpp"

#include <algorithm>
#include <future>

namespace sluice::http {

void add_request_params(std::vector<ParamSpec>& params, const RequestParamSet& set) {
  params.push_back(job_total(with_min(
      param("rpm", ParamType::number, "0",
            set.unit + "s per minute for limit_key, a total for the whole job (0 = no limit)"),
      0)));
  if (set.tpm)
    params.push_back(job_total(
        with_min(param("tpm", ParamType::number, "0",
                       "tokens per minute for limit_key, a total for the whole job (0 = no limit)"),
                 0)));
  params.push_back(param("limit_key", ParamType::string, "null",
                         "rate-limit name: nodes naming the same key share one limit (default: "
                         "the node's id, a limit of its own)"));
  params.push_back(param("retry", ParamType::object, "{}",
                         "max_attempts (8: network errors, timeouts, 408, 5xx), base_delay_s "
                         "(0.2), max_delay_s (30), max_retry_s (600, 429s included)"));
  params.push_back(with_min(param("timeout_ms", ParamType::integer, std::to_string(set.timeout_ms),
                                  "total time for one attempt of a " + set.unit),
                            1));
  if (set.transfer_limits) {
    params.push_back(
        with_min(param("connect_timeout_ms", ParamType::integer, "10000", "time to connect"), 1));
    params.push_back(with_min(
        param("max_bytes", ParamType::integer, "67108864", "larger responses are dead-lettered"),
        1));
  }
  params.push_back(param("trusted_origins", ParamType::string_list, "[]",
                         "origins besides the URL's own that a redirect may take this node's "
                         "headers and keys to, e.g. [\"https://api2.example.org\"]; other "
                         "cross-origin redirects are refused"));
  if (set.legacy_max_attempts) {
    ParamSpec legacy = with_min(
        param("max_attempts", ParamType::integer, "", "deprecated: retry.max_attempts"), 1);
    legacy.replaced_by = "retry.max_attempts";
    params.push_back(std::move(legacy));
  }
}

std::string static_header(const std::string& param, std::string header) {
  if (std::string why = header_problem(header); !why.empty()) throw ParamError(param, why);
  return header;
}

void RequestOptions::set_rate_limit(Client& client) const {
  if (limit.rpm > 0 || limit.tpm > 0) client.set_rate_limit(limit_key, limit);
}

std::vector<Response> RequestOptions::send_and_wait(Client& client,
                                                    std::vector<Request> requests) const {
  std::vector<std::promise<Response>> answers(requests.size());
  for (size_t i = 0; i < requests.size(); ++i)
    client.submit(std::move(requests[i]), retry, limit_key, 0,
                  [p = &answers[i]](Response&& r) { p->set_value(std::move(r)); });
  std::vector<Response> out;
  out.reserve(answers.size());
  for (auto& a : answers) out.push_back(a.get_future().get());
  return out;
}

void RequestOptions::apply(Request& req) const {
  req.timeout_ms = static_cast<long>(timeout_ms);
  req.connect_timeout_ms = static_cast<long>(connect_timeout_ms);
  req.max_bytes = max_bytes;
  req.trusted_origins = trusted_origins;
}

namespace {

RetryPolicy read_retry(const Params& p) {
  RetryPolicy policy;
  const json::Value* r = p.get("retry");
  if (!r || r->kind != json::Kind::object) return policy;
  for (const auto& m : r->members) {
    if (m.value.kind != json::Kind::number)
      throw ParamError("retry", "retry." + m.key + " must be a number");
    const double v = m.value.number;
    if (m.key == "max_attempts") policy.max_attempts = static_cast<int>(v);
    else if (m.key == "base_delay_s") policy.base_delay_s = v;
    else if (m.key == "max_delay_s") policy.max_delay_s = v;
    else if (m.key == "max_retry_s") policy.max_retry_s = v;
    else
      throw ParamError("retry", "unknown retry setting \"" + m.key +
                                    "\" (max_attempts, base_delay_s, max_delay_s, max_retry_s)");
    if (m.key != "max_attempts" && !(v >= 0))
      throw ParamError("retry", "retry." + m.key + " must be at least 0");
  }
  if (policy.max_attempts < 1) throw ParamError("retry", "retry.max_attempts must be at least 1");
  return policy;
}

}  // namespace

RequestOptions read_request_options(const Params& p, const std::string& node_id) {
  RequestOptions o;
  o.limit.rpm = p.number("rpm");
  o.limit.tpm = p.number("tpm");  // 0 for a node without tpm
  o.limit_key = p.has("limit_key") ? p.str("limit_key") : node_id;
  o.retry = read_retry(p);
  o.timeout_ms = p.integer("timeout_ms");
  if (p.has("connect_timeout_ms")) o.connect_timeout_ms = p.integer("connect_timeout_ms");
  if (p.has("max_bytes")) o.max_bytes = static_cast<size_t>(p.integer("max_bytes"));
  for (const auto& origin : p.strings("trusted_origins")) {
    std::string normal = origin_of(origin);
    if (normal.empty())
      throw ParamError("trusted_origins",
                       "trusted_origins: \"" + origin + "\" is not an http(s) origin");
    o.trusted_origins.push_back(std::move(normal));
  }
  return o;
}

}  // namespace sluice::http
