// Splitters (recursive by separators, by sentences) and their overlap; they return spans and
// never copy text. Sizes are in a Measure's units (measure.hpp); text.hpp's versions count code
// points.
#include "engine/text/measure.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "engine/text/bytes.hpp"

namespace sluice::text {

using namespace detail;

namespace {

// ---- recursive splitter ------------------------------------------------------------------------

struct Splitter {
  std::string_view text;
  size_t size;
  const std::vector<std::string>& seps;
  const Measure& m;
  std::vector<Span>& out;

  // Greedy code point chunks: what "" as separator means (merging single code points).
  void split_code_points(size_t b, size_t e) {
    while (b < e) {
      size_t next = m.advance(b, e, size);
      out.push_back({b, next});
      b = next;
    }
  }

  void split(size_t b, size_t e, size_t level) {
    // First separator (from `level`) that occurs in the range; "" or exhaustion -> code points.
    size_t first_hit = std::string_view::npos;
    std::string_view sep;
    while (level < seps.size()) {
      sep = seps[level++];
      if (sep.empty()) break;
      first_hit = text.substr(0, e).find(sep, b);
      if (first_hit != std::string_view::npos) break;
    }
    if (first_hit == std::string_view::npos) {
      split_code_points(b, e);
      return;
    }
    const std::string_view range = text.substr(0, e);
    size_t cur_b = b, cur_e = b, cur_cps = 0;  // chunk being merged
    auto flush = [&] {
      if (cur_e > cur_b) out.push_back({cur_b, cur_e});
      cur_b = cur_e;
      cur_cps = 0;
    };
    size_t piece_b = b;
    size_t hit = first_hit;
    while (piece_b < e) {
      const size_t piece_e = hit == std::string_view::npos ? e : hit + sep.size();
      const size_t pc = m.count(piece_b, piece_e);
      if (pc > size) {
        flush();
        split(piece_b, piece_e, level);
        // Reopen the long piece's last chunk so short pieces after it (often a lone separator
        // such as the second '\n' of a blank line) merge into it instead of standing alone.
        const Span tail = out.back();
        out.pop_back();
        cur_b = tail.begin;
        cur_e = tail.end;
        cur_cps = m.count(cur_b, cur_e);
      } else {
        if (cur_cps + pc > size) flush();
        cur_e = piece_e;
        cur_cps += pc;
      }
      piece_b = piece_e;
      if (piece_b < e) hit = range.find(sep, piece_b);
    }
    flush();
  }
};

// Moves each span k > 0 back into span k-1 (see header). `spans` are contiguous zero-overlap spans.
void apply_overlap(std::string_view text, std::vector<Span>& spans, size_t size, size_t overlap,
                   const Measure& m) {
  if (overlap == 0 || spans.size() < 2) return;
  // Work from the back so spans[k-1] still holds its base (non-overlapped) begin when k is moved;
  // each span's code point count is computed once and reused as "prev" then "own".
  size_t k = spans.size() - 1;
  size_t own = m.count(spans[k].begin, spans[k].end);
  for (; k > 0; --k) {
    const Span prev = spans[k - 1];
    const size_t prev_cps = m.count(prev.begin, prev.end);
    const size_t b = spans[k].begin;
    if (own < size && prev_cps >= 2) {
      const size_t allowed = std::min({overlap, size - own, prev_cps - 1});
      // Never back to prev.begin (strictly increasing starts); retreat stops at that floor, which
      // may be mid code point, so resnap forward.
      size_t w = m.retreat(b, allowed, prev.begin + 1);
      while (w < b && is_cont(static_cast<unsigned char>(text[w]))) ++w;
      if (w < b && !is_space(static_cast<unsigned char>(text[w - 1]))) {
        for (size_t i = w; i + 1 < b; ++i) {
          if (is_space(static_cast<unsigned char>(text[i]))) {
            w = i + 1;
            break;
          }
        }
      }
      spans[k].begin = w;
    }
    own = prev_cps;
  }
}

// ---- sentence scanning -------------------------------------------------------------------------

// Offset of the next '.', '!', '?' or '\n' at or after i, or s.size().
size_t find_sentence_mark(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  constexpr uint64_t dot = k_ones * '.', bang = k_ones * '!', q = k_ones * '?', nl = k_ones * '\n';
  while (i + 8 <= n) {
    const uint64_t w = load_le64(p + i);
    auto zero = [](uint64_t x) { return (x - k_ones) & ~x & k_highs; };
    const uint64_t m = zero(w ^ dot) | zero(w ^ bang) | zero(w ^ q) | zero(w ^ nl);
    if (m) {
      // Borrow propagation can only flag bytes above a real match; the lowest flag is exact.
      return i + static_cast<size_t>(__builtin_ctzll(m) >> 3);
    }
    i += 8;
  }
  for (; i < n; ++i) {
    const unsigned char c = p[i];
    if (c == '.' || c == '!' || c == '?' || c == '\n') return i;
  }
  return n;
}

// Length of a closing quote/bracket at i (0 if none).
size_t closer_len(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == '"' || c == '\'' || c == ')' || c == ']' || c == '}') return 1;
  if (c == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80) {
    const unsigned char d = static_cast<unsigned char>(s[i + 2]);
    if (d == 0x9D || d == 0x99) return 3;  // ” ’
  }
  if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xBB) return 2;  // »
  return 0;
}

