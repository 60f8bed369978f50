#include "engine/graph/progress.hpp"

#include <cstdio>

namespace sluice {

std::string progress_text(const ProgressFigures& p) {
  const double rate = p.elapsed_s > 0 ? static_cast<double>(p.done) / p.elapsed_s : 0;
  std::string total = p.total ? "/" + std::to_string(*p.total) : "";
  std::string workers = p.workers > 0 ? "  " + std::to_string(p.workers) + " workers" : "";
  std::string eta;
  if (p.total && rate > 0 && *p.total > p.done)
    eta = "  ETA " + human_duration(static_cast<double>(*p.total - p.done) / rate);
  char line[256];
  std::snprintf(line, sizeof line, "docs %llu%s  in flight %lld  chunks %llu  %.0f docs/s%s  %s%s",
                static_cast<unsigned long long>(p.done), total.c_str(),
                static_cast<long long>(p.in_flight), static_cast<unsigned long long>(p.chunks),
                rate, workers.c_str(), human_duration(p.elapsed_s).c_str(), eta.c_str());
  return line;
}

std::string human_duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

}  // namespace sluice
