// Byte-pair encoding as OpenAI's models count tokens (tiktoken's cl100k_base, o200k_base, ...),
// for chunk sizes in tokens and for embedders' batch limits and usage. A text is cut into pieces
// by the encoding's pattern (PCRE2, Unicode properties), and each piece is merged from its bytes by
// rank, lowest first, leftmost on ties: the ids equal the reference tokenizer's (encode_ordinary:
// the text of a special token such as <|endoftext|> is ordinary text).
// The ranks come from a file: js-tiktoken's ranks module (what scripts/setup installs) or a
// .tiktoken file ("base64 rank" lines). named() finds it in the data directory (README, "Token
// sizes").
// Thread-safety: a Tokenizer is immutable after construction; encode/count/ends are safe from any
// number of threads (PCRE2 match data is per thread). named() is safe to call concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/text/measure.hpp"

namespace sluice::text {

class Tokenizer {
 public:
  // The encoding `name` from the text of its ranks file. `pattern` overrides the pre-tokenizer
  // pattern; "" takes the file's `pat_str`, else the built-in one of a known encoding. Throws
  // std::runtime_error naming what is wrong.
  static std::unique_ptr<Tokenizer> from_ranks(std::string name, std::string_view file_text,
                                               std::string pattern = "");
  // An encoding whose token of rank i is tokens[i] (every single byte among them), cut by
  // `pattern` ("" for a known encoding's): small vocabularies for tests and fuzzing.
  static std::unique_ptr<Tokenizer>
  from_tokens(std::string name, const std::vector<std::string>& tokens, std::string pattern = "");
  // The encoding `name` (letters, digits, '_'), loaded once per process from the first of:
  // $SLUICE_DATA_DIR, the source tree's data/ (a build-tree binary), <exe>/../share/sluice; each
  // looked at as tokenizers/<name>.tiktoken, tokenizers/<name>.js and
  // tokenizers/node_modules/js-tiktoken/dist/ranks/<name>.js. Throws std::runtime_error with the
  // places looked at and how to install the ranks.
  static std::shared_ptr<const Tokenizer> named(const std::string& name);
  // The model's encoding when it is an OpenAI model sluice knows (text-embedding-3-*,
  // text-embedding-ada-002: cl100k_base), else "".
  static std::string encoding_of_model(std::string_view model);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  const std::string& name() const { return _name; }
  size_t vocabulary() const { return _ranks.size(); }

  std::vector<uint32_t> encode(std::string_view text) const;
  size_t count(std::string_view text) const;
  // Appends the byte offset at which each token of `text` ends (strictly increasing, the last is
  // text.size()). A token may end inside a code point (byte-level tokens).
  void ends(std::string_view text, std::vector<size_t>& out) const;

 private:
  Tokenizer() = default;
  // Makes the rank map over _bytes (token i ending at ends[i].first) and compiles `pattern`.
  void finish(const std::vector<std::pair<size_t, uint32_t>>& ends, std::string pattern);
  // Calls f(rank, end) for each token of text in order.
  template <class F>
  void each_token(std::string_view text, F&& f) const;
  template <class F>
  void each_piece_token(std::string_view piece, size_t at, F&& f) const;
  uint32_t rank_of(std::string_view bytes) const;

  std::string _name;
  std::string _bytes;  // every token's bytes, back to back; _ranks' keys point into it
  std::unordered_map<std::string_view, uint32_t> _ranks;
  uint32_t _byte_rank[256] = {};
  void* _code = nullptr;  // pcre2_code_8, JIT-compiled
};

// Sizes in tokens of `tok` over one text, for the splitters (measure.hpp). Tokenizes the whole
// text once; a span's count is the tokens it overlaps in that tokenization, which can differ by a
// token or two at its edges from the span encoded alone (check_tokens re-splits those).
class TokenMeasure final : public Measure {
 public:
  TokenMeasure(const Tokenizer& tok, std::string_view text);
  size_t count(size_t b, size_t e) const override;
  size_t advance(size_t b, size_t e, size_t n) const override;
  size_t retreat(size_t b, size_t n, size_t floor) const override;

 private:
  std::string_view _text;
  std::vector<size_t> _ends;
};

}  // namespace sluice::text
