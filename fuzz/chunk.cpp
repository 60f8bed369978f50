// The chunkers, against what text.hpp promises: with no overlap the spans cover the text in
// order, each of 1..size code points, never splitting one; with overlap the starts strictly
// increase, no span passes size, and the last ends at the text's end.
// split_markdown: trimmed spans within size, starts increasing.
// Tokens (a small vocabulary under cl100k_base's pattern): the raw bytes encode to tokens whose
// ends rise to the text's end, as many as count() says; chunks sized in tokens cover the text,
// each within size tokens unless one code point.
// Input: two bytes for size and overlap, then the text.
#include "engine/text/measure.hpp"
#include "engine/text/text.hpp"
#include "engine/text/tokenizer.hpp"
#include "fuzz/fuzz_target.hpp"

namespace {

size_t code_points(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool starts_code_point(std::string_view s, size_t at) {
  return at >= s.size() || (static_cast<unsigned char>(s[at]) & 0xC0) != 0x80;
}

const sluice::text::Tokenizer& toy_tokenizer() {
  static const auto tok = [] {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
    for (const char* t : {"th", "he", "the", " t", " the", "in", "ing", " a", "an", "and", "  ",
                          "\n\n", "\xC3\xA9", "12", "123", "'s", " sh", "\xD7\xA9"})
      tokens.emplace_back(t);
    return sluice::text::Tokenizer::from_tokens("cl100k_base", tokens);
  }();
  return *tok;
}

}  // namespace

SLUICE_FUZZ_TARGET(chunk) {
  using namespace sluice;
  if (size < 2) return 0;
  const size_t chunk_size = 1 + data[0] % 64;
  const size_t overlap = data[1] % chunk_size;
  const std::string in = text::sanitize_utf8(fuzz::as_text(data + 2, size - 2));
  auto check_spans = [&](const std::vector<text::Span>& spans) {
    fuzz::check(spans.empty() == in.empty(), "text has spans, empty text none");
    size_t prev_begin = 0, prev_end = 0;
    for (size_t k = 0; k < spans.size(); ++k) {
      const auto& s = spans[k];
      fuzz::check(s.begin < s.end && s.end <= in.size(), "a span is a non-empty part of the text");
      std::string_view piece(in.data() + s.begin, s.end - s.begin);
      fuzz::check(code_points(piece) <= chunk_size, "a span holds at most size code points");
      fuzz::check(starts_code_point(in, s.begin) && starts_code_point(in, s.end),
                  "spans never split a code point");
      if (overlap == 0) {
        fuzz::check(s.begin == (k == 0 ? 0 : prev_end), "no overlap: spans are contiguous");
      } else if (k > 0) {
        fuzz::check(s.begin > prev_begin, "starts strictly increase");
      }
      prev_begin = s.begin;
      prev_end = s.end;
    }
    if (!spans.empty()) fuzz::check(spans.back().end == in.size(), "the last span ends the text");
  };
  check_spans(text::split_recursive(in, chunk_size, overlap, {"\n\n", "\n", ". ", " ", ""}));
  {
    const text::Tokenizer& tok = toy_tokenizer();
    const std::string_view raw = fuzz::as_text(data + 2, size - 2);
    std::vector<size_t> ends;
    tok.ends(raw, ends);
    fuzz::check(ends.size() == tok.count(raw) && ends.size() == tok.encode(raw).size(),
                "ends, count and encode agree");
    for (size_t i = 0; i < ends.size(); ++i)
      fuzz::check(ends[i] > (i ? ends[i - 1] : 0), "token ends strictly increase");
    fuzz::check(raw.empty() || (!ends.empty() && ends.back() == raw.size()),
                "the tokens cover every byte");
    const text::TokenMeasure m(tok, in);
    size_t at = 0;
    for (const auto& s : text::split_recursive(in, chunk_size, 0, text::default_separators(), m)) {
      fuzz::check(s.begin == at && s.end > s.begin && s.end <= in.size(),
                  "token chunks are contiguous");
      fuzz::check(starts_code_point(in, s.end), "token chunks never split a code point");
      fuzz::check(m.count(s.begin, s.end) <= chunk_size ||
                      code_points(std::string_view(in).substr(s.begin, s.end - s.begin)) == 1,
                  "a token chunk holds at most size tokens");
      at = s.end;
    }
    fuzz::check(at == in.size(), "token chunks cover the text");
  }
  check_spans(text::split_sentences(in, chunk_size, 0));
  // split_markdown: trimmed spans (not contiguous), each within size, starts increasing.
  size_t prev = 0;
  bool first = true;
  for (const auto& m : text::split_markdown(in, chunk_size, overlap)) {
    const auto& s = m.span;
    fuzz::check(s.begin < s.end && s.end <= in.size(), "a markdown span is a part of the text");
    std::string_view piece(in.data() + s.begin, s.end - s.begin);
    fuzz::check(code_points(piece) <= chunk_size, "a markdown span holds at most size");
    fuzz::check(starts_code_point(in, s.begin) && starts_code_point(in, s.end),
                "markdown spans never split a code point");
    fuzz::check(piece.front() != ' ' && piece.front() != '\n' && piece.back() != ' ' &&
                    piece.back() != '\n',
                "markdown spans are trimmed");
    fuzz::check(first || s.begin > prev, "markdown span starts strictly increase");
    fuzz::check(text::is_valid_utf8(m.heading), "heading paths are valid UTF-8");
    prev = s.begin;
    first = false;
  }
  return 0;
}
