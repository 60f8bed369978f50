// What app/bench.cpp (the sweep) and app/bench_output.cpp (its CSV, JSON and SVG) share.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "app/bench.hpp"

namespace sluice::bench_detail {

inline std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

inline double per_s(double n, double elapsed_s) { return elapsed_s > 0 ? n / elapsed_s : 0; }

inline bool run_ok(const BenchRun& r) { return r.failure.empty(); }

inline const BenchRun* median_run(const BenchRow& row) {
  if (row.runs.empty() || !run_ok(row.runs[row.median])) return nullptr;
  return &row.runs[row.median];
}

inline std::string combo_text(int t, int p) {
  return "threads " + std::to_string(t) + " x processes " + std::to_string(p);
}

// One run as the JSON object results.json lists.
std::string run_json(const BenchRun& r);
// A row's CSV values, in bench_csv_columns() order.
std::vector<std::string> csv_values(const BenchRow& row);

}  // namespace sluice::bench_detail
