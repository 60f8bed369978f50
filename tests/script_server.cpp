#include "tests/script_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>

namespace sluice::test {

ScriptServer::ScriptServer(Handler handler) : _handler(std::move(handler)) {
  _fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(_fd, 64) != 0 ||
      ::getsockname(_fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("ScriptServer: cannot listen on loopback");
  _port = ntohs(a.sin_port);
  _thread = std::thread([this] { loop(); });
}

ScriptServer::~ScriptServer() {
  _stop = true;
  _thread.join();
  ::close(_fd);
}

std::string ScriptServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(_port) + path;
}
std::string ScriptServer::other_origin_url(const std::string& path) const {
  return "http://localhost:" + std::to_string(_port) + path;
}

std::vector<SeenRequest> ScriptServer::seen() const {
  std::lock_guard lock(_mu);
  return _seen;
}

std::string ScriptServer::respond(int status, const std::string& body, const std::string& headers) {
  return "HTTP/1.1 " + std::to_string(status) +
         " Scripted\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n" + headers + "\r\n" + body;
}

void ScriptServer::loop() {
  using Clock = std::chrono::steady_clock;
  while (!_stop) {
    pollfd p{_fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    int c = ::accept(_fd, nullptr, nullptr);
    if (c < 0) continue;
    std::string in;
    SeenRequest r;
    bool whole = false;
    auto deadline = Clock::now() + std::chrono::seconds(5);
    char buf[8192];
    while (!whole && Clock::now() < deadline && in.size() < (size_t{8} << 20)) {
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, 50) <= 0) continue;
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      size_t end = in.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      r.head = in.substr(0, end + 2);
      size_t length = 0;
      for (const char* name : {"Content-Length: ", "content-length: "})
        if (size_t at = r.head.find(name); at != std::string::npos)
          length = std::strtoull(r.head.c_str() + at + std::char_traits<char>::length(name),
                                 nullptr, 10);
      if (in.size() >= end + 4 + length) {
        r.body = in.substr(end + 4, length);
        whole = true;
      }
    }
    if (whole) {
      size_t sp1 = r.head.find(' '), sp2 = r.head.find(' ', sp1 + 1);
      r.method = r.head.substr(0, sp1);
      r.target = r.head.substr(sp1 + 1, sp2 - sp1 - 1);
      std::string out = _handler(r);
      {
        std::lock_guard lock(_mu);
        _seen.push_back(r);
      }
      for (size_t sent = 0; sent < out.size();) {
        ssize_t n = ::send(c, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
    }
    ::close(c);
  }
}

}  // namespace sluice::test
