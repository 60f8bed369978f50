// An advisory lock on a file (flock), for processes that must not work on one output at once.
// The file holds the holder's pid, so a refusal can name it. A lock file is removed by its last
// holder: whoever takes the lock checks that the file it locked is still the one at the path
// (not one removed meanwhile) and otherwise starts over. The kernel drops the lock of a process
// that dies (kill -9), so a stale file never blocks a later run.
#pragma once

#include <string>

namespace sluice {

class FileLock {
 public:
  enum class Wait { block, no };
  // Takes the lock on `path` (creating the file and its directory). Wait::no returns an unheld
  // lock if another process holds it; holder() then names that process. Throws
  // std::runtime_error if the file cannot be created.
  FileLock(std::string path, Wait wait);
  ~FileLock();
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&&) = delete;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  bool held() const { return _fd >= 0; }
  long holder() const { return _holder; }  // the pid in the file of a lock not taken, 0 unknown
  const std::string& path() const { return _path; }
  // Removes the file while still holding the lock (then releases it).
  void remove_file();
  // The destructor removes the file too (a lock that lasts as long as a job).
  void remove_when_released() { _remove = true; }

 private:
  std::string _path;
  int _fd = -1;
  long _holder = 0;
  bool _remove = false;
};

}  // namespace sluice
