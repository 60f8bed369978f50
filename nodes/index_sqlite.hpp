// index.sqlite: the embedded default index. FTS5 over chunk text, vectors as BLOBs, document
// meta; upsert by chunk id in batched transactions (WAL), the full-text index added in larger
// steps behind the rows. `sluice search` reads it
// (index_sqlite_search.hpp).
#pragma once

#include <string>
#include <vector>

#include "engine/node.hpp"

namespace sluice {

NodeTypeInfo index_sqlite_info();

}  // namespace sluice
