// engine/http: the curl-multi loop on its own (chains of submits, shutdown) and the AIMD limit.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
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
  AimdLimit a(100);
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

TEST(HttpClient, RetryAfterParsesSecondsAndDates) {
  EXPECT_EQ(http::parse_retry_after("7", 0), 7.0);
  EXPECT_EQ(http::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0), 10.0);
  EXPECT_LT(http::parse_retry_after("soon", 0), 0);
}

}  // namespace
}  // namespace sluice
