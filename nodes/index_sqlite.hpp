// index.sqlite: the embedded default index. FTS5 over chunk text, vectors as BLOBs, document
// meta; upsert by chunk id in batched transactions (WAL). `sluice search` reads it.
#pragma once

#include <string>
#include <vector>

#include "engine/node.hpp"

namespace sluice {

NodeTypeInfo index_sqlite_info();

enum class SearchMode { bm25, vector, hybrid };

struct SearchHit {
  double score = 0;
  std::string id;
  std::string doc_id;
  std::string snippet;
};

// Top `k` chunks for `query`. Vector mode embeds the query with the embedder recorded in the
// index. Throws std::runtime_error with a message for the user (missing or foreign file, no
// vectors for vector mode, an embedder this build cannot run locally).
std::vector<SearchHit> search_index(const std::string& db_path, const std::string& query, int k,
                                    SearchMode mode);

}  // namespace sluice
