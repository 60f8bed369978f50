// Inner products of a float query with a stored vector (float32 or float16), the hot loop of a
// nearest-neighbour search. Chooses at run time the widest code the CPU runs (AVX2 with FMA and
// F16C, else plain C++): the build targets any x86-64, the machine that searches may do more.
// For the same values, a float32 and a float16 vector give bit for bit the same result (the
// loops add in the same order), so a search over halves finds what one over floats finds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice {

// q . v, `v` a float32 vector at any alignment.
float dot_f32(const float* q, const void* v, size_t dim);
// q . v, `v` float16 values at any alignment. Use only where halves_are_fast().
float dot_f16(const float* q, const void* v, size_t dim);
// Whether dot_f16 runs in hardware (AVX2, FMA and F16C): else a caller keeps floats.
bool halves_are_fast();
// Writes `n` floats as halves into `to`; false (what was written then undefined) when one of them
// is not a half exactly (a value that rounds, NaN): halves would change the answers.
bool halves_exactly(const float* from, uint16_t* to, size_t n);

namespace detail {
// The plain C++ loops the above fall back on where the CPU lacks AVX2, FMA or F16C (for tests).
float dot_f32_portable(const float* q, const void* v, size_t dim);
float dot_f16_portable(const float* q, const void* v, size_t dim);
bool halves_exactly_portable(const float* from, uint16_t* to, size_t n);
}  // namespace detail

}  // namespace sluice
