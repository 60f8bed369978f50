#include "app/spawn.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>

namespace sluice {

pid_t spawn_child(const std::string& exe, const std::vector<std::string>& args,
                  const SpawnOptions& options) {
  // Everything the child needs is built before fork: between fork and exec only
  // async-signal-safe calls.
  std::vector<std::string> argv_s;
  argv_s.push_back(exe);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (options.own_process_group) setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // we died before prctl took effect
    for (const auto& [ours, its] : options.fds) {
      if (ours == its) {
        if (fcntl(its, F_SETFD, 0) < 0) _exit(127);
      } else if (dup2(ours, its) < 0) {
        _exit(127);
      }
    }
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace sluice
