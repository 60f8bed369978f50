// engine/http: the curl-multi loop on its own (chains of submits, shutdown) and the AIMD limit.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include <rapidjson/document.h>

#include "engine/http/adaptive_limit.hpp"
#include "engine/http/client.hpp"
#include "engine/record_template.hpp"
#include "nodes/builtin_nodes.hpp"
#include "nodes/index_sqlite.hpp"
#include "nodes/index_sqlite_search.hpp"
#include "nodes/source_http_list.hpp"
#include "sim/sim.hpp"
#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

// The AIMD controller alone, on a made-up clock: 100 ms round trips, the limit always reached.
TEST(AdaptiveLimit, SlowStartDoublesBackPressureCutsThenGrowthIsOneAWindow) {
  using namespace std::chrono_literals;
  EXPECT_EQ(AimdLimit(100).limit(), AimdLimit::kInitial) << "no ramp from 1 by default";
  AimdLimit a(100, 1);
  auto t = AimdLimit::Clock::time_point{} + 1s;
  auto window = [&](bool backpressure, double rtt = 0.1) {
    a.on_start(a.limit());
    for (int i = 0; i < 4;
         ++i) {  // a window ends once its first and last are >= one mean RTT apart
      t += 40ms;
      a.observe(rtt, backpressure && i == 3, t);
    }
  };
  EXPECT_EQ(a.limit(), 1);
  for (int expect : {2, 4, 8, 16, 32, 64, 100, 100}) {
    window(false);
    EXPECT_EQ(a.limit(), expect);
  }
  EXPECT_TRUE(a.slow_start());
  window(true);
  EXPECT_EQ(a.limit(), 50) << "the first push-back halves: slow start may have overshot 2x";
  EXPECT_EQ(a.peak(), 100);
  EXPECT_FALSE(a.slow_start());
  window(false);
  EXPECT_EQ(a.limit(), 51) << "after the first cut, growth is additive";
  window(true);
  EXPECT_EQ(a.limit(), 45) << "later cuts take 10%";
  window(false, 0.3);
  EXPECT_EQ(a.limit(), 40) << "a round trip well above the mean is congestion too";
  // Not reaching the limit: nothing to learn, no growth.
  for (int i = 0; i < 4; ++i) {
    t += 40ms;
    a.observe(0.1, false, t);
  }
  EXPECT_EQ(a.limit(), 40);
  for (int i = 0; i < 40; ++i) window(true);
  EXPECT_EQ(a.limit(), 1) << "never below one";
}

