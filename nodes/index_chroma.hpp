// index.chroma: chunks and their vectors into a Chroma collection through its v2 REST API,
// upserted by chunk id.
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo index_chroma_info();
}  // namespace sluice
