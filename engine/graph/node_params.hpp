// A node's params in a config, checked against its type's declarations (engine/params.hpp).
// Used by graph_spec.cpp while it reads a config; pure functions on the caller's thread.
#pragma once

#include <string>

#include "engine/diagnostics.hpp"
#include "engine/json/json.hpp"
#include "engine/node.hpp"

namespace sluice {

// A string that came from ${var} may stand for a number or boolean ("concurrency": "${n}"):
// converts `v` in place when it reads as `want`. True when `v` is (now) of that kind.
bool coerce_substituted(json::Value& v, json::Kind want);

// The params of a node of type `info`, from what the config gave: unknown names (with a
// suggestion), wrong types, values outside their choices or bounds and missing required params
// are errors; a retired name (ParamSpec::replaced_by) moves to its replacement with a warning;
// defaults fill the rest. `path` is the JSON path of the params object, for messages.
json::Value resolve_params(json::Value& given, const NodeTypeInfo& info, const std::string& path,
                           Diagnostics& diag);

}  // namespace sluice
