#include "engine/vector/dot.hpp"

#include <cmath>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "engine/vector/float16.hpp"

namespace sluice {

namespace {

float load_f32(const void* v, size_t i) {
  float x;
  std::memcpy(&x, static_cast<const unsigned char*>(v) + 4 * i, sizeof x);
  return x;
}

uint16_t load_f16(const void* v, size_t i) {
  uint16_t x;
  std::memcpy(&x, static_cast<const unsigned char*>(v) + 2 * i, sizeof x);
  return x;
}

// The portable loops add in the vector loops' order: lane j of accumulator a holds the products
// of elements 32 * n + 8 * a + j, then the lanes are summed pairwise, then the tail.
template <class At>
float dot_plain(const float* q, size_t dim, At at) {
  float acc[4][8] = {};
  size_t i = 0;
  for (; i + 32 <= dim; i += 32)
    for (size_t a = 0; a < 4; ++a)
      for (size_t j = 0; j < 8; ++j) acc[a][j] += q[i + 8 * a + j] * at(i + 8 * a + j);
  for (; i + 8 <= dim; i += 8)
    for (size_t j = 0; j < 8; ++j) acc[0][j] += q[i + j] * at(i + j);
  float lane[8];
  for (size_t j = 0; j < 8; ++j) lane[j] = (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]);
  float s =
      ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
  for (; i < dim; ++i) s += q[i] * at(i);
  return s;
}

#if defined(__x86_64__)
// Sums the lanes in dot_plain's order.
__attribute__((target("avx2,fma"))) float lanes_sum(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 l = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(l), _mm256_extractf128_ps(l, 1));  // j, j+4
  const __m128 p = _mm_add_ps(h, _mm_movehl_ps(h, h));  // (0+4)+(2+6), (1+5)+(3+7)
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_shuffle_ps(p, p, 1)));
}

// The AVX2 loop, for floats or halves: at(i) loads elements i..i+7 as floats, one(i) element i.
// It uses fused multiply-adds; the plain loop does not (this file is built with
// -ffp-contract=off), so on a CPU with AVX2 every dot goes through this one (never a mix), and
// floats and halves agree with each other. Called only where avx2_fma_f16c().
template <class At, class One>
__attribute__((target("avx2,fma,f16c"))) float dot_avx2(const float* q, size_t dim, At at,
                                                        One one) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), at(i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), at(i + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 16), at(i + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 24), at(i + 24), a3);
  }
  for (; i + 8 <= dim; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), at(i), a0);
  float s = lanes_sum(a0, a1, a2, a3);
  for (; i < dim; ++i) s = std::fma(q[i], one(i), s);
  return s;
}

__attribute__((target("avx2,fma,f16c"))) float dot_f32_avx2(const float* q, const void* v,
                                                            size_t dim) {
  const auto* f = static_cast<const unsigned char*>(v);
  return dot_avx2(
      q, dim,
      [f](size_t i) __attribute__((target("avx2,fma,f16c"))) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(f + 4 * i));
      },
      [v](size_t i) { return load_f32(v, i); });
}

__attribute__((target("avx2,fma,f16c"))) float dot_f16_avx2(const float* q, const void* v,
                                                            size_t dim) {
  const auto* h = static_cast<const unsigned char*>(v);
  return dot_avx2(
      q, dim,
      [h](size_t i) __attribute__((target("avx2,fma,f16c"))) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 2 * i)));
      },
      [v](size_t i) { return half_to_float(load_f16(v, i)); });
}

__attribute__((target("avx2,f16c"))) bool halves_exactly_f16c(const float* from, uint16_t* to,
                                                              size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(from + i);
    const __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // Equal as values and not NaN (a NaN is unequal to itself).
    if (_mm256_movemask_ps(_mm256_cmp_ps(_mm256_cvtph_ps(h), x, _CMP_EQ_OQ)) != 0xff) return false;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + i), h);
  }
  return detail::halves_exactly_portable(from + i, to + i, n - i);
}

bool avx2_fma_f16c() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return yes;
}
#else
bool avx2_fma_f16c() { return false; }
#endif

}  // namespace

bool halves_are_fast() { return avx2_fma_f16c(); }

namespace detail {

float dot_f32_portable(const float* q, const void* v, size_t dim) {
  return dot_plain(q, dim, [v](size_t i) { return load_f32(v, i); });
}

float dot_f16_portable(const float* q, const void* v, size_t dim) {
  return dot_plain(q, dim, [v](size_t i) { return half_to_float(load_f16(v, i)); });
}

bool halves_exactly_portable(const float* from, uint16_t* to, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    to[i] = float_to_half(from[i]);
    if (!(half_to_float(to[i]) == from[i])) return false;
  }
  return true;
}

}  // namespace detail

float dot_f32(const float* q, const void* v, size_t dim) {
#if defined(__x86_64__)
  if (avx2_fma_f16c()) return dot_f32_avx2(q, v, dim);
#endif
  return detail::dot_f32_portable(q, v, dim);
}

float dot_f16(const float* q, const void* v, size_t dim) {
#if defined(__x86_64__)
  if (avx2_fma_f16c()) return dot_f16_avx2(q, v, dim);
#endif
  return detail::dot_f16_portable(q, v, dim);
}

bool halves_exactly(const float* from, uint16_t* to, size_t n) {
#if defined(__x86_64__)
  if (avx2_fma_f16c()) return halves_exactly_f16c(from, to, n);
#endif
  return detail::halves_exactly_portable(from, to, n);
}

}  // namespace sluice
