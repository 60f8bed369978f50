// `sluice schema`: a JSON Schema of graph configs, generated from the node registry (each node
// type's params with their types, defaults, bounds, choices and docs; variants; settings), for
// editors to validate and complete configs. Graphs name it with "$schema".
#pragma once

#include <string>

#include "engine/node.hpp"

namespace sluice {

// The schema as JSON text (pretty-printed, ending in a newline). Draft-07 keywords, only those
// draft-04 validators know too (no if/then), so older tools read it as well.
std::string graph_schema(const Registry& registry);

}  // namespace sluice
