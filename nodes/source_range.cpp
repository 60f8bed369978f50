#include "nodes/source_range.hpp"

#include <array>
#include <cstdio>

namespace sluice {

namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 1,024 pronounceable words built once from syllables; word frequencies are skewed (Zipf-like)
// by drawing from the front of the table more often, as in real text.
const std::array<std::string, 1024>& words() {
  static const std::array<std::string, 1024> table = [] {
    static const char* syl[] = {"ka",  "lo",  "mi",  "ren", "to",  "sa", "vel", "do",
                                "ni",  "mar", "te",  "qu",  "ab",  "ol", "is",  "un",
                                "per", "gra", "che", "fi",  "nor", "ze", "wan", "ly",
                                "an",  "be",  "co",  "de",  "ex",  "ha", "in",  "ju"};
    std::array<std::string, 1024> t;
    uint64_t s = 42;
    for (auto& w : t) {
      int n = 1 + static_cast<int>(splitmix64(s) % 3);
      for (int i = 0; i < n; ++i) w += syl[splitmix64(s) % 32];
    }
    return t;
  }();
  return table;
}

class RangeSource final : public Source {
 public:
  explicit RangeSource(const NodeInit& init)
      : _count(static_cast<uint64_t>(init.params.integer("count"))),
        _size(static_cast<size_t>(init.params.integer("size"))),
        _seed(static_cast<uint64_t>(init.params.integer("seed"))) {}

  std::optional<uint64_t> total() const override { return _count; }

  RecordPtr next() override {
    char id[32];
    for (;; ++_next) {
      if (_next >= _count) return nullptr;
      std::snprintf(id, sizeof id, "range-%08llu", static_cast<unsigned long long>(_next));
      if (wanted(id)) break;
    }
    auto r = std::make_shared<Record>();
    r->id = r->doc_id = id;
    r->text = range_text(_seed, _next, _size);
    ++_next;
    return r;
  }

 private:
  uint64_t _count;
  size_t _size;
  uint64_t _seed;
  uint64_t _next = 0;
};

}  // namespace

std::string range_text(uint64_t seed, uint64_t index, size_t size) {
  const auto& w = words();
  // Mixed once: splitmix64 steps its state by a fixed constant, so unmixed states one step apart
  // (index, index + 1) made every document its neighbour's text shifted by one word, and a
  // corpus of 116,588 chunks held 22,429 distinct texts.
  uint64_t s = seed * 0x100000001B3ull ^ (index + 1) * 0x9E3779B97F4A7C15ull;
  s = splitmix64(s);
  std::string out;
  out.reserve(size + 32);
  int in_sentence = 0, sentence_len = 8, in_para = 0;
  while (out.size() < size) {
    uint64_t r = splitmix64(s);
    // Square the uniform draw to favour low indices.
    uint64_t u = r & 1023;
    const std::string& word = w[(u * u) >> 10];
    if (out.size() + word.size() + 2 > size) break;
    if (in_sentence == 0 && !out.empty()) {
      out += (++in_para % 5 == 0) ? "\n\n" : " ";
    }
    size_t start = out.size();
    out += word;
    if (in_sentence == 0) out[start] = static_cast<char>(out[start] - 'a' + 'A');
    if (++in_sentence >= sentence_len) {
      out += '.';
      in_sentence = 0;
      sentence_len = 6 + static_cast<int>((r >> 20) % 14);
    } else {
      out += ' ';
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

NodeTypeInfo source_range_info() {
  NodeTypeInfo info;
  info.type = "source.range";
  info.role = NodeRole::source;
  info.description =
      "Synthetic documents of word-like text (deterministic for a seed) for benchmarks and tests. "
      "Ids range-00000000, range-00000001, ...";
  info.params = {
      with_min(param("count", ParamType::integer, "1000", "number of documents"), 0),
      with_min(param("size", ParamType::integer, "2000", "bytes of text per document"), 1),
      param("seed", ParamType::integer, "0", "seed; the same seed gives the same text"),
  };
  info.make_source = [](const NodeInit& init) { return std::make_unique<RangeSource>(init); };
  return info;
}

}  // namespace sluice
