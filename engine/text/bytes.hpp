// Byte-level helpers shared by the text/ sources (not part of the public interface): 8-byte SWAR
// loads and scans, UTF-8 continuation bytes, ASCII whitespace. Everything works on byte offsets
// into the caller's string_view; hot loops use SWAR so they stay fast without depending on the
// target's SIMD flags.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace sluice::text::detail {

constexpr uint64_t k_ones = 0x0101010101010101ULL;
constexpr uint64_t k_highs = 0x8080808080808080ULL;

inline bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

inline uint64_t load_le64(const unsigned char* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

inline uint64_t load_le32(const unsigned char* p) {
  uint32_t v = 0;
  std::memcpy(&v, p, 4);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}

// Continuation bytes in [p, e): bit 7 set and bit 6 clear.
inline size_t count_continuations(const unsigned char* p, const unsigned char* e) {
  size_t total = 0;
  while (e - p >= 8) {
    // Byte-wise counters; flush before any lane could reach 256.
    uint64_t acc = 0;
    int rounds = 0;
    while (e - p >= 8 && rounds < 255) {
      uint64_t w = 0;
      std::memcpy(&w, p, 8);  // lane order is irrelevant for a count
      acc += ((w & ~(w << 1)) & k_highs) >> 7;
      p += 8;
      ++rounds;
    }
    // Lanes hold up to 255: widen to 16-bit lanes before the horizontal sum.
    constexpr uint64_t k_even = 0x00FF00FF00FF00FFULL;
    const uint64_t pairs = (acc & k_even) + ((acc >> 8) & k_even);
    total += (pairs * 0x0001000100010001ULL) >> 48;
  }
  for (; p < e; ++p) total += is_cont(*p);
  return total;
}

inline size_t cps_in(std::string_view s, size_t b, size_t e) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  return (e - b) - count_continuations(p + b, p + e);
}

// Start of the code point n code points before pos, never below floor.
inline size_t retreat_code_points(std::string_view s, size_t pos, size_t n, size_t floor) {
  size_t i = pos;
  for (size_t k = 0; k < n && i > floor; ++k) {
    --i;
    while (i > floor && is_cont(static_cast<unsigned char>(s[i]))) --i;
  }
  return i;
}

inline bool is_space(unsigned char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

}  // namespace sluice::text::detail
