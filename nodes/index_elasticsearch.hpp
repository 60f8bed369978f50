// index.elasticsearch: _bulk NDJSON into Elasticsearch or OpenSearch, upsert by chunk id.
#pragma once
#include "engine/node.hpp"
#include <string>
namespace sluice {
NodeTypeInfo index_elasticsearch_info();
std::string base64(std::string_view in);
}  // namespace sluice
