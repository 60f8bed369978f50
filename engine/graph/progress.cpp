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
  std::string expanded;
  double shown_rate = rate;
  const std::string* rate_unit = &p.unit;
  if (!p.expanded_unit.empty()) {
    expanded = "  " + p.expanded_unit + " " + std::to_string(p.expanded);
    shown_rate = p.elapsed_s > 0 ? static_cast<double>(p.expanded) / p.elapsed_s : 0;
    rate_unit = &p.expanded_unit;
  }
  char line[384];
  std::snprintf(
      line, sizeof line, "%.40s %llu%s%.60s  in flight %lld  chunks %llu  %.0f %.40s/s%s  %s%s",
      p.unit.c_str(), static_cast<unsigned long long>(p.done), total.c_str(), expanded.c_str(),
      static_cast<long long>(p.in_flight), static_cast<unsigned long long>(p.chunks), shown_rate,
      rate_unit->c_str(), workers.c_str(), human_duration(p.elapsed_s).c_str(), eta.c_str());
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
