#include <algorithm>
#include <cassert>

#include "engine/node.hpp"

namespace sluice {

const char* role_name(NodeRole r) {
  switch (r) {
    case NodeRole::source: return "source";
    case NodeRole::transform: return "transform";
    case NodeRole::chunker: return "chunker";
    case NodeRole::embedder: return "embedder";
    case NodeRole::sink: return "sink";
  }
  return "?";
}

void Registry::add(NodeTypeInfo info) {
  assert(!find(info.type) && "node type registered twice");
  assert((info.make_source != nullptr) != (info.make_node != nullptr));
  _infos.push_back(std::move(info));
}

const NodeTypeInfo* Registry::find(std::string_view type) const {
  for (const auto& i : _infos)
    if (i.type == type) return &i;
  return nullptr;
}

std::vector<std::string> Registry::types() const {
  std::vector<std::string> out;
  for (const auto& i : _infos) out.push_back(i.type);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sluice
