// engine/http's trust rules, against a scripted loopback server: the headers a config attaches
// go only to the origin they were configured for (redirects and next pages included), a header
// or URL that would inject more headers is never sent, and redirects that can never succeed
// (loops, other schemes) fail at once instead of being retried.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>

#include "engine/http/client.hpp"
#include "tests/script_server.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using test::ScriptServer;
using test::SeenRequest;

constexpr const char* kCanary = "canary-secret-4711";

// One request through a fresh client; the response, or a failed test after 20 s.
http::Response fetch(http::Request req, http::RetryPolicy policy = {}) {
  http::Client client;
  std::promise<http::Response> done;
  auto result = done.get_future();
  client.submit(std::move(req), policy, "", 0,
                [&](http::Response&& r) { done.set_value(std::move(r)); });
  EXPECT_EQ(result.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  return result.get();
}

http::Request with_key(const std::string& url, const std::string& method = "GET") {
  http::Request req;
  req.method = method;
  req.url = url;
  req.headers = {std::string("X-Api-Key: ") + kCanary};
  if (method == "POST") req.body = R"({"input": "text"})";
  return req;
}

// Redirects /start to `location` with `status`; answers everything else 200 "landed".
ScriptServer::Handler redirect_to(const std::string& location, int status = 302) {
  return [location, status](const SeenRequest& r) {
    if (r.target == "/start")
      return ScriptServer::respond(status, "", "Location: " + location + "\r\n");
    return ScriptServer::respond(200, "landed");
  };
}

TEST(HttpTrust, OriginOfNormalizesSchemeHostAndPort) {
  EXPECT_EQ(http::origin_of("https://API.Example.org/v1?x=1"), "https://api.example.org:443");
  EXPECT_EQ(http::origin_of("http://127.0.0.1:8080/a"), "http://127.0.0.1:8080");
  EXPECT_EQ(http::origin_of("http://u:p@host/"), "http://host:80");
  EXPECT_EQ(http::origin_of("ftp://host/"), "");
  EXPECT_EQ(http::origin_of("not a url"), "");
}

TEST(HttpTrust, ACrossOriginRedirectWithConfiguredHeadersIsRefusedAndNothingLeaves) {
  for (int status : {301, 302, 303, 307, 308}) {
    ScriptServer* self = nullptr;
    ScriptServer server([&](const SeenRequest& r) {
      if (r.target == "/start")
        return ScriptServer::respond(status, "",
                                     "Location: " + self->other_origin_url("/land") + "\r\n");
      return ScriptServer::respond(200, "landed");
    });
    self = &server;
    http::Response resp = fetch(with_key(server.url("/start"), "POST"));
    EXPECT_FALSE(resp.ok()) << status;
    EXPECT_NE(resp.error.find("refused"), std::string::npos) << resp.error;
    EXPECT_NE(resp.error.find("trusted_origins"), std::string::npos) << resp.error;
    EXPECT_EQ(resp.error.find(kCanary), std::string::npos) << "the message keeps the key out";
    auto seen = server.seen();
    ASSERT_EQ(seen.size(), 1u) << status << ": only the first request left";
    EXPECT_EQ(resp.attempts, 1) << "a refusal is final, not retried";
  }
}

TEST(HttpTrust, ATrustedOriginGetsTheHeadersAndSameOriginRedirectsAreFollowed) {
  ScriptServer* self = nullptr;
  ScriptServer server([&](const SeenRequest& r) {
    if (r.target == "/start")
      return ScriptServer::respond(307, "", "Location: " + self->other_origin_url("/hop") + "\r\n");
    if (r.target == "/hop") return ScriptServer::respond(302, "", "Location: /land\r\n");
    return ScriptServer::respond(200, "landed");
  });
  self = &server;
  http::Request req = with_key(server.url("/start"), "POST");
  req.trusted_origins = {http::origin_of(server.other_origin_url())};
  http::Response resp = fetch(req);
  ASSERT_TRUE(resp.ok()) << resp.error;
  EXPECT_EQ(resp.body, "landed");
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].method, "POST") << "307 keeps the method";
  EXPECT_TRUE(seen[1].has(kCanary)) << "the trusted origin gets the key";
  EXPECT_TRUE(seen[1].has(R"({"input": "text"})")) << "307 keeps the body";
  EXPECT_EQ(seen[2].method, "GET") << "a 302 answering a POST continues as a GET";
  EXPECT_TRUE(seen[2].body.empty());
}

