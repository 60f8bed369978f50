#include "engine/secrets.hpp"

#include <algorithm>

namespace sluice {

void Secrets::add(std::string_view value) {
  if (value.size() < kMinLength) return;
  if (std::find(_values.begin(), _values.end(), value) != _values.end()) return;
  _values.emplace_back(value);
  std::stable_sort(_values.begin(), _values.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

namespace {

// "scheme://user:password@" → "scheme://user:***@", for every URL in `s`.
void mask_userinfo(std::string& s) {
  for (size_t at = s.find("://"); at != std::string::npos; at = s.find("://", at + 3)) {
    size_t start = at + 3;
    size_t end = s.find_first_of("/?# \t\r\n\"'<>", start);
    if (end == std::string::npos) end = s.size();
    size_t amp = s.rfind('@', end);
    if (amp == std::string::npos || amp < start) continue;
    size_t colon = s.find(':', start);
    if (colon == std::string::npos || colon > amp || amp - colon - 1 == 0) continue;
    if (s.compare(colon + 1, amp - colon - 1, "***") == 0) continue;
    s.replace(colon + 1, amp - colon - 1, "***");
  }
}

}  // namespace

std::string Secrets::redact(std::string_view text) const {
  std::string out(text);
  for (const auto& v : _values)
    for (size_t at = out.find(v); at != std::string::npos; at = out.find(v, at + 3))
      out.replace(at, v.size(), "***");
  mask_userinfo(out);
  return out;
}

}  // namespace sluice
