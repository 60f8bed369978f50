// Throughput of the text algorithms on the KJV corpus (all files concatenated). The chunker target
// is >= 500 MB/s per core; bytes/second in the output is that figure.
#include "engine/json/json.hpp"
#include "engine/text/measure.hpp"
#include "engine/text/text.hpp"
#include "engine/text/tokenizer.hpp"
#include "tests/sample_corpus.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#ifndef SLUICE_SOURCE_DIR
#define SLUICE_SOURCE_DIR "/work/main"
#endif

namespace {

namespace tx = sluice::text;

const std::string& corpus() {
  static const std::string text = [] {
    std::string all;
    for (const auto& t : sluice::test::sample_corpus_files()) all += t;
    if (all.empty()) {  // keep the benchmark meaningful without the corpus
      while (all.size() < (4u << 20))
        all += "And God said, Let there be light: and there was light. And God saw the light.\n";
    }
    return all;
  }();
  return text;
}

// The corpus as simple HTML: paragraphs, some markup, entities and footnotes.
const std::string& html_corpus() {
  static const std::string html = [] {
    const std::string& text = corpus();
    std::string out = "<html><head><title>KJV</title><style>p{margin:0}</style></head><body>\n";
    size_t i = 0;
    size_t line = 0;
    while (i < text.size()) {
      size_t nl = text.find('\n', i);
      if (nl == std::string::npos) nl = text.size();
      out += "<p>";
      out.append(text, i, nl - i);
      if (++line % 5 == 0) out += "<sup class=\"footnote-marker\">a</sup>";
      if (line % 7 == 0) out += " <i class=\"footnote\">Or, <i>the</i> &ldquo;word&rdquo;</i>";
      out += " &amp; <b>more</b>&nbsp;text</p>\n";
      i = nl + 1;
    }
    out += "</body></html>";
    return out;
  }();
  return html;
}

void BM_split_recursive(benchmark::State& state) {
  const std::string& text = corpus();
  const size_t overlap = static_cast<size_t>(state.range(0));
  size_t spans = 0;
  for (auto _ : state) {
    auto out = tx::split_recursive(text, 1000, overlap);
    spans = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["spans"] = static_cast<double>(spans);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_split_recursive)->Arg(0)->Arg(100)->Unit(benchmark::kMillisecond);

// Tokens (cl100k_base, o200k_base): encoding alone, and the recursive chunker sized in tokens
// (1000 characters against 256 tokens: about the same chunks). One thread: bytes/s is per core.
std::shared_ptr<const tx::Tokenizer> encoding(benchmark::State& state, const char* name) {
  try {
    return tx::Tokenizer::named(name);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return nullptr;
  }
}

void BM_tokenize(benchmark::State& state, const char* name) {
  const auto tok = encoding(state, name);
  if (!tok) return;
  const std::string& text = corpus();
  size_t tokens = 0;
  for (auto _ : state) {
    tokens = tok->count(text);
    benchmark::DoNotOptimize(tokens);
  }
  state.counters["tokens"] = static_cast<double>(tokens);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK_CAPTURE(BM_tokenize, cl100k_base, "cl100k_base")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_tokenize, o200k_base, "o200k_base")->Unit(benchmark::kMillisecond);

void BM_split_recursive_tokens(benchmark::State& state) {
  const auto tok = encoding(state, "cl100k_base");
  if (!tok) return;
  const std::string& text = corpus();
  size_t spans = 0;
  for (auto _ : state) {
    const tx::TokenMeasure m(*tok, text);
    auto out = tx::split_recursive(text, 256, 0, tx::default_separators(), m);
    spans = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["spans"] = static_cast<double>(spans);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_split_recursive_tokens)->Unit(benchmark::kMillisecond);

void BM_split_sentences(benchmark::State& state) {
  const std::string& text = corpus();
  const size_t overlap = static_cast<size_t>(state.range(0));
  size_t spans = 0;
  for (auto _ : state) {
    auto out = tx::split_sentences(text, 1000, overlap);
    spans = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["spans"] = static_cast<double>(spans);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_split_sentences)->Arg(0)->Arg(100)->Unit(benchmark::kMillisecond);

void BM_html_to_text(benchmark::State& state) {
  const std::string& html = html_corpus();
  for (auto _ : state) {
    auto out = tx::html_to_text(html);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * html.size()));
}
BENCHMARK(BM_html_to_text)->Unit(benchmark::kMillisecond);

void BM_count_code_points(benchmark::State& state) {
  const std::string& text = corpus();
  for (auto _ : state) benchmark::DoNotOptimize(tx::count_code_points(text));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_count_code_points)->Unit(benchmark::kMillisecond);

void BM_stable_hash64_64b(benchmark::State& state) {
  std::vector<std::string> keys;
  for (int i = 0; i < 1024; ++i) {
    std::string k(64, 'k');
    for (int b = 0; b < 8; ++b) k[static_cast<size_t>(b)] = static_cast<char>((i >> b) & 0xFF);
    keys.push_back(k);
  }
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(tx::stable_hash64(keys[i++ & 1023]));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 64));
}
BENCHMARK(BM_stable_hash64_64b);

// JSON-quoting chunk-sized text (the KJV's lines carry newlines to escape): what every embedding
// request and _bulk body does per record, and the sim per section it serves.
void BM_json_append_quoted(benchmark::State& state) {
  const std::string& text = corpus();
  std::string_view chunk(text.data(), std::min<size_t>(text.size(), 1000));
  std::string out;
  for (auto _ : state) {
    out.clear();
    sluice::json::append_quoted(out, chunk);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * chunk.size()));
}
BENCHMARK(BM_json_append_quoted);

}  // namespace
