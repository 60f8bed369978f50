// UTF-8: code points, validation and repair, boundaries, escapes.
#include "engine/text/text.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "engine/text/bytes.hpp"

namespace sluice::text {

using namespace detail;

int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  const unsigned char l = c | 0x20;
  if (l >= 'a' && l <= 'f') return l - 'a' + 10;
  return -1;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Length of the well-formed sequence at p (ok) or of its maximal invalid subpart (!ok), >= 1.
struct Decoded {
  size_t len;
  bool ok;
};

Decoded decode_at(const unsigned char* p, const unsigned char* e) {
  const unsigned char c = p[0];
  if (c < 0x80) return {1, true};
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    need = 2;
  } else if (c == 0xED) {
    need = 2, hi = 0x9F;  // no surrogates
  } else if (c == 0xF0) {
    need = 3, lo = 0x90;  // no overlongs
  } else if (c >= 0xF1 && c <= 0xF3) {
    need = 3;
  } else if (c == 0xF4) {
    need = 3, hi = 0x8F;  // <= U+10FFFF
  } else {
    return {1, false};
  }
  const size_t avail = static_cast<size_t>(e - p) - 1;
  for (size_t k = 1; k <= need; ++k) {
    if (k > avail) return {k, false};
    const unsigned char b = p[k];
    const unsigned char l = k == 1 ? lo : 0x80;
    const unsigned char h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {k, false};
  }
  return {need + 1, true};
}

}  // namespace

size_t count_code_points(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  return s.size() - count_continuations(p, p + s.size());
}

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* e = p + s.size();
  while (p < e) {
    if (e - p >= 8) {
      uint64_t w = 0;
      std::memcpy(&w, p, 8);
      if ((w & k_highs) == 0) {
        p += 8;
        continue;
      }
    }
    if (*p < 0x80) {
      ++p;
      continue;
    }
    const Decoded d = decode_at(p, e);
    if (!d.ok) return false;
    p += d.len;
  }
  return true;
}

std::string sanitize_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 16);
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const auto* p = b;
  const auto* e = b + s.size();
  while (p < e) {
    const Decoded d = decode_at(p, e);
    if (d.ok) out.append(reinterpret_cast<const char*>(p), d.len);
    else out.append("\xEF\xBF\xBD");
    p += d.len;
  }
  return out;
}

size_t advance_code_points(std::string_view s, size_t pos, size_t n) {
  const size_t size = s.size();
  size_t i = std::min(pos, size);
  for (size_t k = 0; k < n && i < size; ++k) {
    ++i;
    while (i < size && is_cont(static_cast<unsigned char>(s[i]))) ++i;
  }
  return i;
}

bool is_boundary(std::string_view s, size_t pos) {
  if (pos == s.size()) return true;
  return pos < s.size() && !is_cont(static_cast<unsigned char>(s[pos]));
}

}  // namespace sluice::text
