#include "engine/text/line_reader.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace sluice {

namespace {
constexpr size_t kChunk = size_t{64} << 10;
}

LineReader::~LineReader() {
  if (_file) std::fclose(_file);
}

void LineReader::open(const std::string& path, size_t max_line_bytes) {
  _path = path;
  _max = max_line_bytes;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw std::runtime_error("\"" + path + "\" is a directory, not a file");
  _file = std::fopen(path.c_str(), "rb");
  if (!_file) throw std::runtime_error("cannot open \"" + path + "\": " + std::strerror(errno));
}

bool LineReader::fill() {
  if (_eof) return false;
  if (_pos > 0) {
    _buf.erase(0, _pos);
    _pos = 0;
  }
  const size_t old = _buf.size();
  _buf.resize(old + kChunk);
  const size_t n = std::fread(_buf.data() + old, 1, kChunk, _file);
  _buf.resize(old + n);
  if (n < kChunk) {
    if (std::ferror(_file))
      throw std::runtime_error("reading \"" + _path + "\" failed at line " +
                               std::to_string(_number + 1) + ": " + std::strerror(errno));
    _eof = true;
  }
  return n > 0;
}

LineReader::Status LineReader::next(std::string& line) {
  line.clear();
  bool skipping = false;  // inside a line past the cap: drop its bytes until its end
  for (;;) {
    const char* start = _buf.data() + _pos;
    const size_t avail = _buf.size() - _pos;
    // NOLINTNEXTLINE(bugprone-not-null-terminated-result): a byte search, not a string copy
    const void* nl = avail ? std::memchr(start, '\n', avail) : nullptr;
    if (nl) {
      const size_t len = static_cast<size_t>(static_cast<const char*>(nl) - start);
      ++_number;
      _pos += len + 1;
      if (skipping || len > _max) return Status::too_long;
      line.assign(start, len);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return Status::line;
    }
    if (!skipping && avail > _max) {
      skipping = true;  // the line already passed the cap: stop holding it
      _pos = _buf.size();
    } else if (skipping) {
      _pos = _buf.size();
    }
    if (!fill()) {
      if (_buf.size() == _pos && !skipping) return Status::end;
      ++_number;  // a last line without "\n"
      if (skipping || _buf.size() - _pos > _max) {
        _pos = _buf.size();
        return Status::too_long;
      }
      line.assign(_buf, _pos, std::string::npos);
      _pos = _buf.size();
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return Status::line;
    }
  }
}

}  // namespace sluice
