#include "engine/graph/graph_edges.hpp"

#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice {

void read_edges(const json::Value& edges, GraphSpec& spec, Diagnostics& diag) {
  // Ids by name once: looking each edge's ends up by a scan made a 20,000-node chain quadratic.
  std::unordered_map<std::string_view, size_t> index;
  index.reserve(spec.nodes.size());
  for (size_t i = 0; i < spec.nodes.size(); ++i) index.emplace(spec.nodes[i].id, i);
  auto index_of = [&](const std::string& id) {
    auto it = index.find(id);
    return it == index.end() ? std::string::npos : it->second;
  };
  std::set<std::pair<size_t, size_t>> seen;
  for (size_t i = 0; i < edges.items.size(); ++i) {
    const json::Value& e = edges.items[i];
    std::string path = "edges[" + std::to_string(i) + "]";
    if (e.kind != json::Kind::array || e.items.size() != 2 ||
        e.items[0].kind != json::Kind::string || e.items[1].kind != json::Kind::string) {
      diag.error(e.loc, path, "an edge is a pair of node ids: [\"from\", \"to\"]");
      continue;
    }
    size_t ends[2];
    bool ok = true;
    for (int k = 0; k < 2; ++k) {
      const json::Value& end = e.items[k];
      ends[k] = index_of(end.str);
      if (ends[k] == std::string::npos) {
        std::vector<std::string> ids;  // only for the hint, on an error
        for (const auto& n : spec.nodes) ids.push_back(n.id);
        diag.error(end.loc, path + "[" + std::to_string(k) + "]",
                   "no node with id \"" + end.str + "\"" + did_you_mean(end.str, ids));
        ok = false;
      }
    }
    if (!ok) continue;
    if (ends[0] == ends[1]) {
      diag.error(e.loc, path, "edge from \"" + e.items[0].str + "\" to itself");
      continue;
    }
    if (!seen.insert({ends[0], ends[1]}).second) {
      diag.error(e.loc, path,
                 "duplicate edge [\"" + e.items[0].str + "\", \"" + e.items[1].str + "\"]");
      continue;
    }
    const NodeSpec& from = spec.nodes[ends[0]];
    const NodeSpec& to = spec.nodes[ends[1]];
    if (to.info && to.info->role == NodeRole::source) {
      diag.error(e.loc, path, "\"" + to.id + "\" is a source (" + to.type + ") and takes no input");
      continue;
    }
    if (from.info && from.info->role == NodeRole::sink) {
      diag.error(e.loc, path,
                 "\"" + from.id + "\" is a sink (" + from.type + ") and has no output");
      continue;
    }
    spec.edges.emplace_back(ends[0], ends[1]);
  }
}

void check_topology(GraphSpec& spec, json::Location nodes_loc, Diagnostics& diag) {
  size_t n = spec.nodes.size();
  spec.successors.assign(n, {});
  spec.predecessors.assign(n, {});
  for (auto [a, b] : spec.edges) {
    spec.successors[a].push_back(b);
    spec.predecessors[b].push_back(a);
  }
  // Kahn's algorithm; whatever is left sits on a cycle.
  std::vector<size_t> indeg(n);
  for (size_t i = 0; i < n; ++i) indeg[i] = spec.predecessors[i].size();
  std::vector<size_t> ready;
  for (size_t i = 0; i < n; ++i)
    if (indeg[i] == 0) ready.push_back(i);
  for (size_t head = 0; head < ready.size(); ++head) {  // a queue: ready grows behind head
    size_t i = ready[head];
    spec.topo_order.push_back(i);
    for (size_t s : spec.successors[i])
      if (--indeg[s] == 0) ready.push_back(s);
  }
  if (spec.topo_order.size() != n) {
    // Walk forward inside the leftover set until a node repeats: that is a cycle.
    size_t start = 0;
    while (indeg[start] == 0) ++start;
    std::vector<size_t> walk{start};
    std::vector<int> pos(n, -1);
    pos[start] = 0;
    for (;;) {
      size_t cur = walk.back(), next = cur;
      for (size_t s : spec.successors[cur])
        if (indeg[s] > 0) {
          next = s;
          break;
        }
      if (pos[next] >= 0) {
        std::string cycle;
        for (size_t k = static_cast<size_t>(pos[next]); k < walk.size(); ++k)
          cycle += spec.nodes[walk[k]].id + " -> ";
        cycle += spec.nodes[next].id;
        diag.error(spec.nodes[next].loc, "edges", "the graph has a cycle: " + cycle);
        return;
      }
      pos[next] = static_cast<int>(walk.size());
      walk.push_back(next);
    }
  }
  bool any_source = false;
  std::vector<bool> reached(n, false);
  for (size_t i : spec.topo_order) {
    const NodeSpec& ns = spec.nodes[i];
    if (ns.info->role == NodeRole::source) {
      any_source = true;
      reached[i] = true;
    }
    for (size_t p : spec.predecessors[i]) reached[i] = reached[i] || reached[p];
  }
  if (!any_source) diag.error(nodes_loc, "nodes", "the graph has no source node (types source.*)");
  for (size_t i = 0; i < n; ++i) {
    const NodeSpec& ns = spec.nodes[i];
    std::string path = "nodes[" + std::to_string(i) + "]";
    if (ns.info->role != NodeRole::sink && spec.successors[i].empty())
      diag.error(ns.loc, path,
                 "node \"" + ns.id + "\" (" + ns.type +
                     ") has no outgoing edge: its records would go nowhere; "
                     "connect it to a sink such as index.sqlite");
    if (any_source && !reached[i] && ns.info->role != NodeRole::source)
      diag.error(ns.loc, path, "node \"" + ns.id + "\" is not reachable from any source");
  }
}

}  // namespace sluice
