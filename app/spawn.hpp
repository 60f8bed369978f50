// Starting a child process of this binary's kind (a launcher's worker, a benchmark run): fork and
// exec with the child tied to our life. Called on the calling thread; returns at once.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace sluice {

struct SpawnOptions {
  // Its own process group, so that a Ctrl-C at the terminal reaches it only from us.
  bool own_process_group = false;
  // Descriptors the child gets: (ours, its), e.g. (log_fd, 1); its copy stays open across exec.
  // (fd, fd) keeps one of ours open in the child as it is.
  std::vector<std::pair<int, int>> fds;
};

// Forks and execs `exe args...` (argv[0] is `exe`). The child is killed with SIGKILL if this
// process dies first (PR_SET_PDEATHSIG), even if we died between fork and that setting. Returns
// the child's pid; throws std::runtime_error when fork fails.
pid_t spawn_child(const std::string& exe, const std::vector<std::string>& args,
                  const SpawnOptions& options);

}  // namespace sluice
