// source.jsonl: one document per line of a JSON Lines file.
#pragma once

#include <string>
#include <string_view>

#include "engine/node.hpp"
#include "nodes/text_template.hpp"

namespace sluice {

NodeTypeInfo source_jsonl_info();

// One JSON object → a document: id from `id_field` (string or number; else `fallback_id`), text
// from `text_field` (missing or null → empty text: sources never drop a record), every other
// member into meta. A line that is not a JSON object gives a record with `error` set, which the
// engine dead-letters. With `text_template`, the text is composed from the object's fields (every
// member but the id then goes to meta). Shared with source.files for .json/.jsonl files.
RecordPtr record_from_json(std::string_view json_text, const std::string& fallback_id,
                           const std::string& id_field, const std::string& text_field,
                           const TextTemplate* text_template = nullptr);

}  // namespace sluice
