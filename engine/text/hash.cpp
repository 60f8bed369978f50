// A stable 64-bit hash (the same on every platform and run): ids, shards, feature hashing.
#include "engine/text/text.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "engine/text/bytes.hpp"

namespace sluice::text {

using namespace detail;

namespace {

inline void mum(uint64_t& a, uint64_t& b) {
  const __uint128_t r = static_cast<__uint128_t>(a) * b;
  a = static_cast<uint64_t>(r);
  b = static_cast<uint64_t>(r >> 64);
}

inline uint64_t mix(uint64_t a, uint64_t b) {
  mum(a, b);
  return a ^ b;
}

constexpr uint64_t k_p0 = 0xa0761d6478bd642fULL;
constexpr uint64_t k_p1 = 0xe7037ed1a0b428dbULL;
constexpr uint64_t k_p2 = 0x8ebc6af09c88c6e3ULL;
constexpr uint64_t k_p3 = 0x589965cc75374cc3ULL;

}  // namespace

uint64_t stable_hash64(std::string_view s, uint64_t seed) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t len = s.size();
  seed ^= mix(seed ^ k_p0, k_p1);
  uint64_t a = 0, b = 0;
  if (len <= 16) {
    if (len >= 4) {
      const size_t off = (len >> 3) << 2;
      a = (load_le32(p) << 32) | load_le32(p + off);
      b = (load_le32(p + len - 4) << 32) | load_le32(p + len - 4 - off);
    } else if (len > 0) {
      a = (static_cast<uint64_t>(p[0]) << 16) | (static_cast<uint64_t>(p[len >> 1]) << 8) |
          p[len - 1];
    }
  } else {
    size_t i = len;
    if (i > 48) {
      uint64_t s1 = seed, s2 = seed;
      do {
        seed = mix(load_le64(p) ^ k_p1, load_le64(p + 8) ^ seed);
        s1 = mix(load_le64(p + 16) ^ k_p2, load_le64(p + 24) ^ s1);
        s2 = mix(load_le64(p + 32) ^ k_p3, load_le64(p + 40) ^ s2);
        p += 48;
        i -= 48;
      } while (i > 48);
      seed ^= s1 ^ s2;
    }
    while (i > 16) {
      seed = mix(load_le64(p) ^ k_p1, load_le64(p + 8) ^ seed);
      i -= 16;
      p += 16;
    }
    a = load_le64(p + i - 16);
    b = load_le64(p + i - 8);
  }
  a ^= k_p1;
  b ^= seed;
  mum(a, b);
  return mix(a ^ k_p0 ^ len, b ^ k_p1);
}

}  // namespace sluice::text
