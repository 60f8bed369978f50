// A small HTTP/1.1 endpoint on a thread of its own that serves one text document, replaced as a
// run goes on: `sluice run --metrics-addr` serves Prometheus' text format at /metrics with it.
// Requests are untrusted: a request head is capped at 8 KiB and must arrive within 2 s, the whole
// exchange within 5 s (a stop cuts it short); one connection is served at a time and closed
// after its answer, and only GET and HEAD are answered.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace sluice {

class MetricsServer {
 public:
  // Listens on `addr`: "HOST:PORT", "[IPv6]:PORT", or ":PORT" / "PORT" for 127.0.0.1 (metrics
  // leave the machine only when asked: "0.0.0.0:9464"). Port 0 picks a free one. Throws
  // std::runtime_error naming the address and the reason (in use, not an address of this host).
  MetricsServer(const std::string& addr, std::string content_type);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The document GET /metrics answers from now on.
  void publish(std::string text);
  // Where it listens, as "HOST:PORT" with the port it got.
  const std::string& address() const { return _address; }
  // Requests for /metrics answered so far.
  uint64_t scrapes() const { return _scrapes.load(std::memory_order_relaxed); }

 private:
  void serve_loop();
  void answer(int fd);

  std::string _content_type;
  std::string _address;
  int _listen_fd = -1;
  int _wake_fd = -1;
  std::mutex _mu;
  std::string _text;  // guarded by _mu
  std::atomic<uint64_t> _scrapes{0};
  std::thread _thread;
};

}  // namespace sluice
