#include "engine/graph/outcome_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "engine/json/json.hpp"

namespace sluice {

namespace {

constexpr size_t kFlushBytes = 64 * 1024;
constexpr size_t kMaxKeyBytes = 120;

int open_append(const std::string& path, const char* what) {
  std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error(std::string("cannot write ") + what + " file \"" + path +
                             "\": " + std::strerror(errno));
  return fd;
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk: the counts still say what happened
    s.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

std::string OutcomeLog::reason_key(std::string_view reason) {
  size_t cut = reason.find(": ");
  // "exception: what()" and a short prefix ("id: ...") say too little alone: keep one more part.
  if (cut != std::string_view::npos && (cut < 4 || reason.substr(0, cut) == "exception")) {
    size_t next = reason.find(": ", cut + 2);
    cut = next;
  }
  std::string key(reason.substr(0, std::min(cut, reason.size())));
  if (key.size() > kMaxKeyBytes) {
    size_t n = kMaxKeyBytes;
    while (n > 0 && (static_cast<unsigned char>(key[n]) & 0xC0) == 0x80) --n;  // whole UTF-8
    key = key.substr(0, n) + "...";
  }
  return key.empty() ? "(no reason given)" : key;
}

void OutcomeLog::open(const std::string& dead_letter, const std::string& outcomes) {
  if (!dead_letter.empty()) {
    std::filesystem::path p(dead_letter);
    std::error_code ec;
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
    const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
    if (::access(p.c_str(), W_OK) != 0 && ::access(dir.c_str(), W_OK) != 0)
      throw std::runtime_error("cannot write dead-letter file \"" + dead_letter +
                               "\": its directory is not writable");
    _dead_path = dead_letter;
  }
  if (!outcomes.empty()) {
    _outcomes_fd = open_append(outcomes, "outcomes");
    _log_all = true;
  }
}

void OutcomeLog::record(std::string_view node, const Record& r, Outcome o, std::string_view reason,
                        int attempts, long status) {
  // Most records are indexed or filtered: with no outcomes file they need nothing here, and
  // must not take the lock every dead letter takes.
  if (o != Outcome::dead_lettered && !_log_all) return;
  std::string dead_line, outcome_line;
  if (o == Outcome::dead_lettered && !_dead_path.empty()) {
    dead_line = "{\"id\":" + json::quoted(r.id) + ",\"doc_id\":" + json::quoted(r.doc_id) +
                ",\"node\":" + json::quoted(node) + ",\"attempts\":" + std::to_string(attempts) +
                ",\"status\":" + (status ? std::to_string(status) : std::string("null")) +
                ",\"error\":" + json::quoted(reason) + "}\n";
    dead_line = _secrets.redact(dead_line);  // env values, and URL passwords even without any
  }
  if (_outcomes_fd >= 0) {
    outcome_line = "{\"id\":" + json::quoted(r.id) + ",\"doc_id\":" + json::quoted(r.doc_id) +
                   ",\"outcome\":\"" + outcome_name(o) + "\",\"node\":" + json::quoted(node) +
                   ",\"reason\":" + (reason.empty() ? std::string("null") : json::quoted(reason)) +
                   "}\n";
    outcome_line = _secrets.redact(outcome_line);
  }
  std::lock_guard lock(_mu);
  if (o == Outcome::dead_lettered) {
    auto key = std::make_pair(std::string(node), _secrets.redact(reason_key(reason)));
    auto it = _reasons.find(key);
    if (it != _reasons.end()) ++it->second;
    else if (_reasons.size() < kMaxReasons) _reasons.emplace(std::move(key), 1);
    else ++_reasons[{std::string(node), "other reasons"}];
  }
  if (!dead_line.empty() && _dead_fd < 0 && _write_error.empty()) {
    try {
      _dead_fd = open_append(_dead_path, "dead-letter");
    } catch (const std::exception& e) {
      _write_error = e.what();
    }
  }
  if (!dead_line.empty() && _dead_fd >= 0) write_all(_dead_fd, dead_line);
  if (!outcome_line.empty()) {
    _buf += outcome_line;
    if (_buf.size() >= kFlushBytes) {
      write_all(_outcomes_fd, _buf);
      _buf.clear();
    }
  }
}

void OutcomeLog::flush() {
  std::lock_guard lock(_mu);
  if (_outcomes_fd >= 0 && !_buf.empty()) write_all(_outcomes_fd, _buf);
  _buf.clear();
}

void OutcomeLog::close() {
  flush();
  std::lock_guard lock(_mu);
  for (int* fd : {&_dead_fd, &_outcomes_fd}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

std::vector<ReasonCount> OutcomeLog::reasons() const {
  std::vector<ReasonCount> out;
  {
    std::lock_guard lock(_mu);
    for (const auto& [k, n] : _reasons) out.push_back({k.first, k.second, n});
  }
  sort_reasons(out);
  return out;
}

}  // namespace sluice
