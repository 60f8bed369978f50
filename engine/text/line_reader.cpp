#include "engine/text/line_reader.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace sluice {

namespace {
constexpr size_t kChunk = size_t{64} << 10;
constexpr int kPollMs = 100;  // how soon a stop request is seen while waiting for a writer
}  // namespace

LineReader::~LineReader() {
  if (_fd >= 0) ::close(_fd);
}

void LineReader::open(const std::string& path, size_t max_line_bytes, std::function<bool()> stop) {
  _path = path;
  _max = max_line_bytes;
  _stop = std::move(stop);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw std::runtime_error("\"" + path + "\" is a directory, not a file");
  // O_NONBLOCK: opening a FIFO does not wait for its writer (poll() does, asking _stop).
  _fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (_fd < 0) throw std::runtime_error("cannot open \"" + path + "\": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(_fd, &st) == 0 && S_ISREG(st.st_mode)) {
    ::fcntl(_fd, F_SETFL, ::fcntl(_fd, F_GETFL) & ~O_NONBLOCK);
  } else {
    _polled = true;
  }
}

// Waits until the descriptor has bytes or its end (a FIFO's writer closed). False: stop asked.
// A FIFO with no writer yet is neither: poll() waits for one (Linux reports a hang-up only after
// a writer came and went).
bool LineReader::wait_readable() {
  for (;;) {
    if (_stop && _stop()) return false;
    pollfd p{_fd, POLLIN, 0};
    int rc = ::poll(&p, 1, kPollMs);
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR)
      throw std::runtime_error("waiting for \"" + _path + "\" failed: " + std::strerror(errno));
  }
}

bool LineReader::fill() {
  if (_eof) return false;
  if (_pos > 0) {
    _buf.erase(0, _pos);
    _pos = 0;
  }
  const size_t old = _buf.size();
  _buf.resize(old + kChunk);
  ssize_t n;
  for (;;) {
    if (_polled && !wait_readable()) {
      n = 0;  // stop asked: the input ends here
      break;
    }
    n = ::read(_fd, _buf.data() + old, kChunk);
    if (n >= 0 || errno == EINTR) {
      if (n >= 0) break;
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) continue;  // another reader took the bytes
    _buf.resize(old);
    throw std::runtime_error("reading \"" + _path + "\" failed at line " +
                             std::to_string(_number + 1) + ": " + std::strerror(errno));
  }
  _buf.resize(old + static_cast<size_t>(n));
  if (n == 0) _eof = true;
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
