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
std::string hash_embedder_spec(int dim);
}  // namespace sluice
