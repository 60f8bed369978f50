// The sim's HTTP/1.1 parser: any bytes on a connection get responses or a close, and the server
// keeps serving. Each input is sent on a new loopback connection to one sim of this process.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "fuzz/fuzz_target.hpp"
#include "sim/sim.hpp"

namespace {

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  // Closed with a reset, not into TIME_WAIT: a fuzzing run opens far more connections than
  // there are ephemeral ports.
  linger off{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof off);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

}  // namespace

SLUICE_FUZZ_TARGET(sim_http) {
  static std::unique_ptr<sluice::sim::SimServer> server = [] {
    sluice::sim::SimOptions o;
    o.docs = 20;
    auto s = std::make_unique<sluice::sim::SimServer>(o);
    s->start();
    return s;
  }();
  // The sim's closed connections wait in TIME_WAIT, holding local ports: at thousands of
  // inputs a second they run out for a while, and a full accept queue refuses or times out a
  // connect now and then. That is the harness's limit, not a finding: a sim that stopped
  // serving still fails after 20 s of tries.
  int fd = connect_to(server->port());
  for (int tries = 0; fd < 0 && tries < 2000; ++tries) {
    if (fd != -EADDRNOTAVAIL && fd != -ECONNREFUSED && fd != -ETIMEDOUT && fd != -EAGAIN &&
        fd != -EINTR)
      break;
    usleep(10000);
    fd = connect_to(server->port());
  }
  if (fd < 0) std::fprintf(stderr, "connect: %s\n", std::strerror(-fd));
  sluice::fuzz::check(fd >= 0, "the sim accepts connections");
  size_t sent = 0;
  while (sent < size) {
    ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the sim closed the connection on bad input
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) break;  // a request the sim still waits to complete
    if (::recv(fd, buf, sizeof buf, 0) <= 0) break;
  }
  ::close(fd);
  return 0;
}
