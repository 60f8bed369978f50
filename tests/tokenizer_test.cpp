// The byte-pair encoder (engine/text/tokenizer.hpp): merge order on a small made-up vocabulary
// against a naive reference; the real encodings against js-tiktoken (run with node) on a corpus;
// chunkers with size_unit tokens: every chunk within size, counted as the reference counts.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>

#include "engine/json/json.hpp"
#include "engine/text/measure.hpp"
#include "engine/text/tokenizer.hpp"
#include "sim/sim.hpp"
#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using text::Tokenizer;

std::string b64(std::string_view s) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    const uint32_t v = (static_cast<unsigned char>(s[i]) << 16) |
                       (static_cast<unsigned char>(s[i + 1]) << 8) |
                       static_cast<unsigned char>(s[i + 2]);
    for (int k2 = 18; k2 >= 0; k2 -= 6) out += k[(v >> k2) & 63];
  }
  if (i + 1 == s.size()) {
    const uint32_t v = static_cast<unsigned char>(s[i]) << 16;
    out += k[(v >> 18) & 63];
    out += k[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == s.size()) {
    const uint32_t v =
        (static_cast<unsigned char>(s[i]) << 16) | (static_cast<unsigned char>(s[i + 1]) << 8);
    out += k[(v >> 18) & 63];
    out += k[(v >> 12) & 63];
    out += k[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// Every byte (ranks 0..255), then `merges` ranked in order: a .tiktoken file.
std::string tiktoken_file(const std::vector<std::string>& merges) {
  std::string f;
  for (int b = 0; b < 256; ++b)
    f += b64(std::string(1, static_cast<char>(b))) + " " + std::to_string(b) + "\n";
  for (size_t i = 0; i < merges.size(); ++i)
    f += b64(merges[i]) + " " + std::to_string(256 + i) + "\n";
  return f;
}

// tiktoken's merge, written the plain way: merge the lowest-ranked adjacent pair (leftmost on
// ties) until none is a token.
std::vector<uint32_t> naive_bpe(const std::string& piece,
                                const std::map<std::string, uint32_t>& r) {
  std::vector<std::string> parts;
  for (char c : piece) parts.emplace_back(1, c);
  for (;;) {
    size_t best = parts.size();
    uint32_t best_rank = UINT32_MAX;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = r.find(parts[i] + parts[i + 1]);
      if (it != r.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best == parts.size()) break;
    parts[best] += parts[best + 1];
    parts.erase(parts.begin() + static_cast<long>(best) + 1);
  }
  std::vector<uint32_t> ids;
  for (const auto& p : parts) ids.push_back(r.at(p));
  return ids;
}

TEST(Tokenizer, MergesLowestRankFirstLeftmostOnTiesShortAndLongPieces) {
  const std::vector<std::string> merges = {"ab", "ba",   "aa",   "bab", "abab", "aab",
                                           "bb", "abba", "aaaa", "bbb", "baba"};
  std::map<std::string, uint32_t> ranks;
  for (int b = 0; b < 256; ++b) ranks[std::string(1, static_cast<char>(b))] = b;
  for (size_t i = 0; i < merges.size(); ++i) ranks[merges[i]] = static_cast<uint32_t>(256 + i);
  // A pattern that makes each run of letters one piece: pieces of every length, short ones merged
  // by scanning and long ones (over 96 bytes) through the heap.
  auto tok = Tokenizer::from_ranks("toy", tiktoken_file(merges), "[a-z]+|[^a-z]+");
  EXPECT_EQ(tok->vocabulary(), 256 + merges.size());
  std::mt19937 rng(7);
  for (int round = 0; round < 400; ++round) {
    const size_t len = 1 + rng() % (round < 200 ? 40 : 400);
    std::string s;
    for (size_t i = 0; i < len; ++i) s += (rng() % 3 == 0) ? 'b' : 'a';
    ASSERT_EQ(tok->encode(s), naive_bpe(s, ranks)) << s;
    ASSERT_EQ(tok->count(s), naive_bpe(s, ranks).size());
  }
  // Token ends: strictly increasing, the last at the end.
  std::vector<size_t> ends;
  tok->ends("abab  aab", ends);
  EXPECT_EQ(ends, (std::vector<size_t>{4, 5, 6, 9})) << "abab, two spaces (no merge), aab";
}

TEST(Tokenizer, BadRanksFilesAndNamesAreClearErrors) {
  auto fails = [](std::string_view file, const std::string& want) {
    try {
      Tokenizer::from_ranks("cl100k_base", file);
      ADD_FAILURE() << "no error for " << file.substr(0, 40);
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  fails("YQ== 0\n", "no token for byte 0");
  fails("YQ== x\n", "bad rank on line 1");
  fails("Y!Q== 3\n", "not base64 on line 1");
  fails("nospace\n", "expected \"<base64> <rank>\" on line 1");
  fails("export default {\"pat_str\": \"x\"}", "no \"bpe_ranks\"");
  EXPECT_THROW(Tokenizer::from_ranks("mine", tiktoken_file({})), std::runtime_error)
      << "no pattern in the file and none built in";
  EXPECT_THROW(Tokenizer::from_tokens("toy", {"a", "b"}, "x"), std::runtime_error)
      << "a vocabulary without every byte";
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  try {
    Tokenizer::from_tokens("toy", bytes, "(unclosed");
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("its pattern does not compile"), std::string::npos);
  }
  try {
    Tokenizer::named("../etc/passwd");
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown encoding"), std::string::npos);
  }
  EXPECT_EQ(Tokenizer::encoding_of_model("text-embedding-3-small"), "cl100k_base");
  EXPECT_EQ(Tokenizer::encoding_of_model("text-embedding-004"), "");
}

// ---- against the reference ---------------------------------------------------------------------

std::string ranks_dir() {
  return test::source_dir() + "/data/tokenizers/node_modules/js-tiktoken/dist/ranks";
}

// The real encoding, or a skip outside CI when scripts/setup has not installed it (in CI, a
// failure: the suite runs after setup).
#define NEED_ENCODING(name, var)                                                                   \
  std::shared_ptr<const Tokenizer> var;                                                            \
  try {                                                                                            \
    var = Tokenizer::named(name);                                                                  \
  } catch (const std::runtime_error& e) {                                                          \
    if (std::getenv("CI")) FAIL() << e.what();                                                     \
    GTEST_SKIP() << e.what();                                                                      \
  }                                                                                                \
  if (std::system("node --version >/dev/null 2>&1") != 0) {                                        \
    if (std::getenv("CI")) FAIL() << "node is not installed (scripts/setup installs it)";          \
    GTEST_SKIP() << "node is not installed";                                                       \
  }

// js-tiktoken's ids for each text, through node.
std::vector<std::vector<uint32_t>> reference(const std::string& encoding,
                                             const std::vector<std::string>& texts) {
  test::TempDir dir;
  std::string j = "[";
  for (const auto& t : texts) j += (j.size() > 1 ? "," : "") + json::quoted(t);
  test::write_file(dir / "texts.json", j + "]");
  const std::string cmd = "node " + test::source_dir() + "/tests/tiktoken_reference.mjs " +
                          ranks_dir() + " " + encoding + " " + (dir / "texts.json") + " > " +
                          (dir / "ids.txt");
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::vector<std::vector<uint32_t>> out;
  for (const auto& line : test::read_lines(dir / "ids.txt")) {
    EXPECT_EQ(line.substr(0, 1), "=");
    std::istringstream in(line.substr(1));
    std::vector<uint32_t> ids;
    for (uint32_t id; in >> id;) ids.push_back(id);
    out.push_back(std::move(ids));
  }
  return out;
}

// Real text of many kinds: the project's docs and sources, and the corners of the patterns.
std::vector<std::string> corpus() {
  std::vector<std::string> texts = {
      "",
      "hello world",
      "I'll say it: DON'T, won't, we've, you'd, THEY'RE, it's, O'Neil's",
      "  leading spaces, trailing spaces   ",
      "tabs\tand\r\nCRLF\r\n\r\n\n\n   \n  x",
      "numbers 1 12 123 1234 12345 3.14159 1,000,000 0x1F",
      "<|endoftext|> is ordinary text here <|fim_prefix|>",
      "שלום עולם — בראשית ברא אלהים",
      "你好，世界。日本語のテキストも。한국어 문장.",
      "emoji 🎉🎉🎉 👩‍👩‍👧 flags 🇮🇱🇫🇷 and é vs é (combining)",
      "CamelCaseIdentifiers and snake_case_names, HTTPServerError, iPhone",
      "path/to/file.md https://example.org/a?b=c&d=e#frag",
      "\u00a0non-breaking\u2003em space\u3000ideographic",
      std::string(5000, 'a'),
      std::string(3000, ' ') + "x" + std::string(2000, '\n'),
      "```cpp\nint main() { return 0; }\n```\n| a | b |\n|---|---|\n| 1 | 2 |",
  };
  for (const char* f :
       {"README.md", "docs/ARCHITECTURE.md", "docs/reliability.md", "engine/text/tokenizer.cpp",
        "nodes/document.cpp", "graphs/local-files.json"}) {
    const std::string t = test::read_file(test::source_dir() + "/" + f);
    if (!t.empty()) texts.push_back(t);
  }
  return texts;
}

void expect_reference_ids(const char* encoding) {
  NEED_ENCODING(encoding, tok);
  const auto texts = corpus();
  const auto want = reference(encoding, texts);
  ASSERT_EQ(want.size(), texts.size());
  size_t tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(tok->encode(texts[i]), want[i]) << "text " << i << ": " << texts[i].substr(0, 80);
    EXPECT_EQ(tok->count(texts[i]), want[i].size());
    tokens += want[i].size();
  }
  EXPECT_GT(tokens, 20000u) << "the corpus should be real text";
}

TEST(Tokenizer, Cl100kBaseEqualsTheReference) { expect_reference_ids("cl100k_base"); }
TEST(Tokenizer, O200kBaseEqualsTheReference) { expect_reference_ids("o200k_base"); }

TEST(Tokenizer, MeasureCountsAddUpAndAdvanceStaysWithin) {
  NEED_ENCODING("cl100k_base", tok);
  const std::string t = test::read_file(test::source_dir() + "/README.md") + " 🎉🎉 שלום";
  const text::TokenMeasure m(*tok, t);
  EXPECT_EQ(m.count(0, t.size()), tok->count(t));
  for (size_t cut : {size_t{1}, size_t{100}, t.size() / 2, t.size() - 3})
    EXPECT_EQ(m.count(0, cut) + m.count(cut, t.size()), m.count(0, t.size()));
  for (size_t b = 0; b < t.size(); b += 997) {
    for (size_t n : {size_t{1}, size_t{7}, size_t{300}}) {
      const size_t e = m.advance(b, t.size(), n);
      EXPECT_GT(e, b);
      EXPECT_TRUE(text::is_boundary(t, e));
      if (text::advance_code_points(t, b, 1) < e) {
        EXPECT_LE(m.count(b, e), n);
      }
      const size_t r = m.retreat(b, n, 0);
      EXPECT_LE(m.count(r, b), n);
    }
  }
}

// Chunks of the corpus by each chunker in tokens: every one at most `size` as the reference
// counts it alone, and counted the same by sluice.
TEST(Tokenizer, TokenSizedChunksFitAndCountAsTheReference) {
  NEED_ENCODING("cl100k_base", tok);
  test::TempDir dir;
  std::string in;
  size_t n = 0;
  for (const auto& t : corpus())
    if (!t.empty())
      in += R"({"id": "d)" + std::to_string(n++) + R"(", "text": )" + json::quoted(t) + "}\n";
  test::write_file(dir / "in.jsonl", in);
  for (const char* type : {"chunk.recursive", "chunk.sentence", "chunk.markdown"}) {
    for (int size : {16, 100}) {
      SCOPED_TRACE(std::string(type) + " size " + std::to_string(size));
      const std::string out = dir / (std::string(type) + std::to_string(size) + ".jsonl");
      const RunReport rep = test::run_json(
          R"({"nodes": [{"id": "src", "type": "source.jsonl", "params": {"path": ")" +
          (dir / "in.jsonl") + R"("}},
            {"id": "c", "type": ")" +
          type + R"(", "params": {"size": )" + std::to_string(size) +
          R"(, "overlap": 4, "size_unit": "tokens"}},
            {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
          out + R"("}}],
           "edges": [["src", "c"], ["c", "out"]]})");
      ASSERT_EQ(rep.error, "");
      std::vector<std::string> chunks;
      for (const auto& line : test::read_lines(out)) {
        rapidjson::Document d;
        d.Parse(line.c_str());
        ASSERT_TRUE(d.IsObject() && d.HasMember("text"));
        chunks.emplace_back(d["text"].GetString(), d["text"].GetStringLength());
      }
      ASSERT_GT(chunks.size(), 50u);
      const auto want = reference("cl100k_base", chunks);
      ASSERT_EQ(want.size(), chunks.size());
      size_t over = 0, full = 0;
      for (size_t i = 0; i < chunks.size(); ++i) {
        EXPECT_EQ(tok->count(chunks[i]), want[i].size()) << chunks[i];
        const bool one_char = text::advance_code_points(chunks[i], 0, 1) >= chunks[i].size();
        if (want[i].size() > static_cast<size_t>(size) && !one_char) ++over;
        if (want[i].size() * 2 > static_cast<size_t>(size)) ++full;
      }
      EXPECT_EQ(over, 0u) << "chunks over " << size << " tokens";
      if (std::string(type) == "chunk.recursive") {
        EXPECT_GT(full * 2, chunks.size()) << "most chunks more than half full";
      }
    }
  }
}

