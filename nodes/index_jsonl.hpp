// index.jsonl: one JSON object per chunk in a file (id, doc_id, seq, text, meta, vector).
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo index_jsonl_info();
// The line index.jsonl writes for `r` (with a trailing newline).
std::string jsonl_line(const Record& r);
}
