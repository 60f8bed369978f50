// The built-in node types. The engine never names a node: the app and tests hand it this registry.
#pragma once

#include "engine/node.hpp"

namespace sluice {

// Adds every built-in node type to `registry` (the one list, in builtin_nodes.cpp).
void register_builtin_nodes(Registry& registry);

// A registry holding the built-in node types, built once on first use; thread-safe.
const Registry& builtin_registry();

}  // namespace sluice
