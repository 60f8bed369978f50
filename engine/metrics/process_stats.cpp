#include "engine/metrics/process_stats.hpp"

#include <algorithm>

#include <tbb/task_arena.h>

namespace sluice {

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

double cpu_seconds(const struct rusage& ru) {
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

double process_cpu_seconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return cpu_seconds(ru);
}

int hardware_threads() { return std::max(1, tbb::this_task_arena::max_concurrency()); }

}  // namespace sluice
