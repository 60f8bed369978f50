// Tests for engine/text: hand cases pin the documented behaviour, property tests over random
// multi-byte strings and the KJV corpus check the splitter contracts, a fuzz test checks that the
// HTML converter survives malformed input in linear time, and pinned hash values catch any change
// to the (stable, persisted) hash.
#include "engine/text/text.hpp"
#include "engine/vector/dot.hpp"
#include "engine/vector/float16.hpp"
#include "tests/sample_corpus.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>

#ifndef SLUICE_SOURCE_DIR
#define SLUICE_SOURCE_DIR "/work/main"
#endif

namespace {

using sluice::text::Span;
namespace tx = sluice::text;

std::string slice(std::string_view s, Span sp) {
  return std::string(s.substr(sp.begin, sp.end - sp.begin));
}

// The KJV corpus (all files, sorted) or "" when missing; capped so sanitizer runs stay quick.
const std::string& kjv_text() {
  static const std::string text = [] {
    std::string all;
    for (const auto& t : sluice::test::sample_corpus_files()) {
      all += t;
      if (all.size() > 700'000) break;
    }
    return all;
  }();
  return text;
}

// Random text mixing ASCII words, 2/3/4-byte code points, spaces, newlines, blank lines, ". ",
// sentence punctuation and closing quotes.
std::string random_text(std::mt19937& rng, size_t tokens) {
  static const std::vector<std::string> pieces{
      "a",        "word",         "longerword", "x",          " ",      " ",
      "  ",       "\n",           "\n\n",       ". ",         ".",      "! ",
      "? ",       "\"",           "\u201D",     ")",          "\u00E9", "\u00DF",
      "\u20AC",   "\u4E2D\u6587", "\U0001F600", "\U00010348", "\t",     "\u00E9t\u00E9",
      "abc. Def", "\r\n"};
  std::uniform_int_distribution<size_t> pick(0, pieces.size() - 1);
  std::string s;
  for (size_t i = 0; i < tokens; ++i) s += pieces[pick(rng)];
  return s;
}

// overlap == 0 contract.
void check_contiguous(std::string_view text, const std::vector<Span>& spans, size_t size) {
  if (text.empty()) {
    EXPECT_TRUE(spans.empty());
    return;
  }
  ASSERT_FALSE(spans.empty());
  std::string joined;
  joined.reserve(text.size());
  size_t expected_begin = 0;
  for (const Span& sp : spans) {
    ASSERT_EQ(sp.begin, expected_begin) << "size " << size;
    ASSERT_LT(sp.begin, sp.end);
    ASSERT_LE(sp.end, text.size());
    const size_t cps = tx::count_code_points(text.substr(sp.begin, sp.end - sp.begin));
    ASSERT_GE(cps, 1u);
    ASSERT_LE(cps, size) << "span [" << sp.begin << "," << sp.end << ") size " << size;
    ASSERT_TRUE(tx::is_boundary(text, sp.begin));
    ASSERT_TRUE(tx::is_boundary(text, sp.end));
    joined.append(text.substr(sp.begin, sp.end - sp.begin));
    expected_begin = sp.end;
  }
  ASSERT_EQ(joined, text);
}

// overlap > 0 contract; returns how many spans really overlap their predecessor.
size_t check_overlapping(std::string_view text, const std::vector<Span>& spans, size_t size) {
  if (text.empty()) {
    EXPECT_TRUE(spans.empty());
    return 0;
  }
  EXPECT_FALSE(spans.empty());
  if (spans.empty()) return 0;
  EXPECT_EQ(spans.front().begin, 0u);
  EXPECT_EQ(spans.back().end, text.size());
  size_t overlapping = 0;
  for (size_t k = 0; k < spans.size(); ++k) {
    const Span sp = spans[k];
    EXPECT_LT(sp.begin, sp.end);
    const size_t cps = tx::count_code_points(text.substr(sp.begin, sp.end - sp.begin));
    EXPECT_GE(cps, 1u);
    EXPECT_LE(cps, size);
    EXPECT_TRUE(tx::is_boundary(text, sp.begin));
    EXPECT_TRUE(tx::is_boundary(text, sp.end));
    if (k > 0) {
      EXPECT_GT(sp.begin, spans[k - 1].begin) << "starts must increase, k=" << k;
      EXPECT_LE(sp.begin, spans[k - 1].end) << "gap before span " << k;
      EXPECT_GT(sp.end, spans[k - 1].end);
      overlapping += sp.begin < spans[k - 1].end;
    }
  }
  return overlapping;
}

const std::vector<size_t> k_sizes{1, 2, 7, 50, 500, 2000};

// ---- UTF-8 -------------------------------------------------------------------------------------

TEST(Utf8, CountCodePoints) {
  EXPECT_EQ(tx::count_code_points(""), 0u);
  EXPECT_EQ(tx::count_code_points("abc"), 3u);
  EXPECT_EQ(tx::count_code_points("a\u00E9\u20AC\U0001F600"), 4u);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t len : {0u, 1u, 7u, 8u, 9u, 100u, 2047u, 2048u, 2049u, 5000u}) {
    std::string s;
    for (size_t i = 0; i < len; ++i) s.push_back(static_cast<char>(byte(rng)));
    size_t naive = 0;
    for (unsigned char c : s) naive += (c & 0xC0) != 0x80;
    EXPECT_EQ(tx::count_code_points(s), naive) << len;
  }
}

TEST(Utf8, Validity) {
  EXPECT_TRUE(tx::is_valid_utf8(""));
  EXPECT_TRUE(tx::is_valid_utf8("plain ascii text that is long enough"));
  EXPECT_TRUE(tx::is_valid_utf8("a\u00E9\u20AC\U0001F600\U0010FFFF\uFFFD"));
  EXPECT_FALSE(tx::is_valid_utf8("\x80"));
  EXPECT_FALSE(tx::is_valid_utf8("ab\xC0\xAF"));        // overlong '/'
  EXPECT_FALSE(tx::is_valid_utf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(tx::is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(tx::is_valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(tx::is_valid_utf8("12345678\xE2\x82"));  // truncated
  EXPECT_FALSE(tx::is_valid_utf8("\xFF"));
}

TEST(Utf8, Sanitize) {
  EXPECT_EQ(tx::sanitize_utf8("ok \u00E9"), "ok \u00E9");
  EXPECT_EQ(tx::sanitize_utf8("a\xFF"
                              "b"),
            "a\uFFFD"
            "b");
  EXPECT_EQ(tx::sanitize_utf8("\xE2\x82x"), "\uFFFDx");  // one maximal subpart
  EXPECT_EQ(tx::sanitize_utf8("\xF0\x9F\x98"), "\uFFFD");
  EXPECT_EQ(tx::sanitize_utf8("\xC0\xAF"), "\uFFFD\uFFFD");  // C0 is never a lead byte
  EXPECT_EQ(tx::sanitize_utf8("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int iter = 0; iter < 500; ++iter) {
    std::string s;
    for (int i = 0; i < 40; ++i) s.push_back(static_cast<char>(byte(rng)));
    EXPECT_TRUE(tx::is_valid_utf8(tx::sanitize_utf8(s)));
  }
}

TEST(Utf8, AdvanceAndBoundary) {
  const std::string s = "a\u00E9\u20AC\U0001F600";  // 1 + 2 + 3 + 4 bytes
  EXPECT_EQ(tx::advance_code_points(s, 0, 0), 0u);
  EXPECT_EQ(tx::advance_code_points(s, 0, 2), 3u);
  EXPECT_EQ(tx::advance_code_points(s, 1, 2), 6u);
  EXPECT_EQ(tx::advance_code_points(s, 0, 4), 10u);
  EXPECT_EQ(tx::advance_code_points(s, 0, 99), 10u);
  EXPECT_EQ(tx::advance_code_points(s, 50, 1), 10u);
  EXPECT_TRUE(tx::is_boundary(s, 0));
  EXPECT_TRUE(tx::is_boundary(s, 1));
  EXPECT_FALSE(tx::is_boundary(s, 2));
  EXPECT_TRUE(tx::is_boundary(s, 3));
  EXPECT_FALSE(tx::is_boundary(s, 7));
  EXPECT_TRUE(tx::is_boundary(s, 10));
  EXPECT_FALSE(tx::is_boundary(s, 11));
}

// ---- split_recursive ---------------------------------------------------------------------------

std::vector<std::string> texts_of(std::string_view s, const std::vector<Span>& spans) {
  std::vector<std::string> out;
  for (const Span& sp : spans) out.push_back(slice(s, sp));
  return out;
}

TEST(SplitRecursive, HandCases) {
  using V = std::vector<std::string>;
  EXPECT_TRUE(tx::split_recursive("", 10, 0).empty());
  EXPECT_EQ(texts_of("aaa bbb ccc", tx::split_recursive("aaa bbb ccc", 4, 0)),
            (V{"aaa ", "bbb ", "ccc"}));
  EXPECT_EQ(texts_of("aaa bbb ccc", tx::split_recursive("aaa bbb ccc", 8, 0)),
            (V{"aaa bbb ", "ccc"}));
  EXPECT_EQ(texts_of("ab\ncd", tx::split_recursive("ab\ncd", 3, 0)), (V{"ab\n", "cd"}));
  // A long paragraph is split on its own; the next paragraph starts a new chunk.
  const std::string t = "aaaa aaaa\n\nbb";
  EXPECT_EQ(texts_of(t, tx::split_recursive(t, 6, 0)), (V{"aaaa ", "aaaa\n\n", "bb"}));
  // Sentences before words.
  const std::string u = "One two. Three four. Five";
  EXPECT_EQ(texts_of(u, tx::split_recursive(u, 12, 0)), (V{"One two. ", "Three four. ", "Five"}));
  // Code points, never bytes.
  const std::string e = "\u00E9\u00E9\u00E9\u00E9\u00E9";
  EXPECT_EQ(texts_of(e, tx::split_recursive(e, 2, 0)),
            (V{"\u00E9\u00E9", "\u00E9\u00E9", "\u00E9"}));
  // A list without "" still honours size.
  EXPECT_EQ(texts_of("abcdefghij", tx::split_recursive("abcdefghij", 3, 0, {" "})),
            (V{"abc", "def", "ghi", "j"}));
  // Custom separators.
  EXPECT_EQ(texts_of("a;b;c", tx::split_recursive("a;b;c", 2, 0, {";"})), (V{"a;", "b;", "c"}));
}

TEST(SplitRecursive, OverlapHandCase) {
  const std::string t = "one two three four five six";
  const auto spans = tx::split_recursive(t, 10, 5);
  // Base chunks: "one two " "three " "four five " "six"; overlaps snap to word starts.
  std::vector<std::string> got = texts_of(t, spans);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], "one two ");
  EXPECT_EQ(got[1], "two three ");
  EXPECT_EQ(got[2], "four five ");  // "three " + "four five " would exceed 10
  EXPECT_EQ(got[3], "five six");
}

TEST(SplitRecursive, RandomProperties) {
  std::mt19937 rng(12345);
  for (int iter = 0; iter < 60; ++iter) {
    const std::string s = random_text(rng, 1 + iter * 13);
    for (size_t size : k_sizes) {
      const auto base = tx::split_recursive(s, size, 0);
      check_contiguous(s, base, size);
      EXPECT_EQ(base, tx::split_recursive(s, size, 0));  // deterministic
      if (size >= 2) {
        for (size_t overlap : {size_t{1}, size / 2, size - 1}) {
          const auto ov = tx::split_recursive(s, size, overlap);
          check_overlapping(s, ov, size);
          // Overlap only moves starts back: same ends, same count.
          ASSERT_EQ(ov.size(), base.size());
          for (size_t k = 0; k < ov.size(); ++k) {
            EXPECT_EQ(ov[k].end, base[k].end);
            EXPECT_LE(ov[k].begin, base[k].begin);
          }
        }
      }
    }
  }
}

TEST(SplitRecursive, InvalidUtf8NeverLoops) {
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int iter = 0; iter < 200; ++iter) {
    std::string s;
    for (int i = 0; i < 64; ++i) s.push_back(static_cast<char>(byte(rng)));
    const auto spans = tx::split_recursive(s, 5, 2);
    ASSERT_FALSE(spans.empty());
    EXPECT_EQ(spans.back().end, s.size());
    const auto base = tx::split_recursive(s, 5, 0);
    std::string joined;
    for (const Span& sp : base) joined += slice(s, sp);
    EXPECT_EQ(joined, s);
  }
}

TEST(SplitRecursive, KjvProperties) {
  const std::string& text = kjv_text();
  if (text.empty()) GTEST_SKIP() << "KJV corpus missing under " SLUICE_SOURCE_DIR;
  for (size_t size : k_sizes) {
    const std::string_view t = size == 1 ? std::string_view(text).substr(0, 50'000) : text;
    const auto base = tx::split_recursive(t, size, 0);
    check_contiguous(t, base, size);
    EXPECT_EQ(base, tx::split_recursive(t, size, 0));
    if (size >= 2) {
      const size_t overlap = std::max<size_t>(1, size / 5);
      const auto ov = tx::split_recursive(t, size, overlap);
      const size_t overlapping = check_overlapping(t, ov, size);
      if (size >= 50) {
        EXPECT_GT(overlapping, ov.size() / 2) << "overlap should usually apply";
      }
    }
  }
}

// ---- split_sentences ---------------------------------------------------------------------------

TEST(SplitSentences, HandCases) {
  using V = std::vector<std::string>;
  const std::string t = "A b. C d! E f?";
  EXPECT_EQ(texts_of(t, tx::split_sentences(t, 10, 0)), (V{"A b. C d! ", "E f?"}));
  EXPECT_EQ(texts_of(t, tx::split_sentences(t, 10, 5)), (V{"A b. C d! ", "C d! E f?"}));
  EXPECT_EQ(texts_of(t, tx::split_sentences(t, 5, 0)), (V{"A b. ", "C d! ", "E f?"}));
  EXPECT_EQ(texts_of(t, tx::split_sentences(t, 100, 0)), (V{t}));
  EXPECT_TRUE(tx::split_sentences("", 10, 0).empty());
  // Closing quotes stay with their sentence; decimals do not end sentences.
  const std::string q = "He said \"Go.\" Pi is 3.14 ok. End";
  EXPECT_EQ(texts_of(q, tx::split_sentences(q, 16, 0)),
            (V{"He said \"Go.\" ", "Pi is 3.14 ok. ", "End"}));
  const std::string q2 = "\u201CYes!\u201D she said. Then";
  EXPECT_EQ(texts_of(q2, tx::split_sentences(q2, 10, 0)),
            (V{"\u201CYes!\u201D ", "she said. ", "Then"}));
  // Blank lines end sentences.
  const std::string b = "Title\n  \nBody text";
  EXPECT_EQ(texts_of(b, tx::split_sentences(b, 12, 0)), (V{"Title\n  \n", "Body text"}));
  // A long sentence is split recursively into chunks of its own.
  const std::string l = "Hi. aaaa bbbb cccc. Yo.";
  EXPECT_EQ(texts_of(l, tx::split_sentences(l, 6, 0)),
            (V{"Hi. ", "aaaa ", "bbbb ", "cccc. ", "Yo."}));
}

// Reference sentence ends, written the slow obvious way.
std::set<size_t> reference_sentence_ends(std::string_view s) {
  auto ws = [](char c) {
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
  };
  std::set<size_t> ends;
  for (size_t i = 0; i < s.size(); ++i) {
    size_t j = std::string_view::npos;
    if (s[i] == '.' || s[i] == '!' || s[i] == '?') {
      size_t k = i + 1;
      while (true) {
        if (k < s.size() && std::string_view(")]}\"'").find(s[k]) != std::string_view::npos) {
          ++k;
        } else if (s.substr(k, 3) == "\u201D" || s.substr(k, 3) == "\u2019") {
          k += 3;
        } else if (s.substr(k, 2) == "\u00BB") {
          k += 2;
        } else {
          break;
        }
      }
      if (k < s.size() && ws(s[k])) j = k;
    } else if (s[i] == '\n') {
      size_t k = i + 1;
      while (k < s.size() && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) ++k;
      if (k < s.size() && s[k] == '\n') j = k;
    }
    if (j != std::string_view::npos) {
      while (j < s.size() && ws(s[j])) ++j;
      ends.insert(j);
    }
  }
  ends.insert(s.size());
  return ends;
}

void check_sentence_ends(std::string_view s, const std::vector<Span>& spans, size_t size) {
  const std::set<size_t> ends = reference_sentence_ends(s);
  for (const Span& sp : spans) {
    if (ends.count(sp.end)) continue;
    // Otherwise the span must be a piece of one over-long sentence.
    auto it = ends.lower_bound(sp.end);
    ASSERT_NE(it, ends.end());
    const size_t sent_end = *it;
    const size_t sent_begin = it == ends.begin() ? 0 : *std::prev(it);
    EXPECT_LE(sent_begin, sp.begin);
    EXPECT_GT(tx::count_code_points(s.substr(sent_begin, sent_end - sent_begin)), size)
        << "span ends mid-sentence though the sentence fits";
  }
}

TEST(SplitSentences, RandomProperties) {
  std::mt19937 rng(777);
  for (int iter = 0; iter < 60; ++iter) {
    const std::string s = random_text(rng, 1 + iter * 13);
    for (size_t size : k_sizes) {
      const auto base = tx::split_sentences(s, size, 0);
      check_contiguous(s, base, size);
      check_sentence_ends(s, base, size);
      EXPECT_EQ(base, tx::split_sentences(s, size, 0));
      if (size >= 2) {
        for (size_t overlap : {size_t{1}, size / 2, size - 1}) {
          const auto ov = tx::split_sentences(s, size, overlap);
          check_overlapping(s, ov, size);
          check_sentence_ends(s, ov, size);
        }
      }
    }
  }
}

TEST(SplitSentences, KjvProperties) {
  const std::string& text = kjv_text();
  if (text.empty()) GTEST_SKIP() << "KJV corpus missing under " SLUICE_SOURCE_DIR;
  for (size_t size : k_sizes) {
    const std::string_view t = size <= 2 ? std::string_view(text).substr(0, 50'000) : text;
    const auto base = tx::split_sentences(t, size, 0);
    check_contiguous(t, base, size);
    EXPECT_EQ(base, tx::split_sentences(t, size, 0));
    if (size >= 2) {
      const auto ov = tx::split_sentences(t, size, size / 4);
      const size_t overlapping = check_overlapping(t, ov, size);
      if (size >= 500) {
        EXPECT_GT(overlapping, ov.size() / 4);  // verses are often longer than the overlap
      }
    }
  }
}

// ---- HTML --------------------------------------------------------------------------------------

// ---- split_markdown ----

std::vector<std::string> md_chunks(std::string_view text, size_t size, size_t overlap = 0,
                                   std::vector<std::string>* headings = nullptr) {
  std::vector<std::string> out;
  for (const auto& s : tx::split_markdown(text, size, overlap)) {
    out.push_back(slice(text, s.span));
    if (headings) headings->push_back(s.heading);
  }
  return out;
}

TEST(SplitMarkdown, HeadingsBeginChunksAndSetTheirPath) {
  std::vector<std::string> h;
  auto c = md_chunks("# Tool\n\nIntro.\n\n## Install\n\n### From source\n\nRun make.\n\n"
                     "## Use\n\nCall it.\n",
                     1000, 0, &h);
  ASSERT_EQ(c.size(), 3u) << "the heading-only Install section is left out";
  EXPECT_EQ(c[0], "# Tool\n\nIntro.");
  EXPECT_EQ(c[1], "### From source\n\nRun make.");
  EXPECT_EQ(c[2], "## Use\n\nCall it.");
  EXPECT_EQ(h, (std::vector<std::string>{"Tool", "Tool > Install > From source", "Tool > Use"}));
  // A # inside a fence is code, not a heading.
  h.clear();
  c = md_chunks("# A\n\n```sh\n# comment\nls\n```\n", 1000, 0, &h);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(h[0], "A");
}

TEST(SplitMarkdown, FencesAndTablesThatFitAreNeverSplit) {
  std::string fence = "```cpp\n";
  for (int i = 0; i < 12; ++i)
    fence += "int v" + std::to_string(i) + " = " + std::to_string(i) + ";\n";
  fence += "```";
  const std::string table = "| k | v |\n|---|---|\n| a | 1 |\n| b | 2 |";
  const std::string para(120, 'w');
  const std::string text = para + "\n\n" + fence + "\n\n" + para + "\n\n" + table + "\n\n" + para;
  for (size_t size : {size_t{200}, size_t{260}, size_t{400}}) {
    auto c = md_chunks(text, size);
    size_t with_fence = 0, with_table = 0;
    for (const auto& chunk : c) {
      EXPECT_LE(tx::count_code_points(chunk), size);
      with_fence += chunk.find(fence) != std::string::npos;
      with_table += chunk.find(table) != std::string::npos;
      // No chunk holds part of a fence: its ``` lines come in pairs.
      size_t ticks = 0;
      for (size_t at = chunk.find("```"); at != std::string::npos; at = chunk.find("```", at + 3))
        ++ticks;
      EXPECT_EQ(ticks % 2, 0u) << chunk;
    }
    EXPECT_EQ(with_fence, 1u) << "size " << size;
    EXPECT_EQ(with_table, 1u) << "size " << size;
  }
  // A fence longer than a chunk is split between its lines.
  for (const auto& chunk : md_chunks(fence, 60)) {
    EXPECT_LE(tx::count_code_points(chunk), 60u);
    EXPECT_NE(chunk.back(), '\n');
  }
}

TEST(SplitMarkdown, NoDanglingSeparatorsAndOverlapStartsAtAWord) {
  std::string text = "# Title\n\n";
  for (int p = 0; p < 8; ++p) {
    for (int w = 0; w < 25; ++w) text += "word" + std::to_string(p * 100 + w) + " ";
    text += "end.\n\n";
  }
  text += "## Next\n\n";
  for (size_t overlap : {size_t{0}, size_t{40}}) {
    const auto spans = tx::split_markdown(text, 300, overlap);
    ASSERT_GT(spans.size(), 3u);
    size_t prev_begin = 0, overlapped = 0;
    for (size_t k = 0; k < spans.size(); ++k) {
      const std::string c = slice(text, spans[k].span);
      ASSERT_FALSE(c.empty());
      EXPECT_LE(tx::count_code_points(c), 300u);
      EXPECT_FALSE(std::isspace(static_cast<unsigned char>(c.front()))) << c;
      EXPECT_FALSE(std::isspace(static_cast<unsigned char>(c.back()))) << c;
      EXPECT_NE(c.back(), '#') << c;
      if (k > 0) {
        EXPECT_GT(spans[k].span.begin, prev_begin);
      }
      prev_begin = spans[k].span.begin;
      if (k > 0 && spans[k].span.begin < spans[k - 1].span.end) {
        ++overlapped;
        // It starts at a word: the byte before is whitespace.
        EXPECT_TRUE(std::isspace(static_cast<unsigned char>(text[spans[k].span.begin - 1])));
      }
    }
    if (overlap == 0) {
      EXPECT_EQ(overlapped, 0u);
    } else {
      EXPECT_GT(overlapped, 0u);
    }
    EXPECT_EQ(slice(text, spans.back().span).find("## Next"), std::string::npos)
        << "the empty last section is left out";
  }
}

TEST(SplitMarkdown, RandomTextKeepsTheContract) {
  std::mt19937 rng(777);
  static const std::vector<std::string> extra{"# h\n",   "\n## sub\n",  "```\n",
                                              "\n```\n", "| a | b |\n", "~~~~\n"};
  for (int iter = 0; iter < 80; ++iter) {
    std::string s = random_text(rng, 1 + iter * 7);
    for (int k = 0; k < iter % 5; ++k)
      s.insert(std::min(s.size(), size_t(rng() % (s.size() + 1))), extra[rng() % extra.size()]);
    s = tx::sanitize_utf8(s);
    for (size_t size : k_sizes) {
      for (size_t overlap : {size_t{0}, size / 2}) {
        size_t prev = 0;
        bool first = true;
        for (const auto& m : tx::split_markdown(s, size, overlap)) {
          ASSERT_LT(m.span.begin, m.span.end);
          ASSERT_LE(m.span.end, s.size());
          EXPECT_LE(tx::count_code_points(s.substr(m.span.begin, m.span.end - m.span.begin)), size);
          EXPECT_TRUE(tx::is_boundary(s, m.span.begin) && tx::is_boundary(s, m.span.end));
          if (!first) {
            EXPECT_GT(m.span.begin, prev);
          }
          prev = m.span.begin;
          first = false;
        }
      }
    }
  }
}

TEST(Html, Footnotes) {
  EXPECT_EQ(
      tx::html_to_text("<p>Hello <i class=\"footnote\">note with <i>nested</i> tags</i>world</p>"),
      "Hello world");
  EXPECT_EQ(tx::html_to_text("In the beginning<sup class=\"footnote-marker\">a</sup> God"),
            "In the beginning God");
  EXPECT_EQ(tx::html_to_text("a<span class='x footnote'>n<span>1</span>2</span>b<span>c</span>"),
            "abc");
  EXPECT_EQ(tx::html_to_text("a <i class=footnote>x<i>y</i>z</i> b <i>kept</i>"), "a b kept");
  EXPECT_EQ(tx::html_to_text("a <i class=\"footnotes-list\">kept</i>"), "a kept");
  EXPECT_EQ(tx::html_to_text("a <i class=\"footnote\">unclosed <i>x</i> rest"), "a");
}

TEST(Html, Entities) {
  EXPECT_EQ(tx::html_to_text("&amp; &lt; &gt; &quot; &apos; &#65;&#x42;&#X43;"), "& < > \" ' ABC");
  EXPECT_EQ(tx::html_to_text("x&nbsp;y&thinsp;z"), "x\u00A0y\u2009z");
  EXPECT_EQ(tx::decode_entities("&ndash;&mdash;&lsquo;&rsquo;&ldquo;&rdquo;&hellip;&copy;&reg;"),
            "\u2013\u2014\u2018\u2019\u201C\u201D\u2026\u00A9\u00AE");
  EXPECT_EQ(tx::decode_entities("&shy;&zwj;&zwnj;&lrm;&rlm;&ensp;&emsp;"),
            "\u00AD\u200D\u200C\u200E\u200F\u2002\u2003");
  EXPECT_EQ(tx::decode_entities("&bogus; &amp &#xZZ; &#; &#0; &#xD800; &#x110000; & &#12"),
            "&bogus; &amp &#xZZ; &#; &#0; &#xD800; &#x110000; & &#12");
  EXPECT_EQ(tx::decode_entities("&#128512;&#x1F600;"), "\U0001F600\U0001F600");
  EXPECT_EQ(tx::decode_entities("&amp;lt;"), "&lt;");  // decoded once only
  EXPECT_EQ(tx::decode_entities("a < b"), "a < b");
}

TEST(Html, DroppedElements) {
  EXPECT_EQ(tx::html_to_text("a<script>if (a<b) { s = '</div>'; }</script>b"), "ab");
  EXPECT_EQ(tx::html_to_text("a<SCRIPT type=x>x</ScRiPt >b<style>p{}</style>c"), "abc");
  EXPECT_EQ(tx::html_to_text("<html><head><title>T</title><meta x=1></head><body>x</body></html>"),
            "x");
  EXPECT_EQ(tx::html_to_text("<head><title>T</title><body>y"), "y");  // no </head>
  EXPECT_EQ(tx::html_to_text("a<!-- <p>gone</p> -->b<!DOCTYPE html>c"), "abc");
  EXPECT_EQ(tx::html_to_text("a<script>never closed"), "a");
}

TEST(Html, Whitespace) {
  EXPECT_EQ(tx::html_to_text("<div>a</div><div>b</div>"), "a\nb");
  EXPECT_EQ(tx::html_to_text("a<br>b<br/>c<BR />d"), "a\nb\nc\nd");
  EXPECT_EQ(tx::html_to_text("<p>a</p>\n\n\n\n<p>b</p>"), "a\n\nb");
  EXPECT_EQ(tx::html_to_text("  a   \t b  "), "a b");
  EXPECT_EQ(tx::html_to_text("a  \n  b"), "a\nb");
  EXPECT_EQ(tx::html_to_text("<h2>T</h2><ul><li>x</li><li>y</li></ul>"), "T\nx\ny");
  EXPECT_EQ(tx::html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>"),
            "a b\nc");
  EXPECT_EQ(tx::html_to_text("a<b>b</b>c <a href=\"x>y\">link</a>"), "abc link");
  EXPECT_EQ(tx::html_to_text("\n\n  "), "");
}

TEST(Html, Malformed) {
  EXPECT_EQ(tx::html_to_text("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2");
  EXPECT_EQ(tx::html_to_text("a<"), "a<");
  EXPECT_EQ(tx::html_to_text("<"), "<");
  EXPECT_EQ(tx::html_to_text("&"), "&");
  EXPECT_EQ(tx::html_to_text("&#"), "&#");
  EXPECT_EQ(tx::html_to_text("&#x"), "&#x");
  EXPECT_EQ(tx::html_to_text("x <a href=\"y"), "x");
  EXPECT_EQ(tx::html_to_text("x <a title=\"y>z"), "x z");  // unclosed quote: tag ends at first '>'
  EXPECT_EQ(tx::html_to_text("x<!--"), "x");
  EXPECT_EQ(tx::html_to_text("don't <p don't>stop"), "don't stop");
}

TEST(Html, FuzzNeverCrashes) {
  std::mt19937 rng(2024);
  static const std::vector<std::string> frags{"<",
                                              ">",
                                              "&",
                                              ";",
                                              "#",
                                              "x",
                                              "/",
                                              "\"",
                                              "'",
                                              "=",
                                              " ",
                                              "\n",
                                              "a",
                                              "i",
                                              "p",
                                              "br",
                                              "div",
                                              "script",
                                              "style",
                                              "head",
                                              "class",
                                              "footnote",
                                              "<i class=\"footnote\">",
                                              "</i>",
                                              "<i>",
                                              "&amp",
                                              "&#x",
                                              "&#1",
                                              "<!--",
                                              "-->",
                                              "<!",
                                              "\xC3",
                                              "\xA9",
                                              "\xFF",
                                              "</",
                                              "<sup class=footnote-marker>"};
  std::uniform_int_distribution<size_t> pick(0, frags.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const int len = iter % 80;
    for (int i = 0; i < len; ++i) {
      if (iter % 3 == 0) s.push_back(static_cast<char>(byte(rng)));
      else s += frags[pick(rng)];
    }
    const std::string out = tx::html_to_text(s);
    EXPECT_LE(out.size(), s.size() * 2 + 4);
    if (!out.empty()) {
      EXPECT_NE(out.front(), ' ');
      EXPECT_NE(out.front(), '\n');
      EXPECT_NE(out.back(), ' ');
      EXPECT_NE(out.back(), '\n');
    }
    EXPECT_EQ(out.find("\n\n\n"), std::string::npos);
    EXPECT_EQ(out.find("  "), std::string::npos);
    (void)tx::decode_entities(s);
  }
}

TEST(Html, LinearTimeOnAdversarialInput) {
  // Each pattern would take seconds if the scanner restarted a search per '<', '&' or quote.
  const std::vector<std::string> patterns{
      "<a x=\"", "<a ", "&#", "&amp", "<!-", "<i class=footnote>", "<a x='", "</", "<script"};
  for (const auto& pat : patterns) {
    std::string s;
    while (s.size() < 400'000) s += pat;
    const auto t0 = std::chrono::steady_clock::now();
    (void)tx::html_to_text(s);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(secs, 2.0) << "pattern " << pat;
  }
}

// ---- hash --------------------------------------------------------------------------------------

TEST(Hash, PinnedValues) {
  // Pinned once: these values are persisted by users (sharding, dedup), they must never change.
  EXPECT_EQ(tx::stable_hash64(""), 0x0409638ee2bde459ULL);
  EXPECT_EQ(tx::stable_hash64("a"), 0x28d2053309d28531ULL);
  EXPECT_EQ(tx::stable_hash64("abc"), 0x02a4f1d7cb516c72ULL);
  EXPECT_EQ(tx::stable_hash64("hello world"), 0x668d5e431c3b2573ULL);
  EXPECT_EQ(tx::stable_hash64("The quick brown fox jumps over the lazy dog"),
            0x6303b3bade45a571ULL);
  EXPECT_EQ(tx::stable_hash64(std::string(100, 'x')), 0xfc0f0b62222f49c5ULL);
  EXPECT_EQ(tx::stable_hash64("abc", 42), 0x729d41f062dc5b37ULL);
}

TEST(Hash, SeedsAndBitsMatter) {
  std::set<uint64_t> seen;
  std::string s;
  for (int len = 0; len < 200; ++len) {
    EXPECT_TRUE(seen.insert(tx::stable_hash64(s)).second) << "collision at length " << len;
    EXPECT_NE(tx::stable_hash64(s, 1), tx::stable_hash64(s, 2));
    EXPECT_EQ(tx::stable_hash64(s, 5), tx::stable_hash64(std::string(s), 5));
    s.push_back(static_cast<char>('a' + len % 26));
  }
  const std::string base(64, 'q');
  const uint64_t h = tx::stable_hash64(base);
  for (size_t bit = 0; bit < base.size() * 8; ++bit) {
    std::string m = base;
    m[bit / 8] = static_cast<char>(m[bit / 8] ^ (1 << (bit % 8)));
    EXPECT_NE(tx::stable_hash64(m), h) << bit;
  }
}

}  // namespace

// engine/float16.hpp: every half survives a trip through float, and float to half rounds as the
// compiler's own _Float16 conversion does (nearest, ties to even), edge cases pinned by hand.
TEST(Float16, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    float f = sluice::half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(sluice::half_to_float(sluice::float_to_half(f)))) << h;
      continue;
    }
    EXPECT_EQ(sluice::float_to_half(f), h) << h;
  }
}

TEST(Float16, RoundsToNearestEvenAndSaturatesToInfinity) {
  using sluice::float_to_half;
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);  // the largest half
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);  // below the midpoint to 65536
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // the midpoint, ties to even: infinity
  EXPECT_EQ(float_to_half(1e9f), 0x7c00);
  EXPECT_EQ(float_to_half(-INFINITY), 0xfc00);
  EXPECT_EQ(float_to_half(0x1p-24f), 0x0001);         // the smallest subnormal
  EXPECT_EQ(float_to_half(0x1p-25f), 0x0000);         // half of it: tie, to even (zero)
  EXPECT_EQ(float_to_half(0x1.8p-24f), 0x0002);       // 1.5 steps: tie, to even (2)
  EXPECT_EQ(float_to_half(1.0f + 0x1p-11f), 0x3c00);  // tie between 1 and its successor: even
  EXPECT_EQ(float_to_half(1.0f + 0x1.8p-10f), 0x3c02);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
}

