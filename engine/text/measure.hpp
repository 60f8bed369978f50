// How the splitters count a chunk's size: code points (CodePointMeasure, what text.hpp's
// splitters use) or tokens (tokenizer.hpp's TokenMeasure). A Measure is made for one text and
// answers about byte ranges of it. The splitters below are text.hpp's, sized in a Measure's units.
// Thread-safety: a Measure is immutable; its methods are safe from any number of threads.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "engine/text/text.hpp"

namespace sluice::text {

class Measure {
 public:
  virtual ~Measure() = default;
  // Units in text[b, e); 0 when b >= e. Never less for a wider range.
  virtual size_t count(size_t b, size_t e) const = 0;
  // The end of the longest range from b, within e, of at most n units, at a code point boundary;
  // at least one code point past b (b < e), even when that one is more than n units.
  virtual size_t advance(size_t b, size_t e, size_t n) const = 0;
  // The lowest p >= floor such that text[p, b) is at most n units; it may fall inside a code
  // point only at floor (callers move it forward to a boundary).
  virtual size_t retreat(size_t b, size_t n, size_t floor) const = 0;
};

class CodePointMeasure final : public Measure {
 public:
  explicit CodePointMeasure(std::string_view text) : _text(text) {}
  size_t count(size_t b, size_t e) const override;
  size_t advance(size_t b, size_t e, size_t n) const override;
  size_t retreat(size_t b, size_t n, size_t floor) const override;

 private:
  std::string_view _text;
};

// text.hpp's splitters with sizes in `m`'s units (m made for `text`). With a measure whose
// counts are not additive (tokens), a chunk's size is the measure's count of its whole range.
std::vector<Span> split_recursive(std::string_view text, size_t size, size_t overlap,
                                  const std::vector<std::string>& separators, const Measure& m);
std::vector<Span> split_sentences(std::string_view text, size_t size, size_t overlap,
                                  const Measure& m);
// split_recursive of text[b, e) alone, without overlap; spans in text's offsets.
std::vector<Span> split_range(std::string_view text, size_t b, size_t e, size_t size,
                              const std::vector<std::string>& separators, const Measure& m);
std::vector<MarkdownSpan> split_markdown(std::string_view text, size_t size, size_t overlap,
                                         const Measure& m);

}  // namespace sluice::text
