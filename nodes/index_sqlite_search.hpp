// `sluice search`: the top chunks of an index.sqlite file for a query.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sluice {

enum class SearchMode { bm25, vector, hybrid };

struct SearchHit {
  double score = 0;
  std::string id;
  std::string doc_id;
  std::string snippet;
  std::string text;  // the chunk's whole text
  std::string meta;  // its meta as stored: a JSON object (checked: "{}" when it is not one)
};

// How vector and hybrid mode embed the query when the index's embedder does not run locally (an
// HTTP API): given the embedder the index records (its JSON, e.g.
// {"type":"embed.openai","model":"text-embedding-3-small","dim":1536}) and the query, the query's
// vector; throws std::runtime_error when it cannot.
using QueryEmbedder =
    std::function<std::vector<float>(const std::string& spec, const std::string&)>;

// Top `k` chunks for `query`. Vector mode embeds the query with the embedder recorded in the
// index: embed.hash here, another through `embed` (without one, an error saying how). Throws
// std::runtime_error with a message for the user (missing or foreign file, no vectors for vector
// mode, an embedder this build cannot run locally). A damaged or crafted file is a runtime_error
// too, never a crash or a quiet empty answer. At most kMaxQueryTerms distinct words are searched
// (repeats once); `note`, when given, says so. Hybrid mode adds both lists' scores, each scaled so
// its best is 1, the vector's weighted by `vector_weight` (0..1) and the words' by the rest; < 0
// takes the embedder's default (0.02 for embed.hash, 0.1 for embed.fasttext, 0.5 for others).
constexpr size_t kMaxQueryTerms = 32;
constexpr int kMaxK = 10000;
constexpr int kMaxDim = 65536;
//
// Vector search walks the index's nearest-neighbour graph when it has one (index.sqlite's `ann`
// param), else scans every vector; `ef` (0: the default, 512) is how many candidates the walk
// keeps: more finds more of the exact top k, slower. bm25 adds up the index's postings when it
// has current ones (`bm25_index`), else FTS5 ranks every match: the same scores either way.
// `exact` uses neither: every vector scanned, every match ranked by FTS5.
struct VectorOptions {
  bool exact = false;
  int ef = 0;
};
std::vector<SearchHit> search_index(const std::string& db_path, const std::string& query, int k,
                                    SearchMode mode, std::string* note = nullptr,
                                    double vector_weight = -1, const QueryEmbedder& embed = {},
                                    const VectorOptions& vector = {});

// Chunks whose text is not in the full-text index yet: the sink adds text in steps of `fts_batch`
// rows, and a run that died keeps its last rows out until the next run with that sink opens the
// file. 0 for a complete index. Call after search_index has accepted the file.
uint64_t chunks_awaiting_full_text(const std::string& db_path);

}  // namespace sluice