TEST(HttpTrust, ARequestWithoutHeadersFollowsARedirectAnywhere) {
  ScriptServer* self = nullptr;
  ScriptServer server([&](const SeenRequest& r) {
    if (r.target == "/start")
      return ScriptServer::respond(302, "",
                                   "Location: " + self->other_origin_url("/land") + "\r\n");
    return ScriptServer::respond(200, "landed");
  });
  self = &server;
  http::Request req;
  req.url = server.url("/start");
  http::Response resp = fetch(req);
  ASSERT_TRUE(resp.ok()) << resp.error;
  EXPECT_EQ(resp.body, "landed");
}

TEST(HttpTrust, RedirectLoopsAndOtherSchemesFailAtOnceWithoutRetries) {
  ScriptServer loop(redirect_to("/start"));
  auto t0 = std::chrono::steady_clock::now();
  http::Response resp = fetch(with_key(loop.url("/start")));
  EXPECT_FALSE(resp.ok());
  EXPECT_NE(resp.error.find("more than 5 redirects"), std::string::npos) << resp.error;
  EXPECT_EQ(loop.seen().size(), 6u) << "the first request and five redirects, no retry";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));

  for (const char* target : {"ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://h/"}) {
    ScriptServer server(redirect_to(target));
    http::Request req;
    req.url = server.url("/start");
    http::Response r = fetch(req);
    EXPECT_FALSE(r.ok()) << target;
    EXPECT_NE(r.error.find("refused scheme"), std::string::npos) << r.error;
    EXPECT_EQ(server.seen().size(), 1u) << target << ": not retried";
  }
}

TEST(HttpTrust, AHeaderOrUrlWithALineBreakIsNeverSent) {
  ScriptServer server([](const SeenRequest&) { return ScriptServer::respond(200, "ok"); });
  for (const std::string& header :
       {std::string("X-Id: a\r\nX-Injected: yes"), std::string("X-Id: a\nX-Injected: yes"),
        std::string("X-Id: a\0b", 9)}) {
    http::Request req;
    req.url = server.url("/x");
    req.headers = {header};
    http::Response resp = fetch(req);
    EXPECT_FALSE(resp.ok());
    EXPECT_NE(resp.error.find("X-Id"), std::string::npos) << resp.error;
    EXPECT_EQ(resp.attempts, 0);
  }
  http::Request req;
  req.url = server.url("/x\r\nX-Injected: yes");
  EXPECT_FALSE(fetch(req).ok());
  EXPECT_TRUE(server.seen().empty()) << "nothing reached the server";
}

// A graph whose fetch sends header X-Doc built from each record's id.
std::string header_graph(const test::TempDir& dir, const std::string& url,
                         const std::string& header_value) {
  return R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") + R"("},
    "nodes": [{"id": "in", "type": "source.jsonl", "params": {"path": ")" +
         (dir / "in.jsonl") + R"("}},
      {"id": "fetch", "type": "fetch.http", "params": {"url": ")" +
         url + R"(", "headers": {"X-Doc": )" + header_value + R"(}}},
      {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
         (dir / "out.jsonl") +
         R"("}}],
    "edges": [["in", "fetch"], ["fetch", "out"]]})";
}

TEST(HttpTrust, AHeaderARecordFillsWithALineBreakDeadLettersThatRecordAlone) {
  ScriptServer server([](const SeenRequest&) { return ScriptServer::respond(200, "body"); });
  test::TempDir dir;
  test::write_file(dir / "in.jsonl", R"({"id": "good", "text": "t"}
{"id": "bad\r\nX-Injected: yes", "text": "t"}
{"id": "also-good", "text": "t"}
)");
  RunReport rep = test::run_json(header_graph(dir, server.url("/d"), R"("{id}")"));
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.docs_indexed, 2u);
  EXPECT_EQ(rep.dead_lettered, 1u);
  EXPECT_NE(test::read_file(dir / "dlq.jsonl").find("header injection"), std::string::npos);
  for (const auto& r : server.seen()) EXPECT_FALSE(r.has("X-Injected")) << r.head;
  EXPECT_EQ(server.seen().size(), 2u);
}

TEST(HttpTrust, AStaticHeaderWithALineBreakIsAConfigError) {
  test::TempDir dir;
  test::write_file(dir / "in.jsonl", "{\"id\": \"a\"}\n");
  try {
    test::spec_from(header_graph(dir, "http://127.0.0.1:9/d", R"("v\r\nX-Injected: yes")"));
    FAIL() << "a header with a line break in the config must be refused";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("header injection"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("headers"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sluice
