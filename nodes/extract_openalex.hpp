// extract.openalex_abstract: an OpenAlex work (record body) → title + abstract text, rebuilt
// from abstract_inverted_index ({word: [positions]}).
#pragma once
#include "engine/node.hpp"
#include <string>
#include <string_view>
namespace sluice {
NodeTypeInfo extract_openalex_abstract_info();
// The abstract in word order; "" for null. Throws std::runtime_error on a malformed index.
std::string abstract_from_inverted_index(std::string_view work_json, const std::string& pointer,
                                         size_t max_words);
}  // namespace sluice
