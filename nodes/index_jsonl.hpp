// index.jsonl: one JSON object per chunk in a file (id, doc_id, seq, text, meta, vector).
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo index_jsonl_info();
// The line index.jsonl writes for `r` (with a trailing newline).
std::string jsonl_line(const Record& r);
// Merges shard `shard`'s part files in `path`.parts/ and then `path` (if any) into `path`: each
// chunk id once, the first copy winning (a new run's chunk replaces an old one), a torn last line
// of a killed process skipped; then removes those parts. Shards sharing `path` take turns (flock).
// After a fresh run (a mark in the parts directory) `path` is replaced, not read; such a run that
// did not `finish` (failed, interrupted) keeps an existing `path` whole and its parts for the
// --resume that finishes it. Returns the number of lines written.
uint64_t merge_jsonl_parts(const std::string& path, const ShardSpec& shard, bool finished = true);
}  // namespace sluice
