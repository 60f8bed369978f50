// source.range: synthetic, deterministic word-like documents for benchmarks and tests.
#pragma once
#include "engine/node.hpp"
#include <cstdint>
#include <string>
namespace sluice {
NodeTypeInfo source_range_info();
// The text of document `index` for `seed`: exactly `size` bytes or a little less (ends on a word).
std::string range_text(uint64_t seed, uint64_t index, size_t size);
}  // namespace sluice
