// Helpers around requests and responses: URL checks, headers, Retry-After, backoff, and the
// open-files limit thousands of connections need.
#include <curl/curl.h>
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>

#include "engine/http/client.hpp"

namespace sluice::http {

std::string Response::failure() const {
  return body.empty() ? error : error + ": " + body.substr(0, 300);
}

uint64_t raise_open_files_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  if (r.rlim_cur < r.rlim_max) {
    rlimit raised = r;
    raised.rlim_cur = r.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  return r.rlim_cur;
}

double backoff_delay_s(const RetryPolicy& policy, int attempt, std::mt19937_64& rng) {
  const double cap =
      std::min(policy.max_delay_s, policy.base_delay_s * std::pow(2.0, std::max(0, attempt - 1)));
  return std::uniform_real_distribution<double>(0.0, std::max(0.0, cap))(rng);
}

bool is_http_url(std::string_view url) {
  return url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
}

std::string host_of(std::string_view url) {
  size_t s = url.find("://");
  size_t start = s == std::string_view::npos ? 0 : s + 3;
  size_t end = url.find_first_of("/?#", start);
  return std::string(
      url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
}

std::string origin_of(std::string_view url) {
  if (!is_http_url(url)) return {};
  CURLU* u = curl_url();
  if (!u) return {};
  std::string origin;
  char *scheme = nullptr, *host = nullptr, *port = nullptr;
  if (curl_url_set(u, CURLUPART_URL, std::string(url).c_str(), 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
    origin = std::string(scheme) + "://" + host + ":" + port;
    std::transform(origin.begin(), origin.end(), origin.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return origin;
}

bool headers_may_go(std::string_view from, std::string_view to,
                    const std::vector<std::string>& trusted) {
  return to == from || std::find(trusted.begin(), trusted.end(), to) != trusted.end();
}

std::string header_problem(std::string_view header) {
  size_t colon = header.find(':');
  if (colon == 0 || colon == std::string_view::npos) return "a header needs a name before ':'";
  for (char c : header) {
    if (c == '\r' || c == '\n')
      return "header \"" + std::string(header.substr(0, colon)) +
             "\" has a line break in its value (header injection): not sent";
    if (c == '\0')
      return "header \"" + std::string(header.substr(0, colon)) +
             "\" has a NUL byte in its value: not sent";
  }
  return {};
}

std::string Response::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

double parse_retry_after(const std::string& value, double now_epoch_s) {
  if (value.empty()) return -1;
  char* end = nullptr;
  double secs = std::strtod(value.c_str(), &end);
  if (end && *end == '\0') return secs >= 0 ? secs : -1;
  time_t t = curl_getdate(value.c_str(), nullptr);
  if (t < 0) return -1;
  return std::max(0.0, static_cast<double>(t) - now_epoch_s);
}

}  // namespace sluice::http
