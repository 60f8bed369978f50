// The sim's generated content: deterministic word-like text, titles and document ids, the same
// for the same seed on every run. Shared by the sim/ sources and by nothing else.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "sim/wire.hpp"

namespace sluice::sim {

constexpr std::string_view kWords[] = {
    "the",     "river",  "stone",   "light",    "water",  "house",   "garden",  "road",
    "city",    "market", "quiet",   "north",    "winter", "summer",  "bright",  "silver",
    "ancient", "small",  "window",  "bread",    "letter", "morning", "evening", "field",
    "bridge",  "harbor", "forest",  "mountain", "valley", "lantern", "story",   "people",
    "friend",  "travel", "engine",  "signal",   "paper",  "record",  "measure", "season",
    "harvest", "cloud",  "thunder", "candle",   "mirror", "and",     "of",      "in",
    "under",   "over",   "with",    "from",     "toward", "beyond",  "a",       "every",
    "many",    "some",   "slowly",  "softly",   "again",  "always",  "never",   "keeps",
    "carries", "finds",  "holds",   "turns",    "waits",  "returns", "builds",  "opens"};
constexpr size_t kWordCount = sizeof(kWords) / sizeof(kWords[0]);

// Appends exactly n bytes of ASCII word-like text (sentences, no JSON-special characters).
inline void gen_text(std::string& out, uint64_t state, size_t n) {
  size_t start = out.size();
  size_t target = start + n;
  int left_in_sentence = 0;
  while (out.size() < target) {
    if (left_in_sentence == 0) left_in_sentence = 6 + int(splitmix64(state) % 10);
    std::string_view w = kWords[splitmix64(state) % kWordCount];
    size_t pos = out.size();
    out.append(w);
    bool first = pos == start || out[pos - 2] == '.';
    if (first) out[pos] = char(out[pos] - 32);
    if (--left_in_sentence == 0) out.push_back('.');
    out.push_back(' ');
  }
  out.resize(target);
  if (n > 0 && out.back() == ' ') out.back() = '.';
}

inline void gen_title(std::string& out, uint64_t state, uint64_t n) {
  out.append("Document ");
  append_uint(out, n);
  out.push_back(':');
  int words = 2 + int(splitmix64(state) % 4);
  for (int i = 0; i < words; ++i) {
    out.push_back(' ');
    size_t pos = out.size();
    out.append(kWords[splitmix64(state) % kWordCount]);
    out[pos] = char(out[pos] - 32);
  }
}

inline void format_doc_id(std::string& out, uint64_t n) {
  char buf[32];
  int len = std::snprintf(buf, sizeof buf, "doc-%06llu", static_cast<unsigned long long>(n));
  out.append(buf, size_t(len));
}

}  // namespace sluice::sim
