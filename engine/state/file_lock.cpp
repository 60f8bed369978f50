#include "engine/state/file_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace sluice {

namespace {

long read_pid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  return n > 0 ? std::strtol(buf, nullptr, 10) : 0;
}

// Whether `fd` is still the file at `path` (the last holder may have removed it).
bool still_at_path(int fd, const std::string& path) {
  struct stat held {
  }, now{};
  return ::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
         held.st_dev == now.st_dev;
}

}  // namespace

FileLock::FileLock(std::string path, Wait wait) : _path(std::move(path)) {
  std::filesystem::path p(_path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  for (;;) {
    int fd = ::open(_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      throw std::runtime_error("cannot create the lock file \"" + _path +
                               "\": " + std::strerror(errno));
    int rc;
    while ((rc = ::flock(fd, wait == Wait::block ? LOCK_EX : LOCK_EX | LOCK_NB)) != 0 &&
           errno == EINTR) {
    }
    if (rc != 0) {
      _holder = read_pid(fd);
      ::close(fd);
      return;
    }
    if (!still_at_path(fd, _path)) {
      ::close(fd);
      continue;
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      // The lock holds without the pid; a refused run then names no process.
    }
    _fd = fd;
    return;
  }
}

FileLock::FileLock(FileLock&& other) noexcept
    : _path(std::move(other._path)), _fd(other._fd), _holder(other._holder),
      _remove(other._remove) {
  other._fd = -1;
}

FileLock::~FileLock() {
  if (_remove) remove_file();
  if (_fd >= 0) ::close(_fd);
}

void FileLock::remove_file() {
  if (_fd < 0) return;
  ::unlink(_path.c_str());
  ::close(_fd);
  _fd = -1;
}

}  // namespace sluice