std::vector<Span> sentence_spans(std::string_view s) {
  std::vector<Span> out;
  const size_t n = s.size();
  size_t start = 0;
  size_t i = 0;
  auto skip_ws = [&](size_t j) {
    while (j < n && is_space(static_cast<unsigned char>(s[j]))) ++j;
    return j;
  };
  while (i < n) {
    i = find_sentence_mark(s, i);
    if (i >= n) break;
    size_t end = 0;  // sentence end if a boundary is found here
    if (s[i] == '\n') {
      size_t j = i + 1;
      while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r')) ++j;
      if (j < n && s[j] == '\n') end = skip_ws(j + 1);
    } else {
      size_t j = i + 1;
      while (j < n) {
        const size_t cl = closer_len(s, j);
        if (cl == 0) break;
        j += cl;
      }
      if (j < n && is_space(static_cast<unsigned char>(s[j]))) end = skip_ws(j + 1);
    }
    if (end > 0) {
      out.push_back({start, end});
      start = i = end;
    } else {
      ++i;
    }
  }
  if (start < n) out.push_back({start, n});
  return out;
}

}  // namespace

size_t CodePointMeasure::count(size_t b, size_t e) const { return b < e ? cps_in(_text, b, e) : 0; }

size_t CodePointMeasure::advance(size_t b, size_t e, size_t n) const {
  return advance_code_points(_text.substr(0, e), b, std::max<size_t>(n, 1));
}

size_t CodePointMeasure::retreat(size_t b, size_t n, size_t floor) const {
  return retreat_code_points(_text, b, n, floor);
}

const std::vector<std::string>& default_separators() {
  static const std::vector<std::string> seps{"\n\n", "\n", ". ", " ", ""};
  return seps;
}

std::vector<Span> split_recursive(std::string_view text, size_t size, size_t overlap,
                                  const std::vector<std::string>& separators) {
  return split_recursive(text, size, overlap, separators, CodePointMeasure(text));
}

std::vector<Span> split_recursive(std::string_view text, size_t size, size_t overlap,
                                  const std::vector<std::string>& separators, const Measure& m) {
  std::vector<Span> out;
  if (text.empty()) return out;
  size = std::max<size_t>(size, 1);
  overlap = std::min(overlap, size - 1);
  out.reserve(text.size() / std::max<size_t>(size, 16) + 4);
  Splitter sp{text, size, separators, m, out};
  sp.split(0, text.size(), 0);
  apply_overlap(text, out, size, overlap, m);
  return out;
}

std::vector<Span> split_range(std::string_view text, size_t b, size_t e, size_t size,
                              const std::vector<std::string>& separators, const Measure& m) {
  std::vector<Span> out;
  if (b >= e) return out;
  Splitter sp{text, std::max<size_t>(size, 1), separators, m, out};
  sp.split(b, e, 0);
  return out;
}

std::vector<Span> split_sentences(std::string_view text, size_t size, size_t overlap) {
  return split_sentences(text, size, overlap, CodePointMeasure(text));
}

std::vector<Span> split_sentences(std::string_view text, size_t size, size_t overlap,
                                  const Measure& m) {
  std::vector<Span> out;
  if (text.empty()) return out;
  size = std::max<size_t>(size, 1);
  overlap = std::min(overlap, size - 1);
  const std::vector<Span> sents = sentence_spans(text);
  std::vector<size_t> cps(sents.size());
  for (size_t i = 0; i < sents.size(); ++i) cps[i] = m.count(sents[i].begin, sents[i].end);

  size_t first = 0, last = 0, cur = 0;  // current chunk = sentences [first, last), cur units
  auto emit = [&] {
    if (last > first) out.push_back({sents[first].begin, sents[last - 1].end});
  };
  for (size_t i = 0; i < sents.size(); ++i) {
    if (cps[i] > size) {
      emit();
      first = last = i + 1;
      cur = 0;
      for (Span piece :
           split_range(text, sents[i].begin, sents[i].end, size, default_separators(), m))
        out.push_back(piece);
      continue;
    }
    if (last > first && cur + cps[i] > size) {
      emit();
      // Overlap tail: trailing whole sentences, never the whole chunk, fitting with sentence i.
      size_t t = last, tail = 0;
      while (overlap > 0 && t - 1 > first && tail + cps[t - 1] <= overlap &&
             tail + cps[t - 1] + cps[i] <= size) {
        --t;
        tail += cps[t];
      }
      first = t;
      cur = tail;
    }
    if (last == first) first = i;  // empty chunk starts here
    last = i + 1;
    cur += cps[i];
  }
  emit();
  return out;
}

}  // namespace sluice::text
