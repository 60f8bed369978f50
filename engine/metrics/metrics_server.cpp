#include "engine/metrics/metrics_server.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string_view>

namespace sluice {

namespace {

constexpr size_t kMaxHead = 8192;
constexpr int kReadTimeoutMs = 2000;      // for the request head
constexpr int kExchangeTimeoutMs = 5000;  // for the whole exchange, answer included

// "HOST:PORT" split; a bare port or ":PORT" means loopback.
std::pair<std::string, std::string> split_addr(const std::string& addr) {
  std::string host, port;
  if (!addr.empty() && addr.front() == '[') {
    size_t close = addr.find(']');
    if (close == std::string::npos || close + 1 >= addr.size() || addr[close + 1] != ':')
      throw std::runtime_error("--metrics-addr \"" + addr +
                               "\": an IPv6 address is written [ADDRESS]:PORT");
    host = addr.substr(1, close - 1);
    port = addr.substr(close + 2);
  } else if (size_t colon = addr.rfind(':'); colon != std::string::npos) {
    host = addr.substr(0, colon);
    port = addr.substr(colon + 1);
  } else {
    port = addr;
  }
  if (host.empty()) host = "127.0.0.1";
  bool digits = !port.empty() && port.size() <= 5 &&
                port.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || std::stoul(port) > 65535)
    throw std::runtime_error("--metrics-addr \"" + addr +
                             "\": expected HOST:PORT with a port from 0 to 65535, e.g. "
                             "127.0.0.1:9464");
  return {host, port};
}

std::string sockaddr_text(const sockaddr_storage& ss, socklen_t len) {
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&ss), len, host, sizeof host, port, sizeof port,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  return ss.ss_family == AF_INET6 ? "[" + std::string(host) + "]:" + port
                                  : std::string(host) + ":" + port;
}

using Deadline = std::chrono::steady_clock::time_point;

// Milliseconds left before `deadline`, at least 0.
int ms_left(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits until `fd` is ready for `events`; false at the deadline or when `wake_fd` fires (stop).
bool wait_ready(int fd, short events, int wake_fd, Deadline deadline) {
  for (;;) {
    int left = ms_left(deadline);
    if (left == 0) return false;
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    int n = poll(fds, 2, left);
    if (n < 0 && errno == EINTR) continue;
    return n > 0 && !fds[1].revents;
  }
}

// Sends all of `data` on the non-blocking `fd` before the deadline, else gives up: a scraper
// that reads slowly cannot hold the endpoint, nor the end of the run.
void send_all(int fd, std::string_view data, int wake_fd, Deadline deadline) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
        wait_ready(fd, POLLOUT, wake_fd, deadline))
      continue;
    return;  // the scraper went away, or ran out of time
  }
}

// Answers on one connection, all of it before one deadline.
struct Reply {
  int fd, wake_fd;
  Deadline deadline;
  void operator()(const char* status, const std::string& content_type, std::string_view body,
                  bool head_only, const char* extra_header = "") const {
    std::string head = std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " + content_type +
                       "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
                       extra_header + "Connection: close\r\n\r\n";
    send_all(fd, head, wake_fd, deadline);
    if (!head_only) send_all(fd, body, wake_fd, deadline);
  }
};

}  // namespace

MetricsServer::MetricsServer(const std::string& addr, std::string content_type)
    : _content_type(std::move(content_type)) {
  auto [host, port] = split_addr(addr);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
    throw std::runtime_error("--metrics-addr \"" + addr + "\": " + gai_strerror(rc));
  std::string why = "no address";
  for (addrinfo* ai = found; ai && _listen_fd < 0; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
      _listen_fd = fd;
      break;
    }
    why = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  if (_listen_fd < 0)
    throw std::runtime_error("--metrics-addr \"" + addr + "\": cannot listen: " + why +
                             (why == std::strerror(EADDRINUSE)
                                  ? " (another process has that port: pick another, or 0 for "
                                    "any free one)"
                                  : ""));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(_listen_fd, reinterpret_cast<sockaddr*>(&ss), &len);
  _address = sockaddr_text(ss, len);
  _wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (_wake_fd < 0) {
    close(_listen_fd);
    throw std::runtime_error(std::string("metrics server: eventfd: ") + std::strerror(errno));
  }
  _thread = std::thread([this] { serve_loop(); });
}

MetricsServer::~MetricsServer() {
  uint64_t one = 1;
  ssize_t ignored = write(_wake_fd, &one, sizeof one);
  (void)ignored;
  if (_thread.joinable()) _thread.join();
  close(_listen_fd);
  close(_wake_fd);
}

void MetricsServer::publish(std::string text) {
  std::lock_guard lock(_mu);
  _text = std::move(text);
}

void MetricsServer::serve_loop() {
  for (;;) {
    pollfd fds[2] = {{_listen_fd, POLLIN, 0}, {_wake_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = accept4(_listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      // Out of descriptors, say: the listening socket stays readable, so wait a little rather
      // than spin; a stop still ends the wait.
      pollfd wake{_wake_fd, POLLIN, 0};
      if (poll(&wake, 1, 100) > 0) return;
      continue;
    }
    answer(fd);
    close(fd);
  }
}

void MetricsServer::answer(int fd) {
  // The whole exchange, reading and answering, within its time; a stop cuts it short.
  const Deadline start = std::chrono::steady_clock::now();
  const Deadline read_by = start + std::chrono::milliseconds(kReadTimeoutMs);
  const Reply respond{fd, _wake_fd, start + std::chrono::milliseconds(kExchangeTimeoutMs)};
  std::string head;
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (head.size() >= kMaxHead) {
      respond("431 Request Header Fields Too Large", "text/plain", "request too large\n", false);
      return;
    }
    char buf[2048];
    ssize_t n = recv(fd, buf, std::min(sizeof buf, kMaxHead - head.size()), 0);
    if (n > 0) {
      head.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
        wait_ready(fd, POLLIN, _wake_fd, read_by))
      continue;
    return;  // closed, failed, out of time or stopping
  }
  // "METHOD TARGET HTTP/1.x"
  std::string_view line(head.data(), head.find("\r\n"));
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1, 5) != "HTTP/") {
    respond("400 Bad Request", "text/plain", "malformed request line\n", false);
    return;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view path = target.substr(0, target.find('?'));
  const bool head_only = method == "HEAD";
  if (method != "GET" && !head_only) {
    respond("405 Method Not Allowed", "text/plain", "only GET and HEAD\n", false,
            "Allow: GET, HEAD\r\n");
    return;
  }
  if (path == "/metrics") {
    std::string text;
    {
      std::lock_guard lock(_mu);
      text = _text;
    }
    _scrapes.fetch_add(1, std::memory_order_relaxed);
    respond("200 OK", _content_type, text, head_only);
  } else if (path == "/") {
    respond("200 OK", "text/plain", "sluice: metrics are at /metrics\n", head_only);
  } else {
    respond("404 Not Found", "text/plain", "not found: metrics are at /metrics\n", head_only);
  }
}

}  // namespace sluice
