// A run's report in the Prometheus text exposition format (version 0.0.4): what
// `sluice run --metrics-addr` serves at /metrics while the run goes on. One process renders its
// own snapshot; a launcher renders its workers' folded into the job's totals.
#pragma once

#include <string>

#include "engine/graph/run_report.hpp"

namespace sluice {

// Every family has # HELP and # TYPE lines; counters end in _total, times are in seconds and
// sizes in bytes. Per node: records in and out, errors, busy seconds, queue, in flight,
// utilization and an I/O node's concurrency limit. HTTP: requests, attempts by status, retries,
// 429s, failures, rate-limit waits and an attempt latency histogram. Documents by outcome,
// chunks, tokens, cost, CPU and memory. `workers`: processes whose figures `report` sums.
std::string prometheus_text(const RunReport& report, int workers);

// The content type of that text, for the HTTP response.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace sluice