#if defined(__FLT16_MAX__)
TEST(Float16, MatchesTheCompilersConversionOnRandomFloats) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    // Half the draws are arbitrary bit patterns, half near the half range where rounding is subtle.
    uint32_t x = bits(rng);
    if (i & 1) x = (x & 0x807fffffu) | ((100u + x % 50u) << 23);
    float f = std::bit_cast<float>(x);
    if (std::isnan(f)) continue;
    _Float16 ref = static_cast<_Float16>(f);
    ASSERT_EQ(sluice::float_to_half(f), std::bit_cast<uint16_t>(ref)) << std::hexfloat << f;
  }
}
#endif

// engine/vector/dot.hpp: a float32 and a float16 vector of the same values give bit for bit the
// same inner product (a graph held in halves finds what one read in floats finds), at any length
// and alignment, close to a double-precision sum; halves_exactly refuses what halves would change.
TEST(Dot, FloatsAndHalvesOfTheSameValuesGiveTheSameProduct) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (size_t dim : {1u, 7u, 8u, 9u, 31u, 32u, 33u, 64u, 100u, 256u, 300u, 1536u}) {
    std::vector<float> q(dim), v(dim);
    for (size_t i = 0; i < dim; ++i) {
      q[i] = normal(rng);
      v[i] = sluice::half_to_float(sluice::float_to_half(normal(rng)));  // a half exactly
    }
    std::vector<uint16_t> h(dim);
    ASSERT_TRUE(sluice::halves_exactly(v.data(), h.data(), dim)) << dim;
    for (size_t i = 0; i < dim; ++i) ASSERT_EQ(sluice::half_to_float(h[i]), v[i]) << i;
    double want = 0, scale = 0;
    for (size_t i = 0; i < dim; ++i) {
      want += static_cast<double>(q[i]) * v[i];
      scale += std::abs(static_cast<double>(q[i]) * v[i]);
    }
    // Unaligned copies: the stored vectors sit at any offset in a node.
    std::vector<unsigned char> f_bytes(dim * 4 + 3), h_bytes(dim * 2 + 1);
    std::memcpy(f_bytes.data() + 3, v.data(), dim * 4);
    std::memcpy(h_bytes.data() + 1, h.data(), dim * 2);
    // The loops this CPU runs, and the portable ones (each pair agrees with itself).
    for (bool portable : {false, true}) {
      const float by_floats =
          portable ? sluice::detail::dot_f32_portable(q.data(), f_bytes.data() + 3, dim)
                   : sluice::dot_f32(q.data(), f_bytes.data() + 3, dim);
      const float by_halves =
          portable ? sluice::detail::dot_f16_portable(q.data(), h_bytes.data() + 1, dim)
                   : sluice::dot_f16(q.data(), h_bytes.data() + 1, dim);
      EXPECT_EQ(std::bit_cast<uint32_t>(by_floats), std::bit_cast<uint32_t>(by_halves))
          << dim << " portable " << portable;
      EXPECT_NEAR(by_floats, want, 1e-5 * scale + 1e-6) << dim << " portable " << portable;
    }
  }
}

TEST(Dot, HalvesExactlyRefusesValuesThatWouldRound) {
  for (auto exactly : {&sluice::halves_exactly, &sluice::detail::halves_exactly_portable}) {
    std::vector<uint16_t> h(43);
    std::vector<float> v(43, 0.5f);
    EXPECT_TRUE(exactly(v.data(), h.data(), v.size()));
    for (size_t at : {0u, 5u, 8u, 39u, 40u, 42u}) {  // in vector lanes and in the tail of 3
      for (float bad : {0.1f, 1e-9f, 1e6f, std::numeric_limits<float>::quiet_NaN()}) {
        std::vector<float> w = v;
        w[at] = bad;
        EXPECT_FALSE(exactly(w.data(), h.data(), w.size())) << at << " " << bad;
      }
    }
    const float inf = std::numeric_limits<float>::infinity();  // a half too
    std::vector<float> w = {inf, -inf, 0.0f, -0.0f, 65504.0f, 0x1p-24f, -0.25f, 1.5f, 2048.0f};
    ASSERT_TRUE(exactly(w.data(), h.data(), w.size()));
    for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(sluice::half_to_float(h[i]), w[i]) << i;
  }
}
