// embed.hash: local feature-hashing embeddings. Lexical, not semantic: documents that share words
// are close; synonyms are not. Fast, offline, deterministic.
#pragma once
#include "engine/node.hpp"
#include <string_view>
#include <vector>
namespace sluice {
NodeTypeInfo embed_hash_info();
// The embedding of `text`: signed token hashes into `dim` buckets, L2-normalized (all zeros
// when the text has no token). Pure and thread-safe; used by `sluice search` for queries too.
std::vector<float> hash_embed(std::string_view text, int dim);
// Calls f(word) for each word of `text` as the local embedders read it: runs of ASCII letters and
// digits, lowercased, and of non-ASCII bytes (UTF-8 letters); a word is cut at 64 bytes.
template <class F>
void each_word(std::string_view text, F&& f) {
  char buf[64];
  size_t len = 0;
  for (unsigned char c : text) {
    bool word = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<unsigned char>(c - 'A' + 'a');
      word = true;
    }
    if (word) {
      if (len < sizeof buf) buf[len++] = static_cast<char>(c);
    } else if (len > 0) {
      f(std::string_view(buf, len));
      len = 0;
    }
  }
  if (len > 0) f(std::string_view(buf, len));
}
std::string hash_embedder_spec(int dim);
}  // namespace sluice
