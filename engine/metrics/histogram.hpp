// Latency histogram with log-spaced buckets (each 10% wider than the last, from 0.1 ms to
// hours): quantiles within ~5%, fixed size, and mergeable, so the launcher can combine its
// workers' histograms into exact job-wide percentiles. Not thread-safe; the HTTP client keeps
// its own atomic counts and copies them into one of these.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>

namespace sluice {

class LatencyHistogram {
 public:
  static constexpr int kBuckets = 200;
  static constexpr double kMinMs = 0.1;
  static constexpr double kGrowth = 1.1;

  static int bucket_of(double seconds) {
    double ms = seconds * 1000.0;
    if (!(ms > kMinMs)) return 0;
    int i = static_cast<int>(std::log(ms / kMinMs) / std::log(kGrowth)) + 1;
    return std::clamp(i, 0, kBuckets - 1);
  }
  // A bucket's representative value in milliseconds: the geometric middle of its bounds.
  static double bucket_ms(int i) {
    if (i <= 0) return kMinMs;
    return kMinMs * std::pow(kGrowth, i - 0.5);
  }

  void add(double seconds, uint64_t n = 1) { add_bucket(bucket_of(seconds), n); }
  void add_bucket(int i, uint64_t n) {
    if (i < 0 || i >= kBuckets) return;
    _counts[static_cast<size_t>(i)] += n;
    _total += n;
  }
  void merge(const LatencyHistogram& o) {
    for (int i = 0; i < kBuckets; ++i) add_bucket(i, o._counts[static_cast<size_t>(i)]);
  }
  uint64_t count() const { return _total; }
  uint64_t bucket_count(int i) const { return _counts[static_cast<size_t>(i)]; }

  // The q-quantile (0 < q <= 1) in milliseconds; 0 when empty.
  double quantile_ms(double q) const {
    if (_total == 0) return 0;
    auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(_total)));
    rank = std::clamp<uint64_t>(rank, 1, _total);
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += _counts[static_cast<size_t>(i)];
      if (seen >= rank) return bucket_ms(i);
    }
    return bucket_ms(kBuckets - 1);
  }

  // Sparse JSON: [[bucket, count], ...] for the non-empty buckets.
  std::string to_json() const {
    std::string s = "[";
    for (int i = 0; i < kBuckets; ++i) {
      if (_counts[static_cast<size_t>(i)] == 0) continue;
      if (s.size() > 1) s += ',';
      s += '[';
      s += std::to_string(i);
      s += ',';
      s += std::to_string(_counts[static_cast<size_t>(i)]);
      s += ']';
    }
    s += ']';
    return s;
  }

 private:
  std::array<uint64_t, kBuckets> _counts{};
  uint64_t _total = 0;
};

}  // namespace sluice
