// IEEE 754 binary16 ("half") conversions for storing embedding vectors at half the bytes.
// Float to half rounds to nearest, ties to even, as a hardware conversion does; values past the
// half range become infinities and NaN stays NaN. Pure functions, safe from any thread.
#pragma once

#include <bit>
#include <cstdint>

namespace sluice {

inline uint16_t float_to_half(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u)
    return static_cast<uint16_t>(sign | 0x7c00u | (mag > 0x7f800000u ? 0x0200u : 0u));
  if (mag >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (mag < 0x38800000u) {
    // Below the smallest normal half (2^-14): adding 0.5 leaves a float whose last mantissa bit is
    // worth 2^-24, the half's subnormal step, so the FPU's own rounding does the work.
    float r = std::bit_cast<float>(mag) + 0.5f;
    return static_cast<uint16_t>(sign | (std::bit_cast<uint32_t>(r) - 0x3f000000u));
  }
  // Rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even.
  uint32_t odd = (mag >> 13) & 1u;
  mag += 0xc8000fffu + odd;
  return static_cast<uint16_t>(sign | (mag >> 13));
}

inline float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    float v = static_cast<float>(man) * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
}

}  // namespace sluice