// Callbacks that submit the next request of their chain, as fetch.http's `follow` does: every
// chain runs to its end, and when the client is destroyed mid-run every submit, those made by
// callbacks during the shutdown included, is called back exactly once.
TEST(HttpClient, ChainsSubmittedFromCallbacksAreEachCalledBackOnceThroughShutdown) {
  sim::SimOptions o;
  o.docs = 50;
  o.latency_ms = 5;
  test::RunningSim server(o);
  for (bool destroy_early : {false, true}) {
    std::atomic<int> submitted{0}, called{0}, ok{0}, shut{0}, chains_done{0};
    constexpr int kChains = 40, kLength = 12;
    {
      std::function<void(int, int)> step;  // outlives the client, whose destructor calls back
      http::Client client;
      step = [&](int chain, int i) {
        http::Request req;
        char id[32];
        int doc = static_cast<int>((chain * kLength + i) % o.docs) + 1;
        std::snprintf(id, sizeof id, "doc-%06d", doc);
        req.url = server.url() + "/docs/" + id;
        ++submitted;
        client.submit(std::move(req), {}, "", 0, [&, chain, i](http::Response&& r) {
          ++called;
          if (r.ok()) ++ok;
          else if (r.error == "HTTP client shut down") ++shut;
          // On the loop thread (the local path), failed or not, as a node starts its next
          // queued request whatever became of the last one.
          if (i + 1 < kLength) step(chain, i + 1);
          else ++chains_done;
        });
      };
      for (int c = 0; c < kChains; ++c) step(c, 0);
      // Early: once two requests a chain have been answered; else once every chain has ended.
      auto waited = [&] { return destroy_early ? ok >= kChains * 2 : chains_done == kChains; };
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (!waited() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }  // the client's destructor fails whatever is left
    EXPECT_EQ(submitted.load(), kChains * kLength) << "destroy_early=" << destroy_early;
    EXPECT_EQ(called.load(), submitted.load()) << "destroy_early=" << destroy_early;
    EXPECT_EQ(chains_done.load(), kChains);
    if (destroy_early) {
      // Cut short: what the shutdown failed includes the requests its own callbacks submitted.
      EXPECT_LT(ok.load(), kChains * kLength / 2);
      EXPECT_EQ(shut.load(), kChains * kLength - ok.load());
    } else {
      EXPECT_EQ(ok.load(), kChains * kLength);
    }
  }
}

// A request a callback submits under a rate-limited key leaves at once when the bucket has a
// token: the loop must not wait for its next wake-up (up to a second) to start it. A chain of
// 20 under an rpm that never binds took 4 to 20 s that way (one request in flight: a listing, a
// serial fetch); it takes a few milliseconds a link.
TEST(HttpClient, AChainUnderARateLimitLeavesAtOnceWhenTheBucketAllows) {
  sim::SimOptions o;
  o.docs = 20;
  test::RunningSim server(o);
  for (http::LoopKind kind : {http::LoopKind::epoll, http::LoopKind::poll}) {
    http::ClientOptions co;
    co.loop = kind;
    http::Client client(co);
    client.set_rate_limit("k", {60000, 0});  // 1,000 a second: never the limit here
    std::atomic<int> done{0};
    std::function<void(int)> step = [&](int i) {
      http::Request req;
      req.url = server.url() + "/docs/doc-000001";
      client.submit(std::move(req), {}, "k", 0, [&, i](http::Response&& r) {
        EXPECT_TRUE(r.ok()) << r.error;
        if (i + 1 < 20) step(i + 1);
        else done = 1;
      });
    };
    const auto t0 = std::chrono::steady_clock::now();
    step(0);
    while (!done && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_TRUE(done.load());
    EXPECT_LT(s, 3.0) << "20 chained requests, loop " << static_cast<int>(kind)
                      << " (waiting for the loop's next wake-up took 4-20 s)";
  }
}

// A loopback server whose every response is 2 MiB sent in 64 KiB pieces 5 ms apart, one thread
// per connection: many bodies arrive at once, as from a slow upstream.
class TricklingServer {
 public:
  static constexpr size_t kBody = size_t{2} << 20;
  TricklingServer() {
    _fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(_fd, 64);
    socklen_t len = sizeof a;
    ::getsockname(_fd, reinterpret_cast<sockaddr*>(&a), &len);
    _port = ntohs(a.sin_port);
    _accept = std::thread([this] {
      for (;;) {
        int c = ::accept(_fd, nullptr, nullptr);
        if (c < 0) return;
        std::lock_guard lock(_mu);
        _conns.emplace_back([c] { serve(c); });
      }
    });
  }
  ~TricklingServer() {
    ::shutdown(_fd, SHUT_RDWR);
    ::close(_fd);
    _accept.join();
    std::lock_guard lock(_mu);
    for (auto& t : _conns) t.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(_port) + "/"; }

 private:
  static void serve(int c) {
    char buf[4096];
    std::string req;
    while (req.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    std::string head = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kBody) +
                       "\r\nConnection: close\r\n\r\n";
    ::send(c, head.data(), head.size(), MSG_NOSIGNAL);
    const std::string piece(size_t{64} << 10, 'x');
    for (size_t sent = 0; sent < kBody; sent += piece.size()) {
      if (::send(c, piece.data(), piece.size(), MSG_NOSIGNAL) <= 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::close(c);
  }
  int _fd = -1;
  int _port = 0;
  std::thread _accept;
  std::mutex _mu;
  std::vector<std::thread> _conns;
};

// Many large bodies at once: the bytes received at once stay within max_body_bytes plus one
// response (the transfer allowed past it), and every request still completes whole.
TEST(HttpClient, BodiesReceivedAtOnceStayWithinTheBudget) {
  TricklingServer server;
  constexpr int kRequests = 12;
  auto fetch_all = [&](size_t budget) {
    http::ClientOptions co;
    co.max_body_bytes = budget;
    http::Client client(co);
    std::atomic<int> whole{0}, done{0};
    for (int i = 0; i < kRequests; ++i) {
      http::Request req;
      req.url = server.url() + std::to_string(i);
      client.submit(std::move(req), {}, "", 0, [&](http::Response&& r) {
        if (r.ok() && r.body.size() == TricklingServer::kBody) ++whole;
        ++done;
      });
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (done < kRequests && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(whole.load(), kRequests) << "budget " << budget;
    return client.stats();
  };
  const size_t budget = size_t{4} << 20;
  http::ClientStats bounded = fetch_all(budget);
  EXPECT_LE(bounded.body_bytes_peak, budget + TricklingServer::kBody)
      << "the budget plus one response";
  EXPECT_GT(bounded.paused, 0u) << "transfers waited for bytes to come free";
  http::ClientStats unbounded = fetch_all(0);
  EXPECT_GT(unbounded.body_bytes_peak, budget + TricklingServer::kBody)
      << "without a bound, more is held at once (the test exercises concurrent transfers)";
  EXPECT_EQ(unbounded.paused, 0u);
}

TEST(HttpClient, RetryAfterParsesSecondsAndDates) {
  EXPECT_EQ(http::parse_retry_after("7", 0), 7.0);
  EXPECT_EQ(http::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0), 10.0);
  EXPECT_LT(http::parse_retry_after("soon", 0), 0);
}

}  // namespace
}  // namespace sluice