// An embedder told its model's encoding counts tokens with it: the report's tokens (Gemini's
// answers carry no usage) are the sum of the inputs' counts.
TEST(Tokenizer, EmbeddersCountTokensInTheModelsEncoding) {
  NEED_ENCODING("cl100k_base", tok);
  test::RunningSim server(sim::SimOptions{});
  test::TempDir dir;
  ::setenv("SLUICE_TEST_GEMINI_KEY", "k", 1);
  const RunReport rep = test::run_json(
      R"({"nodes": [{"id": "docs", "type": "source.range", "params": {"count": 30, "size": 400}},
    {"id": "embed", "type": "embed.gemini", "params": {"base_url": ")" +
      server.url() + R"(/v1beta", "model": "gemini-embedding-001", "encoding": "cl100k_base",
      "max_batch_tokens": 300, "api_key": "${env:SLUICE_TEST_GEMINI_KEY}"}},
    {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
      (dir / "out.jsonl") + R"("}}],
  "edges": [["docs", "embed"], ["embed", "out"]]})");
  ::unsetenv("SLUICE_TEST_GEMINI_KEY");
  ASSERT_EQ(rep.error, "");
  EXPECT_EQ(rep.docs_indexed, 30u);
  uint64_t want = 0, chars = 0, most = 0;
  for (const auto& line : test::read_lines(dir / "out.jsonl")) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    ASSERT_TRUE(d.IsObject() && d.HasMember("text"));
    const uint64_t n =
        tok->count(std::string_view(d["text"].GetString(), d["text"].GetStringLength()));
    want += n;
    most = std::max(most, n);
    chars += d["text"].GetStringLength();
  }
  EXPECT_EQ(rep.tokens, want);
  EXPECT_NE(want, (chars + 3) / 4) << "not the 4-character estimate";
  // Batches close once they hold max_batch_tokens: each full one holds 300 to 300 + a document.
  auto st = server.stats();
  const uint64_t requests =
      st["by_endpoint"]["/v1beta/models/{model}:batchEmbedContents"]["requests"].GetUint64();
  EXPECT_GE(requests, want / (300 + most)) << want << " tokens";
  EXPECT_LE(requests, want / 300 + 5);
}

TEST(Tokenizer, MissingRanksAreAnErrorWithAHint) {
  try {
    Tokenizer::named("no_such_encoding");
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("no ranks for encoding \"no_such_encoding\"; looked at:"), std::string::npos);
    EXPECT_NE(m.find("tokenizers/no_such_encoding.tiktoken"), std::string::npos) << m;
    EXPECT_NE(m.find("scripts/setup"), std::string::npos) << m;
  }
  const std::string errs = test::config_errors(
      R"({"nodes": [{"id": "src", "type": "source.lines", "params": {"path": "/dev/null"}},
          {"id": "c", "type": "chunk.recursive", "params": {"size_unit": "tokens",
           "encoding": "p50k"}}], "edges": [["src", "c"]]})");
  EXPECT_NE(errs.find("cl100k_base"), std::string::npos) << errs;
}

}  // namespace
}  // namespace sluice
