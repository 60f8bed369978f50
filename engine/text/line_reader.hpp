// Reads a local file one line at a time for the line-based sources (source.lines, source.jsonl),
// with what std::getline lacks: a read error is an error (never a quiet end of input), a
// directory or unreadable path is refused at open, and a line longer than the cap is skipped
// (reported, not held: memory stays bounded by the cap). Not thread-safe: one reader, one caller.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace sluice {

class LineReader {
 public:
  LineReader() = default;
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Throws std::runtime_error naming `path` when it is missing, a directory or unreadable.
  void open(const std::string& path, size_t max_line_bytes);

  enum class Status { line, too_long, end };
  // The next line without its "\n" (and "\r"), numbered from 1. `too_long`: that line passed
  // the cap and was skipped; `line` is empty then. Throws std::runtime_error on a read error,
  // naming the file and the line.
  Status next(std::string& line);
  uint64_t line_number() const { return _number; }

 private:
  bool fill();
  std::string _path;
  FILE* _file = nullptr;
  size_t _max = 0;
  uint64_t _number = 0;
  std::string _buf;
  size_t _pos = 0;
  bool _eof = false;
};

}  // namespace sluice
