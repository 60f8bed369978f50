// `"concurrency": "adaptive"`: an I/O node's limit on requests in flight, found at run time by
// AIMD on round-trip time and back-pressure, as TCP congestion control does and as Vector's
// adaptive request concurrency (ARC) does for its sinks.
//
// Time is cut into windows of one mean RTT. At the end of a window:
// - back-pressure seen (a 429, a 503, a retried error or timeout), or the window's mean RTT above
//   the running mean by more than `kDeviationScale` deviations: limit × `kDecrease` (× 0.5 the
//   first time, ending slow start, which may have overshot by up to 2×);
// - otherwise, if the limit was reached during the window: slow start doubles it (until the
//   first decrease), then it grows by one a window;
// and the running RTT mean and deviation (EWMA) take in the window's RTT.
// The limit stays within [1, max]. Not thread-safe: InflightCap calls it under its lock.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>

namespace sluice {

class AimdLimit {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr double kDecrease = 0.9;  // Vector's decrease_ratio
  static constexpr double kAlpha = 0.4;  // EWMA weight of the newest window (Vector's ewma_alpha)
  static constexpr double kDeviationScale = 2.5;  // Vector's rtt_deviation_scale
  // A window's RTT must also exceed the mean by this fraction and by kMinRiseS: on a steady
  // upstream the deviation tends to zero, and scheduling noise alone (10-15% at 20 ms on
  // loopback) would otherwise read as congestion.
  static constexpr double kMinRise = 0.25;
  static constexpr double kMinRiseS = 0.002;

  // Where a limit starts unless told: high enough that a short run does not spend itself ramping
  // up from 1, low enough for a host that serves a few at a time (its first RTT window then
  // halves it).
  static constexpr int kInitial = 8;

  explicit AimdLimit(int max, int initial = kInitial)
      : _max(std::max(1, max)), _limit(std::clamp(initial, 1, _max)), _peak(_limit) {}

  int limit() const { return static_cast<int>(_limit); }
  int peak() const { return static_cast<int>(_peak); }

  // A request is starting with `in_flight` requests (itself included) out.
  void on_start(int in_flight) {
    if (in_flight >= limit()) _reached = true;
  }

  // A request finished after `rtt_s` (its last attempt's transfer); `backpressure` when the
  // upstream pushed back or failed on the way.
  void observe(double rtt_s, bool backpressure, Clock::time_point now) {
    if (_count == 0 && !_backpressure) _window_start = now;
    if (rtt_s >= 0) {
      _rtt_sum += rtt_s;
      ++_count;
    }
    _backpressure = _backpressure || backpressure;
    double window_s = _mean > 0 ? _mean : rtt_s;
    if (std::chrono::duration<double>(now - _window_start).count() >= std::max(window_s, 0.001))
      end_window();
  }

  bool slow_start() const { return _slow_start; }

 private:
  void end_window() {
    const double rtt = _count > 0 ? _rtt_sum / _count : _mean;
    const bool slower =
        _mean > 0 && rtt > _mean + std::max({kDeviationScale * _dev, kMinRise * _mean, kMinRiseS});
    if (_backpressure || slower) {
      // Slow start overshoots by up to 2x before the first push-back: halve once, as TCP does.
      _limit = std::max(1.0, std::floor(_limit * (_slow_start ? 0.5 : kDecrease)));
      _slow_start = false;
    } else if (_reached) {
      _limit = std::min<double>(_max, _slow_start ? _limit * 2 : _limit + 1);
      _peak = std::max(_peak, _limit);
    }
    if (_count > 0) {
      if (_mean <= 0) {
        _mean = rtt;
      } else {
        _dev = (1 - kAlpha) * _dev + kAlpha * std::abs(rtt - _mean);
        _mean = (1 - kAlpha) * _mean + kAlpha * rtt;
      }
    }
    _rtt_sum = 0;
    _count = 0;
    _backpressure = false;
    _reached = false;
  }

  int _max;
  double _limit, _peak;
  bool _slow_start = true;
  double _mean = 0, _dev = 0;
  Clock::time_point _window_start{};
  double _rtt_sum = 0;
  int _count = 0;
  bool _backpressure = false, _reached = false;
};

}  // namespace sluice
