// expand.json: one record's JSON body (e.g. a listing or a table of contents from fetch.http)
// → one record per element of an array in it.
#pragma once

#include "engine/node.hpp"

namespace sluice {

NodeTypeInfo expand_json_info();

}  // namespace sluice
