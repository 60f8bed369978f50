// source.lines: one document per non-empty line of a text file (e.g. a list of URLs or ids).
// Also what every line-based source shares (source.jsonl too): the `max_line_mb` param and the
// record a line past it becomes.
#pragma once
#include "engine/node.hpp"
#include "engine/text/line_reader.hpp"
namespace sluice {
NodeTypeInfo source_lines_info();
// `max_line_mb` (default 16): the cap a line-based source reads lines with.
ParamSpec max_line_param();
size_t max_line_bytes(const Params& params);
// The record for the line `in` just skipped as too long: id "line:N", dead-lettered with the
// file and the line number.
RecordPtr too_long_line(const LineReader& in, const std::string& path);
}  // namespace sluice
