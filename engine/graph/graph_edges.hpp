// The graph config's "edges" and the topology they make, for parse_graph (graph_spec.cpp): each
// edge checked (known ids, no self-loop or duplicate, no edge into a source or out of a sink),
// then the order, cycles, reachability and dangling outputs. Every problem goes to `diag`.
#pragma once

#include "engine/diagnostics.hpp"
#include "engine/graph/graph_spec.hpp"
#include "engine/json/json.hpp"

namespace sluice {

// Appends the valid edges of `edges` (a JSON array) to spec.edges.
void read_edges(const json::Value& edges, GraphSpec& spec, Diagnostics& diag);
// Fills successors, predecessors and topo_order from spec.edges; reports a cycle, a graph with no
// source, nodes no source reaches and non-sinks with no outgoing edge.
void check_topology(GraphSpec& spec, json::Location nodes_loc, Diagnostics& diag);

}  // namespace sluice
