// A loopback HTTP/1.1 server for tests that need answers the sim does not give (redirects to
// other origins, Link headers, echoed headers): a handler maps each request to a raw response,
// and every request is kept for the test to inspect. One connection at a time, closed after
// each response; every wait is bounded.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sluice::test {

struct SeenRequest {
  std::string method;
  std::string target;  // path and query
  std::string head;    // the whole request head, as received
  std::string body;
  bool has(const std::string& text) const {
    return head.find(text) != std::string::npos || body.find(text) != std::string::npos;
  }
};

class ScriptServer {
 public:
  // Returns the status line onward: "HTTP/1.1 302 Found\r\nLocation: ...\r\n\r\n". The server
  // adds Content-Length when `body` is set through respond().
  using Handler = std::function<std::string(const SeenRequest&)>;
  explicit ScriptServer(Handler handler);
  ~ScriptServer();
  ScriptServer(const ScriptServer&) = delete;
  ScriptServer& operator=(const ScriptServer&) = delete;

  int port() const { return _port; }
  // "http://127.0.0.1:PORT" + path; "http://localhost:PORT" + path is the same server under
  // another origin.
  std::string url(const std::string& path = "") const;
  std::string other_origin_url(const std::string& path = "") const;
  std::vector<SeenRequest> seen() const;

  // A whole response with a body and extra header lines ("Name: value\r\n" each).
  static std::string respond(int status, const std::string& body, const std::string& headers = "");

 private:
  void loop();
  Handler _handler;
  int _fd = -1;
  int _port = 0;
  std::atomic<bool> _stop{false};
  mutable std::mutex _mu;
  std::vector<SeenRequest> _seen;
  std::thread _thread;
};

}  // namespace sluice::test
