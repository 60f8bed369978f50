#include "engine/diagnostics.hpp"

#include <algorithm>

namespace sluice {

void Diagnostics::error(json::Location loc, std::string path, std::string message) {
  _items.push_back({loc, std::move(path), std::move(message)});
}

void Diagnostics::warning(json::Location loc, std::string path, std::string message) {
  _warnings.push_back({loc, std::move(path), std::move(message)});
}

namespace {

std::string format_items(const std::string& file, std::vector<Diagnostic> sorted,
                         const Secrets& secrets) {
  std::stable_sort(sorted.begin(), sorted.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return a.loc.line != b.loc.line ? a.loc.line < b.loc.line : a.loc.col < b.loc.col;
  });
  std::string out;
  for (const auto& d : sorted) {
    out += file.empty() ? "<config>" : file;
    if (d.loc.line > 0) out += ':' + std::to_string(d.loc.line) + ':' + std::to_string(d.loc.col);
    out += ": ";
    if (!d.path.empty()) out += escape_controls(d.path) + ": ";
    out += escape_controls(d.message);
    out += '\n';
  }
  return secrets.redact(out);
}

}  // namespace

std::string Diagnostics::format() const { return format_items(_file, _items, _secrets); }
std::string Diagnostics::format_warnings() const {
  return format_items(_file, _warnings, _secrets);
}

std::string escape_controls(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out += c;
      continue;
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        out += "\\x";
        out += kHex[u >> 4];
        out += kHex[u & 15];
      }
    }
  }
  return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    if (c == name) continue;  // never suggest what was written
    size_t d = edit_distance(name, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // Allow roughly one typo per three characters, at least 2.
  size_t allowed = std::max<size_t>(2, name.size() / 3);
  if (best.empty() || best_d > allowed) return {};
  return " (did you mean '" + best + "'?)";
}

}  // namespace sluice
