// Reads a local file one line at a time for the line-based sources (source.lines, source.jsonl),
// with what std::getline lacks: a read error is an error (never a quiet end of input), a
// directory or unreadable path is refused at open, and a line longer than the cap is skipped
// (reported, not held: memory stays bounded by the cap). A FIFO, a terminal or stdin never
// blocks past a stop request: the reader waits for them in short polls and asks `stop` between.
// Not thread-safe: one reader, one caller.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace sluice {

class LineReader {
 public:
  LineReader() = default;
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Throws std::runtime_error naming `path` when it is missing, a directory or unreadable.
  // `stop` (optional) is asked while waiting for a FIFO's writer or its next bytes: once it says
  // true, the input ends there (Status::end).
  void open(const std::string& path, size_t max_line_bytes, std::function<bool()> stop = {});

  enum class Status { line, too_long, end };
  // The next line without its "\n" (and "\r"), numbered from 1. `too_long`: that line passed
  // the cap and was skipped; `line` is empty then. Throws std::runtime_error on a read error,
  // naming the file and the line.
  Status next(std::string& line);
  uint64_t line_number() const { return _number; }

 private:
  bool fill();
  bool wait_readable();
  std::string _path;
  int _fd = -1;
  bool _polled = false;  // not a regular file: wait with poll()
  std::function<bool()> _stop;
  size_t _max = 0;
  uint64_t _number = 0;
  std::string _buf;
  size_t _pos = 0;
  bool _eof = false;
};

}  // namespace sluice
