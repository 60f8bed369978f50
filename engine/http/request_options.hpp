// The request params every HTTP node declares, once: rate limits, the limit key, retries and
// per-attempt limits. A node adds them to its params with add_request_params() and reads them
// back with read_request_options(), so every HTTP node spells, defaults and documents them alike.
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/http/client.hpp"
#include "engine/params.hpp"

namespace sluice::http {

// Which of the shared params a node takes beyond rpm, limit_key, retry and timeout_ms.
struct RequestParamSet {
  std::string unit = "request";  // what one HTTP request is to this node: "page", "batch", ...
  bool tpm = false;              // a tokens-per-minute limit (embedders)
  bool transfer_limits = false;  // connect_timeout_ms and max_bytes
  int64_t timeout_ms = 60000;    // the default time for one attempt
  // The retired flat `max_attempts` param this node took: accepted as retry.max_attempts, with a
  // deprecation note.
  bool legacy_max_attempts = false;
};

// Appends rpm [, tpm], limit_key, retry, timeout_ms [, connect_timeout_ms, max_bytes],
// trusted_origins.
void add_request_params(std::vector<ParamSpec>& params, const RequestParamSet& set);

struct RequestOptions {
  RateLimit limit;        // rpm and tpm for the whole job's share this process has
  std::string limit_key;  // the rate limit's name (see read_request_options)
  RetryPolicy retry;
  int64_t timeout_ms = 60000;
  int64_t connect_timeout_ms = 10000;
  size_t max_bytes = size_t{64} << 20;
  std::vector<std::string> trusted_origins;  // normalized by origin_of

  // The per-attempt limits on a request.
  void apply(Request& req) const;
  // Gives the client this node's rate limit under limit_key, when it has one (at open).
  void set_rate_limit(Client& client) const;
  // Sends `requests` at once through `client` (under this node's retry and rate limit) and waits
  // for every answer, in their order. For a node's own calls outside the flow of records (open,
  // commit): never from a TBB worker or the HTTP loop.
  std::vector<Response> send_and_wait(Client& client, std::vector<Request> requests) const;
};

// `header` ("Name: value") when a header fixed by the config (a key, a static header), or
// ParamError on `param` when it would inject more headers (CR, LF or NUL, say from an env var or
// --set). The message names the header, never its value.
std::string static_header(const std::string& param, std::string header);

// Reads what add_request_params declared. The one rule for the limit key: `limit_key` when
// given, else the node's id, so a limit a node declares is its own and nodes share one only by
// naming the same key (two nodes calling one upstream from one sim or host never throttle each
// other by accident). Throws ParamError.
RequestOptions read_request_options(const Params& params, const std::string& node_id);

}  // namespace sluice::http
