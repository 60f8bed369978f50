// Tests for sim/sim: an in-process SimServer on 127.0.0.1 and a tiny blocking HTTP/1.1 client
// (POSIX sockets, poll timeouts so every test stays bounded) check each endpoint's shape,
// keep-alive and pipelining, latency, rate limits, fault injection and the stats counters.
#include "sim/sim.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <set>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::sim::SimOptions;
using sluice::sim::SimServer;
using Clock = std::chrono::steady_clock;

struct Resp {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Blocking client over one keep-alive connection; every wait is bounded by timeout_ms.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  bool ok() const { return fd_ >= 0; }

  bool send_raw(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(size_t(n));
    }
    return true;
  }
  static std::string request(std::string_view method, std::string_view target,
                             std::string_view body = {}, std::string_view extra = {}) {
    std::string r(method);
    r.append(" ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if (method == "POST") {
      r.append("Content-Type: application/json\r\nContent-Length: ");
      r.append(std::to_string(body.size())).append("\r\n");
    }
    r.append(extra).append("\r\n").append(body);
    return r;
  }
  bool send_request(std::string_view method, std::string_view target, std::string_view body = {}) {
    return send_raw(request(method, target, body));
  }

  // Reads one response. False on timeout, EOF or error before a whole response; last_errno()
  // tells a reset (ECONNRESET) from a clean close (0) or a timeout (ETIMEDOUT).
  bool read_response(Resp& r, int timeout_ms = 3000, bool skip_continue = true) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    r = Resp{};
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline)) return false;
    std::string head = buf_.substr(0, head_end);
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return false;
    r.status = std::stoi(status_line.substr(9, 3));
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string h = head.substr(pos, e - pos);
      size_t colon = h.find(':');
      if (colon != std::string::npos) {
        std::string v = h.substr(colon + 1);
        while (!v.empty() && v.front() == ' ') v.erase(0, 1);
        r.headers[lower(h.substr(0, colon))] = v;
      }
      pos = e + 2;
    }
    size_t len = std::stoul(r.headers.count("content-length") ? r.headers["content-length"] : "0");
    while (buf_.size() < head_end + 4 + len)
      if (!fill(deadline)) return false;
    r.body = buf_.substr(head_end + 4, len);
    buf_.erase(0, head_end + 4 + len);
    if (r.status == 100 && skip_continue) return read_response(r, timeout_ms);
    return true;
  }

  Resp roundtrip(std::string_view method, std::string_view target, std::string_view body = {}) {
    Resp r;
    EXPECT_TRUE(send_request(method, target, body));
    EXPECT_TRUE(read_response(r)) << method << " " << target << " errno " << last_errno_;
    return r;
  }
  Resp get(std::string_view target) { return roundtrip("GET", target); }

  int last_errno() const { return last_errno_; }
  // True when the peer closed (EOF or reset) within timeout_ms with no data.
  bool closed_within(int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (fill(deadline)) {
    }
    return last_errno_ != ETIMEDOUT;
  }

 private:
  bool fill(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      last_errno_ = ETIMEDOUT;
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    int n = ::poll(&p, 1, int(left.count()));
    if (n <= 0) {
      last_errno_ = ETIMEDOUT;
      return false;
    }
    char tmp[65536];
    ssize_t got = ::recv(fd_, tmp, sizeof tmp, 0);
    if (got > 0) {
      buf_.append(tmp, size_t(got));
      return true;
    }
    last_errno_ = got == 0 ? 0 : errno;
    return false;
  }

  int fd_ = -1;
  std::string buf_;
  int last_errno_ = 0;
};

rapidjson::Document parse(const std::string& s) {
  rapidjson::Document d;
  d.Parse(s.c_str(), s.size());
  EXPECT_FALSE(d.HasParseError()) << s.substr(0, 300);
  return d;
}

bool valid_json(const std::string& s) {
  rapidjson::Document d;
  d.Parse(s.c_str(), s.size());
  return !d.HasParseError();
}

using Server = sluice::test::RunningSim;  // the shared fixture: started, stopped at scope end

uint64_t endpoint_status(const rapidjson::Document& st, const char* ep, const char* status) {
  const auto& be = st["by_endpoint"];
  if (!be.HasMember(ep)) return 0;
  const auto& s = be[ep]["statuses"];
  return s.HasMember(status) ? s[status].GetUint64() : 0;
}
uint64_t endpoint_requests(const rapidjson::Document& st, const char* ep) {
  const auto& be = st["by_endpoint"];
  return be.HasMember(ep) ? be[ep]["requests"].GetUint64() : 0;
}

// ---- /docs
// ---------------------------------------------------------------------------------------

TEST(Sim, DocsListingPages) {
  SimOptions o;
  o.docs = 250;
  Server s(o);
  Client c(s.port());
  ASSERT_TRUE(c.ok());
  Resp r = c.get("/docs");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "application/json");
  auto d = parse(r.body);
  ASSERT_EQ(d["items"].Size(), 100u);
  EXPECT_STREQ(d["items"][0]["id"].GetString(), "doc-000001");
  EXPECT_STREQ(d["items"][99]["id"].GetString(), "doc-000100");
  EXPECT_EQ(d["page"].GetInt(), 1);

  d = parse(c.get("/docs?page=3&per_page=100").body);
  ASSERT_EQ(d["items"].Size(), 50u);
  EXPECT_STREQ(d["items"][0]["id"].GetString(), "doc-000201");
  EXPECT_STREQ(d["items"][49]["id"].GetString(), "doc-000250");
  EXPECT_EQ(d["page"].GetInt(), 3);

  d = parse(c.get("/docs?per_page=7&page=2").body);
  ASSERT_EQ(d["items"].Size(), 7u);
  EXPECT_STREQ(d["items"][0]["id"].GetString(), "doc-000008");

  d = parse(c.get("/docs?page=4").body);
  EXPECT_TRUE(d["items"].IsArray());
  EXPECT_EQ(d["items"].Size(), 0u);

  EXPECT_EQ(c.get("/docs?page=0").status, 400);
  EXPECT_EQ(c.get("/docs?per_page=0").status, 400);
  EXPECT_EQ(c.get("/docs?per_page=abc").status, 400);
}

TEST(Sim, DocByIdIsDeterministic) {
  SimOptions o;
  o.docs = 20;
  o.doc_bytes = 700;
  Server s(o);
  Client c(s.port());
  Resp r1 = c.get("/docs/doc-000007");
  ASSERT_EQ(r1.status, 200);
  auto d = parse(r1.body);
  EXPECT_STREQ(d["id"].GetString(), "doc-000007");
  EXPECT_GT(d["title"].GetStringLength(), 5u);
  std::string text = d["text"].GetString();
  EXPECT_EQ(text.size(), 700u);
  EXPECT_NE(text.find(' '), std::string::npos);
  EXPECT_EQ(c.get("/docs/doc-000007").body, r1.body);
  EXPECT_NE(parse(c.get("/docs/doc-000008").body)["text"].GetString(), text);

  // Same seed in another server: same content; another seed: different.
  Server s2(o);
  Client c2(s2.port());
  EXPECT_EQ(c2.get("/docs/doc-000007").body, r1.body);
  o.seed = 99;
  Server s3(o);
  Client c3(s3.port());
  EXPECT_NE(c3.get("/docs/doc-000007").body, r1.body);

  for (const char* bad : {"/docs/doc-000021", "/docs/doc-000000", "/docs/nope", "/docs/doc-7"}) {
    Resp r = c.get(bad);
    EXPECT_EQ(r.status, 404) << bad;
    EXPECT_STREQ(parse(r.body)["error"].GetString(), "no such doc");
  }
}

TEST(Sim, DocForcedStatus) {
  Server s(SimOptions{});
  Client c(s.port());
  Resp r = c.get("/docs/doc-000001?status=400");
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(parse(r.body).HasMember("error"));
  r = c.get("/docs/doc-000001?status=503");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "1");
  r = c.get("/docs/doc-000001?status=200");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(c.get("/docs/doc-000001?status=abc").status, 400);
}

TEST(Sim, BigBody) {
  Server s(SimOptions{});
  Client c(s.port());
  Resp r = c.get("/big");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), size_t{5} << 20);
  EXPECT_TRUE(valid_json(r.body));
  EXPECT_EQ(c.get("/docs/doc-000001").status, 200);  // connection still usable
}

TEST(Sim, UnknownRouteAndMethod) {
  Server s(SimOptions{});
  Client c(s.port());
  EXPECT_EQ(c.get("/nope").status, 404);
  EXPECT_EQ(c.roundtrip("POST", "/docs", "{}").status, 405);
  EXPECT_EQ(c.get("/v1/embeddings").status, 405);
  auto st = s.stats();
  EXPECT_EQ(endpoint_status(st, "other", "404"), 1u);
  EXPECT_EQ(endpoint_status(st, "/docs", "405"), 1u);
}

// ---- HTTP behaviour
// ------------------------------------------------------------------------------

TEST(Sim, KeepAliveAndPipelining) {
  Server s(SimOptions{});
  Client c(s.port());
  for (int i = 1; i <= 20; ++i) {
    char path[64];
    std::snprintf(path, sizeof path, "/docs/doc-%06d", i);
    Resp r = c.get(path);
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(parse(r.body)["id"].GetString(), std::string(path + 6));
  }
  // Three pipelined requests in one write come back in order.
  std::string burst = Client::request("GET", "/docs/doc-000003") +
                      Client::request("GET", "/docs/doc-000001") +
                      Client::request("GET", "/docs/doc-000002");
  ASSERT_TRUE(c.send_raw(burst));
  for (const char* want : {"doc-000003", "doc-000001", "doc-000002"}) {
    Resp r;
    ASSERT_TRUE(c.read_response(r));
    EXPECT_STREQ(parse(r.body)["id"].GetString(), want);
  }
  EXPECT_EQ(s.stats()["requests"].GetUint64(), 23u);
}

TEST(Sim, PipelinedResponsesKeepOrderUnderJitter) {
  SimOptions o;
  o.latency_ms = 20;
  o.latency_jitter_ms = 19;
  Server s(o);
  Client c(s.port());
  std::string burst;
  for (int i = 1; i <= 30; ++i) {
    char path[64];
    std::snprintf(path, sizeof path, "/docs/doc-%06d", i);
    burst += Client::request("GET", path);
  }
  ASSERT_TRUE(c.send_raw(burst));
  for (int i = 1; i <= 30; ++i) {
    Resp r;
    ASSERT_TRUE(c.read_response(r));
    char want[32];
    std::snprintf(want, sizeof want, "doc-%06d", i);
    EXPECT_STREQ(parse(r.body)["id"].GetString(), want);
  }
}

TEST(Sim, PartialWritesOneByteAtATime) {
  Server s(SimOptions{});
  Client c(s.port());
  std::string body = R"({"input":["hello world"]})";
  std::string req = Client::request("POST", "/v1/embeddings", body);
  for (char ch : req) {
    ASSERT_TRUE(c.send_raw(std::string_view(&ch, 1)));
    if (ch == '\n') std::this_thread::sleep_for(1ms);
  }
  Resp r;
  ASSERT_TRUE(c.read_response(r));
  EXPECT_EQ(r.status, 200);
}

TEST(Sim, ConnectionCloseIsHonoured) {
  Server s(SimOptions{});
  Client c(s.port());
  ASSERT_TRUE(c.send_raw(Client::request("GET", "/docs/doc-000001", {}, "Connection: close\r\n")));
  Resp r;
  ASSERT_TRUE(c.read_response(r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(lower(r.headers["connection"]), "close");
  EXPECT_TRUE(c.closed_within(2000));
}

TEST(Sim, BadRequestLineIs400AndCloses) {
  Server s(SimOptions{});
  Client c(s.port());
  ASSERT_TRUE(c.send_raw("GARBAGE\r\n\r\n"));
  Resp r;
  ASSERT_TRUE(c.read_response(r));
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(c.closed_within(2000));
  Client c2(s.port());
  ASSERT_TRUE(c2.send_raw("GET /docs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
  ASSERT_TRUE(c2.read_response(r));
  EXPECT_EQ(r.status, 501);
  Client c3(s.port());
  ASSERT_TRUE(c3.send_raw("GET /docs/doc-000001 HTTP/1.0\r\n\r\n"));  // 1.0: closes after
  ASSERT_TRUE(c3.read_response(r));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(c3.closed_within(2000));
}

TEST(Sim, OversizedRequestIs413) {
  Server s(SimOptions{});
  Client c(s.port());
  ASSERT_TRUE(c.send_raw("POST /_bulk HTTP/1.1\r\nHost: x\r\nContent-Length: 17000000\r\n\r\n{"));
  Resp r;
  ASSERT_TRUE(c.read_response(r));
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(c.closed_within(2000));
}

TEST(Sim, ExpectContinueGetsInterimResponse) {
  Server s(SimOptions{});
  Client c(s.port());
  std::string body = R"({"input":"abc"})";
  ASSERT_TRUE(c.send_raw("POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         "Content-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n"));
  Resp r;
  ASSERT_TRUE(c.read_response(r, 2000, /*skip_continue=*/false));  // before the body is sent
  EXPECT_EQ(r.status, 100);
  ASSERT_TRUE(c.send_raw(body));
  ASSERT_TRUE(c.read_response(r));
  EXPECT_EQ(r.status, 200);
}

// ---- latency, rate limits, faults
// ------------------------------------------------------------------

TEST(Sim, LatencyDelaysResponses) {
  SimOptions o;
  o.latency_ms = 50;
  Server s(o);
  Client c(s.port());
  auto t0 = Clock::now();
  Resp r = c.get("/docs/doc-000001");
  auto ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(ms, 45);
  EXPECT_LT(ms, 1000);
  // /stats is not delayed.
  t0 = Clock::now();
  EXPECT_EQ(c.get("/stats").status, 200);
  double stats_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_LT(stats_ms, 40);
}

TEST(Sim, PeakConcurrentCountsSlowRequests) {
  SimOptions o;
  o.latency_ms = 200;
  Server s(o);
  std::vector<std::unique_ptr<Client>> cs;
  for (int i = 0; i < 5; ++i) {
    cs.push_back(std::make_unique<Client>(s.port()));
    ASSERT_TRUE(cs.back()->send_request("GET", "/docs/doc-000001"));
  }
  for (auto& c : cs) {
    Resp r;
    ASSERT_TRUE(c->read_response(r));
    EXPECT_EQ(r.status, 200);
  }
  auto st = s.stats();
  EXPECT_GE(st["peak_concurrent"].GetUint64(), 5u);
  EXPECT_EQ(st["in_flight"].GetUint64(), 0u);
}

TEST(Sim, RpmLimitPerSecondWindow) {
  SimOptions o;
  o.rpm = 120;  // 2 per 1-second window
  Server s(o);
  Client c(s.port());
  sluice::test::align_to_second();
  int ok = 0, limited = 0;
  for (int i = 0; i < 6; ++i) {
    Resp r = c.get("/docs/doc-000001");
    if (r.status == 200) ++ok;
    if (r.status == 429) {
      ++limited;
      EXPECT_EQ(r.headers["retry-after"], "1");
      EXPECT_STREQ(parse(r.body)["error"].GetString(), "rate limited");
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(limited, 4);
  EXPECT_EQ(c.get("/stats").status, 200);  // never rate limited
  EXPECT_EQ(endpoint_status(s.stats(), "/docs/{id}", "429"), 4u);
  // The next window admits requests again.
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(c.get("/docs/doc-000001").status, 200);
}

TEST(Sim, TpmLimitCountsEmbeddingTokens) {
  SimOptions o;
  o.tpm = 600;  // 10 tokens per window
  Server s(o);
  Client c(s.port());
  std::string body = R"({"model":"m","input":[")" + std::string(40, 'a') + R"("]})";  // 10 tokens
  sluice::test::align_to_second();
  EXPECT_EQ(c.roundtrip("POST", "/v1/embeddings", body).status, 200);
  Resp r = c.roundtrip("POST", "/v1/embeddings", body);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(c.get("/docs/doc-000001").status, 200);  // tpm only limits embeddings
}

TEST(Sim, ErrorRateAnswers500ButNotStats) {
  SimOptions o;
  o.error_rate = 1;
  Server s(o);
  Client c(s.port());
  Resp r = c.get("/docs/doc-000001");
  EXPECT_EQ(r.status, 500);
  EXPECT_STREQ(parse(r.body)["error"].GetString(), "simulated");
  EXPECT_EQ(c.roundtrip("POST", "/v1/embeddings", R"({"input":"x"})").status, 500);
  EXPECT_EQ(c.get("/stats").status, 200);
}

TEST(Sim, ResetRateResetsConnection) {
  SimOptions o;
  o.reset_rate = 1;
  Server s(o);
  Client c(s.port());
  ASSERT_TRUE(c.send_request("GET", "/docs/doc-000001"));
  Resp r;
  EXPECT_FALSE(c.read_response(r, 2000));
  EXPECT_NE(c.last_errno(), ETIMEDOUT);  // closed, not silent
  EXPECT_EQ(c.last_errno(), ECONNRESET);
  // Stats over a fresh connection still work.
  Client c2(s.port());
  EXPECT_EQ(c2.get("/stats").status, 200);
  auto st = s.stats();
  EXPECT_EQ(st["resets"].GetUint64(), 1u);
  EXPECT_EQ(st["in_flight"].GetUint64(), 0u);
}

TEST(Sim, TimeoutRateNeverAnswers) {
  SimOptions o;
  o.timeout_rate = 1;
  Server s(o);
  Client c(s.port());
  ASSERT_TRUE(c.send_request("GET", "/docs/doc-000001"));
  Resp r;
  EXPECT_FALSE(c.read_response(r, 300));
  EXPECT_EQ(c.last_errno(), ETIMEDOUT);  // still open, nothing sent
  EXPECT_EQ(s.stats()["timeouts"].GetUint64(), 1u);
}

TEST(Sim, MalformedRateBreaksTheBody) {
  SimOptions o;
  o.malformed_rate = 1;
  Server s(o);
  Client c(s.port());
  Resp r = c.get("/docs/doc-000001");
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.body.empty());
  EXPECT_FALSE(valid_json(r.body));
  r = c.get("/docs");
  EXPECT_FALSE(valid_json(r.body));
  EXPECT_TRUE(valid_json(c.get("/stats").body));
}

TEST(Sim, FaultsAreDeterministicForASeed) {
  auto run = [](uint64_t seed) {
    SimOptions o;
    o.error_rate = 0.5;
    o.seed = seed;
    Server s(o);
    Client c(s.port());
    std::string seq;
    for (int i = 0; i < 40; ++i) seq += c.get("/docs/doc-000001").status == 200 ? '.' : 'E';
    return seq;
  };
  std::string a = run(7);
  EXPECT_EQ(a, run(7));
  EXPECT_NE(a.find('E'), std::string::npos);
  EXPECT_NE(a.find('.'), std::string::npos);
}

// ---- stats -------------------------------------------------------------------------------------

TEST(Sim, StatsCountWhatWasSent) {
  SimOptions o;
  o.docs = 10;
  Server s(o);
  Client c(s.port());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.get("/docs/doc-000001").status, 200);
  EXPECT_EQ(c.get("/docs/doc-000099").status, 404);
  EXPECT_EQ(c.get("/docs").status, 200);
  EXPECT_EQ(c.get("/docs?page=2").status, 200);
  auto st = s.stats();
  EXPECT_EQ(st["requests"].GetUint64(), 6u);
  EXPECT_EQ(endpoint_requests(st, "/docs/{id}"), 4u);
  EXPECT_EQ(endpoint_status(st, "/docs/{id}", "200"), 3u);
  EXPECT_EQ(endpoint_status(st, "/docs/{id}", "404"), 1u);
  EXPECT_EQ(endpoint_requests(st, "/docs"), 2u);
  EXPECT_EQ(st["in_flight"].GetUint64(), 0u);
  EXPECT_EQ(st["resets"].GetUint64(), 0u);
  EXPECT_EQ(st["timeouts"].GetUint64(), 0u);

  // GET /stats serves the same document (counting itself).
  auto web = parse(c.get("/stats").body);
  EXPECT_EQ(web["requests"].GetUint64(), 7u);
  EXPECT_EQ(endpoint_requests(web, "/stats"), 1u);
  EXPECT_EQ(endpoint_status(web, "/docs/{id}", "200"), 3u);
  EXPECT_TRUE(web["bulk"].HasMember("distinct_ids"));
  EXPECT_TRUE(web["embeddings"].HasMember("tokens"));
}

// ---- embeddings --------------------------------------------------------------------------------

TEST(Sim, EmbeddingsShape) {
  Server s(SimOptions{});
  Client c(s.port());
  Resp r =
      c.roundtrip("POST", "/v1/embeddings",
                  R"({"model":"text-embedding-3-small","input":["hello","a longer text here"]})");
  ASSERT_EQ(r.status, 200);
  auto d = parse(r.body);
  EXPECT_STREQ(d["object"].GetString(), "list");
  EXPECT_STREQ(d["model"].GetString(), "text-embedding-3-small");
  ASSERT_EQ(d["data"].Size(), 2u);
  for (unsigned i = 0; i < 2; ++i) {
    const auto& e = d["data"][i];
    EXPECT_STREQ(e["object"].GetString(), "embedding");
    EXPECT_EQ(e["index"].GetUint(), i);
    ASSERT_EQ(e["embedding"].Size(), 64u);
    double norm = 0;
    for (const auto& x : e["embedding"].GetArray()) norm += x.GetDouble() * x.GetDouble();
    EXPECT_NEAR(norm, 1.0, 1e-4);
  }
  // ceil(5/4) + ceil(18/4) = 2 + 5
  EXPECT_EQ(d["usage"]["prompt_tokens"].GetInt(), 7);
  EXPECT_EQ(d["usage"]["total_tokens"].GetInt(), 7);

  // Deterministic per text, independent of position; dimensions honoured; a string input works.
  auto d2 =
      parse(c.roundtrip("POST", "/v1/embeddings", R"({"input":"hello","dimensions":8})").body);
  ASSERT_EQ(d2["data"].Size(), 1u);
  EXPECT_EQ(d2["data"][0]["embedding"].Size(), 8u);
  auto d3 = parse(c.roundtrip("POST", "/v1/embeddings", R"({"input":["x","hello"]})").body);
  EXPECT_EQ(d3["data"][1]["embedding"][0].GetDouble(), d["data"][0]["embedding"][0].GetDouble());
  EXPECT_NE(d3["data"][0]["embedding"][0].GetDouble(), d["data"][0]["embedding"][0].GetDouble());

  for (const char* bad : {R"({"model":"m"})", R"({"input":3})", R"({"input":[1,2]})", "not json",
                          R"({"input":[]})", R"({"input":"x","dimensions":0})"}) {
    Resp b = c.roundtrip("POST", "/v1/embeddings", bad);
    EXPECT_EQ(b.status, 400) << bad;
    EXPECT_TRUE(parse(b.body).HasMember("error"));
  }
  auto st = s.stats();
  EXPECT_EQ(st["embeddings"]["inputs"].GetUint64(), 5u);
  EXPECT_EQ(st["embeddings"]["tokens"].GetUint64(), 7u + 2u + 1u + 2u);
}

TEST(Sim, GeminiBatchEmbedContentsShape) {
  Server s(SimOptions{});
  Client c(s.port());
  std::string path = "/v1beta/models/gemini-embedding-001:batchEmbedContents";
  auto req = [](const std::string& text, const char* model = "models/gemini-embedding-001",
                int dim = 0) {
    std::string r = std::string(R"({"model":")") + model + R"(","content":{"parts":[{"text":")" +
                    text + R"("}]})";
    if (dim) r += ",\"outputDimensionality\":" + std::to_string(dim);
    return r + "}";
  };
  // The key: none is 403, an unknown one 400, in Google's error shape.
  Resp nokey = c.roundtrip("POST", path, "{\"requests\":[" + req("hello") + "]}");
  EXPECT_EQ(nokey.status, 403);
  EXPECT_STREQ(parse(nokey.body)["error"]["status"].GetString(), "PERMISSION_DENIED");
  EXPECT_EQ(c.roundtrip("POST", path + "?key=bad", "{\"requests\":[" + req("hello") + "]}").status,
            400);
  EXPECT_EQ(c.roundtrip("POST", path + "?key=k", "{\"requests\":[" + req("hello") + "]}").status,
            200);
  path += "?key=k";
  Resp r = c.roundtrip("POST", path,
                       "{\"requests\":[" + req("hello") + "," + req("a longer text here") + "]}");
  ASSERT_EQ(r.status, 200) << r.body;
  auto d = parse(r.body);
  ASSERT_EQ(d["embeddings"].Size(), 2u);
  ASSERT_EQ(d["embeddings"][0]["values"].Size(), 64u);
  double norm = 0;
  for (const auto& x : d["embeddings"][0]["values"].GetArray())
    norm += x.GetDouble() * x.GetDouble();
  EXPECT_NEAR(norm, 1.0, 1e-4);
  // The same text gets the same vector as from /v1/embeddings, so graphs can switch embedders.
  auto o = parse(c.roundtrip("POST", "/v1/embeddings", R"({"input":["hello"]})").body);
  EXPECT_EQ(o["data"][0]["embedding"][5].GetDouble(), d["embeddings"][0]["values"][5].GetDouble());
  auto d8 = parse(c.roundtrip("POST", path,
                              "{\"requests\":[" + req("x", "models/gemini-embedding-001", 8) + "]}")
                      .body);
  EXPECT_EQ(d8["embeddings"][0]["values"].Size(), 8u);

  // What the real API refuses, in its error shape.
  std::string many = "{\"requests\":[";
  for (int i = 0; i < 101; ++i) {
    if (i) many += ',';
    many += req("t");
  }
  many += "]}";
  for (const std::string& bad :
       {many, std::string("{\"requests\":[]}"), std::string("not json"),
        "{\"requests\":[" + req("x", "models/other") + "]}",
        std::string(R"({"requests":[{"model":"models/gemini-embedding-001","content":{}}]})")}) {
    Resp b = c.roundtrip("POST", path, bad);
    EXPECT_EQ(b.status, 400) << bad.substr(0, 80);
    auto e = parse(b.body);
    ASSERT_TRUE(e.HasMember("error")) << b.body;
    EXPECT_EQ(e["error"]["code"].GetInt(), 400);
    EXPECT_STREQ(e["error"]["status"].GetString(), "INVALID_ARGUMENT");
  }
  EXPECT_NE(parse(c.roundtrip("POST", path, many).body)["error"]["message"].GetString(),
            std::string());
  EXPECT_EQ(c.roundtrip("GET", path, "").status, 405);
  auto st = s.stats();
  EXPECT_EQ(st["embeddings"]["inputs"].GetUint64(), 5u);  // 4 here, 1 from /v1/embeddings
  EXPECT_EQ(st["by_endpoint"]["/v1beta/models/{model}:batchEmbedContents"]["requests"].GetUint64(),
            12u);
}

// ---- bulk --------------------------------------------------------------------------------------

TEST(Sim, BulkIndexesAndTracksDuplicates) {
  Server s(SimOptions{});
  Client c(s.port());
  std::string body = "{\"index\":{\"_index\":\"chunks\",\"_id\":\"a\"}}\n{\"text\":\"one\"}\n"
                     "{\"index\":{\"_index\":\"chunks\",\"_id\":\"b\"}}\n{\"text\":\"two\"}\n";
  Resp r = c.roundtrip("POST", "/_bulk", body);
  ASSERT_EQ(r.status, 200);
  auto d = parse(r.body);
  EXPECT_FALSE(d["errors"].GetBool());
  ASSERT_EQ(d["items"].Size(), 2u);
  EXPECT_STREQ(d["items"][0]["index"]["_id"].GetString(), "a");
  EXPECT_STREQ(d["items"][0]["index"]["_index"].GetString(), "chunks");
  EXPECT_EQ(d["items"][0]["index"]["status"].GetInt(), 201);

  // Same id again through the per-index route (no _index in the action): 200, counted once.
  r = c.roundtrip("POST", "/chunks/_bulk",
                  "{\"index\":{\"_id\":\"a\"}}\n{\"text\":\"one again\"}\n");
  d = parse(r.body);
  EXPECT_EQ(d["items"][0]["index"]["status"].GetInt(), 200);
  EXPECT_STREQ(d["items"][0]["index"]["_index"].GetString(), "chunks");
  r = c.roundtrip("POST", "/chunks/_bulk", "{\"index\":{\"_id\":\"a\"}}\n{\"text\":\"third\"}\n");
  EXPECT_EQ(parse(r.body)["items"][0]["index"]["status"].GetInt(), 200);

  auto st = s.stats();
  EXPECT_EQ(st["bulk"]["distinct_ids"].GetUint64(), 2u);
  EXPECT_EQ(st["bulk"]["ids_indexed_more_than_once"].GetUint64(), 1u);
  EXPECT_EQ(endpoint_requests(st, "/_bulk"), 1u);
  EXPECT_EQ(endpoint_requests(st, "/{index}/_bulk"), 2u);

  // A bad source line fails its item only; a bad action line fails the request.
  r = c.roundtrip("POST", "/_bulk",
                  "{\"index\":{\"_index\":\"x\",\"_id\":\"1\"}}\n{not json\n"
                  "{\"create\":{\"_index\":\"x\",\"_id\":\"2\"}}\n{\"t\":1}\n");
  d = parse(r.body);
  EXPECT_TRUE(d["errors"].GetBool());
  EXPECT_EQ(d["items"][0]["index"]["status"].GetInt(), 400);
  EXPECT_EQ(d["items"][1]["create"]["status"].GetInt(), 201);
  EXPECT_EQ(c.roundtrip("POST", "/_bulk", "nope\n{}\n").status, 400);
  EXPECT_EQ(c.roundtrip("POST", "/_bulk", "{\"index\":{\"_id\":\"q\"}}\n{}\n").status, 200);
}

TEST(Sim, BulkFailRateAnswers429Items) {
  SimOptions o;
  o.bulk_fail_rate = 1;
  Server s(o);
  Client c(s.port());
  Resp r = c.roundtrip("POST", "/idx/_bulk",
                       "{\"index\":{\"_id\":\"a\"}}\n{}\n{\"index\":{\"_id\":\"b\"}}\n{}\n");
  ASSERT_EQ(r.status, 200);
  auto d = parse(r.body);
  EXPECT_TRUE(d["errors"].GetBool());
  for (const auto& it : d["items"].GetArray()) {
    EXPECT_EQ(it["index"]["status"].GetInt(), 429);
    EXPECT_TRUE(it["index"].HasMember("error"));
  }
  EXPECT_EQ(s.stats()["bulk"]["distinct_ids"].GetUint64(), 0u);
}

// ---- Sefaria ------------------------------------------------------------------------------------

// Walks the TOC: categories have category/heCategory/contents and no title; books have title,
// categories and primary_category and no contents; collections are flagged. Returns max depth.
int walk_toc(const rapidjson::Value& arr, int depth, std::vector<std::string>& books,
             int& collections) {
  int deepest = depth;
  for (const auto& n : arr.GetArray()) {
    if (n.HasMember("contents")) {
      EXPECT_TRUE(n.HasMember("category"));
      EXPECT_TRUE(n.HasMember("heCategory"));
      EXPECT_FALSE(n.HasMember("title"));
      deepest = std::max(deepest, walk_toc(n["contents"], depth + 1, books, collections));
    } else if (n.HasMember("isCollection") && n["isCollection"].GetBool()) {
      EXPECT_STREQ(n["nodeType"].GetString(), "TocCollectionNode");
      ++collections;
    } else {
      EXPECT_TRUE(n["categories"].IsArray());
      EXPECT_TRUE(n["primary_category"].IsString());
      EXPECT_TRUE(n["heTitle"].IsString());
      books.emplace_back(n["title"].GetString());
      deepest = std::max(deepest, depth + 1);
    }
  }
  return deepest;
}

std::string all_strings(const rapidjson::Value& v) {
  if (v.IsString()) return std::string(v.GetString()) + "\n";
  std::string out;
  if (v.IsArray())
    for (const auto& x : v.GetArray()) out += all_strings(x);
  return out;
}

int array_depth(const rapidjson::Value& v) {
  return v.IsArray() ? 1 + (v.Empty() ? 0 : array_depth(v[0])) : 0;
}

TEST(Sim, SefariaIndexShape) {
  Server s(SimOptions{});
  Client c(s.port());
  Resp r = c.get("/sefaria/api/index");
  ASSERT_EQ(r.status, 200);
  auto d = parse(r.body);
  ASSERT_TRUE(d.IsArray());
  std::vector<std::string> books;
  int collections = 0;
  EXPECT_GE(walk_toc(d, 0, books, collections), 5);
  EXPECT_EQ(collections, 1);
  for (const char* t : {"Genesis", "Berakhot", "Rashi on Genesis", "Pesach Haggadah"})
    EXPECT_NE(std::find(books.begin(), books.end(), t), books.end()) << t;
}

TEST(Sim, SefariaTexts) {
  Server s(SimOptions{});
  Client c(s.port());
  // Primary (Hebrew) only without a version parameter.
  auto d = parse(c.get("/sefaria/api/v3/texts/Genesis%201").body);
  ASSERT_EQ(d["versions"].Size(), 1u);
  EXPECT_STREQ(d["versions"][0]["language"].GetString(), "he");
  EXPECT_STREQ(d["versions"][0]["direction"].GetString(), "rtl");
  EXPECT_EQ(d["available_versions"].Size(), 2u);

  d = parse(c.get("/sefaria/api/v3/texts/Genesis%201?version=english").body);
  ASSERT_EQ(d["versions"].Size(), 1u);
  EXPECT_STREQ(d["versions"][0]["language"].GetString(), "en");
  EXPECT_STREQ(d["versions"][0]["actualLanguage"].GetString(), "en");
  EXPECT_EQ(d["versions"][0]["text"].Size(), 4u);
  EXPECT_STREQ(d["ref"].GetString(), "Genesis 1");
  EXPECT_STREQ(d["next"].GetString(), "Genesis 2");
  EXPECT_TRUE(d["prev"].IsNull());
  EXPECT_EQ(d["textDepth"].GetInt(), 2);
  EXPECT_STREQ(d["firstAvailableSectionRef"].GetString(), "Genesis 1");
  EXPECT_FALSE(d["isComplex"].GetBool());
  EXPECT_EQ(d["warnings"].Size(), 0u);
  EXPECT_EQ(d["sections"][0].GetInt(), 1);

  // Both versions, repeatable parameter; a missing version is a warning, not an error.
  d = parse(
      c.get("/sefaria/api/v3/texts/Genesis%203?version=english&version=primary&version=french")
          .body);
  EXPECT_EQ(d["versions"].Size(), 2u);
  EXPECT_EQ(d["warnings"].Size(), 1u);
  EXPECT_TRUE(d["next"].IsNull());
  EXPECT_STREQ(d["prev"].GetString(), "Genesis 2");

  // Segment ref: a string; book ref: nested arrays; markup and entities appear in English.
  d = parse(c.get("/sefaria/api/v3/texts/Genesis.1.2?version=english").body);
  EXPECT_TRUE(d["versions"][0]["text"].IsString());
  d = parse(c.get("/sefaria/api/v3/texts/Genesis?version=english").body);
  EXPECT_EQ(array_depth(d["versions"][0]["text"]), 2);
  std::string all = all_strings(d["versions"][0]["text"]);
  d = parse(c.get("/sefaria/api/v3/texts/Exodus?version=english").body);
  all += all_strings(d["versions"][0]["text"]);
  d = parse(c.get("/sefaria/api/v3/texts/Psalms?version=english").body);
  all += all_strings(d["versions"][0]["text"]);
  EXPECT_NE(all.find('<'), std::string::npos);
  EXPECT_NE(all.find("&nbsp;"), std::string::npos);
  d = parse(c.get("/sefaria/api/v3/texts/Psalms?version=english&return_format=text_only").body);
  std::string plain = all_strings(d["versions"][0]["text"]);
  EXPECT_EQ(plain.find('<'), std::string::npos);
  EXPECT_EQ(c.get("/sefaria/api/v3/texts/Genesis%201?return_format=xml").status, 400);

  // Errors.
  Resp r = c.get("/sefaria/api/v3/texts/Genesis%204");
  EXPECT_EQ(r.status, 404);
  EXPECT_STREQ(parse(r.body)["error"].GetString(), "Genesis ends at Chapter 3.");
  r = c.get("/sefaria/api/v3/texts/Nothing%201");
  EXPECT_EQ(r.status, 404);
  EXPECT_STREQ(parse(r.body)["error"].GetString(), "Could not find title in reference: Nothing 1");

  // Talmud: empty 1a/1b, navigation skips them.
  d = parse(c.get("/sefaria/api/v3/texts/Berakhot%201a").body);
  EXPECT_EQ(d["versions"][0]["text"].Size(), 0u);
  EXPECT_STREQ(d["firstAvailableSectionRef"].GetString(), "Berakhot 2a");
  d = parse(c.get("/sefaria/api/v3/texts/Berakhot%202a").body);
  EXPECT_EQ(d["versions"][0]["text"].Size(), 3u);
  EXPECT_TRUE(d["prev"].IsNull());
  EXPECT_STREQ(d["next"].GetString(), "Berakhot 2b");

  // Depth 3: sections are verse-level, next skips empty ones.
  d = parse(c.get("/sefaria/api/v3/texts/Rashi%20on%20Genesis%201").body);
  EXPECT_EQ(d["textDepth"].GetInt(), 3);
  EXPECT_EQ(array_depth(d["versions"][0]["text"]), 2);
  d = parse(c.get("/sefaria/api/v3/texts/Rashi%20on%20Genesis%201:2").body);
  EXPECT_STREQ(d["next"].GetString(), "Rashi on Genesis 3:1");
  EXPECT_STREQ(d["prev"].GetString(), "Rashi on Genesis 1:1");

  // Complex: the book-level ref is a 400, nodes work and next crosses nodes.
  r = c.get("/sefaria/api/v3/texts/Pesach%20Haggadah");
  EXPECT_EQ(r.status, 400);
  d = parse(c.get("/sefaria/api/v3/texts/Pesach%20Haggadah%2C%20Kadesh?version=english").body);
  EXPECT_EQ(d["versions"][0]["text"].Size(), 2u);
  EXPECT_TRUE(d["isComplex"].GetBool());
  EXPECT_STREQ(d["next"].GetString(), "Pesach Haggadah, Urchatz");
}

// The sim renders each section's text once and serves it from memory: a book-level ref is its
// sections' texts, and a text is the same whichever order asked for it first, per version and
// format.
TEST(Sim, SefariaTextsAreTheSameWhicheverRefAskedFirst) {
  Server first_sections(SimOptions{}), first_book(SimOptions{});
  Client a(first_sections.port()), b(first_book.port());
  auto text = [](Client& c, const std::string& ref, const char* query) {
    auto d = parse(c.get("/sefaria/api/v3/texts/" + ref + query).body);
    return all_strings(d["versions"][0]["text"]);
  };
  for (const char* q : {"?version=english", "?version=english&return_format=text_only", ""}) {
    SCOPED_TRACE(q);
    std::string sections;
    for (const char* ref : {"Genesis%201", "Genesis%202", "Genesis%203"})
      sections += text(a, ref, q);
    std::string book = text(b, "Genesis", q);
    EXPECT_FALSE(book.empty());
    EXPECT_EQ(book, sections);
    EXPECT_EQ(text(a, "Genesis", q), book);
    EXPECT_EQ(text(b, "Genesis%202", q), text(a, "Genesis%202", q));
    // Depth 3: a chapter is its verse-level sections.
    EXPECT_EQ(text(b, "Rashi%20on%20Genesis%201", q),
              text(a, "Rashi%20on%20Genesis%201:1", q) + text(a, "Rashi%20on%20Genesis%201:2", q));
  }
  // Versions and formats are told apart.
  EXPECT_NE(text(a, "Genesis%201", "?version=english"), text(a, "Genesis%201", ""));
  EXPECT_NE(text(a, "Genesis%201", "?version=english"),
            text(a, "Genesis%201", "?version=english&return_format=text_only"));
}

TEST(Sim, SefariaShape) {
  Server s(SimOptions{});
  Client c(s.port());
  auto d = parse(c.get("/sefaria/api/shape/Genesis").body);
  ASSERT_TRUE(d.IsArray());
  EXPECT_EQ(d[0]["chapters"].Size(), 3u);
  EXPECT_EQ(d[0]["chapters"][0].GetInt(), 4);
  d = parse(c.get("/sefaria/api/shape/Berakhot").body);
  EXPECT_EQ(d[0]["chapters"][0].GetInt(), 0);
  EXPECT_EQ(d[0]["chapters"][1].GetInt(), 0);
  d = parse(c.get("/sefaria/api/shape/Rashi%20on%20Genesis").body);
  EXPECT_TRUE(d[0]["chapters"][0].IsArray());
  d = parse(c.get("/sefaria/api/shape/Pesach%20Haggadah").body);
  EXPECT_TRUE(d[0]["isComplex"].GetBool());
  EXPECT_STREQ(d[0]["chapters"][0]["title"].GetString(), "Pesach Haggadah, Kadesh");
  EXPECT_EQ(c.get("/sefaria/api/shape/Nope").status, 404);
}

// ---- OpenAlex -----------------------------------------------------------------------------------

std::vector<std::string> oa_walk(Client& c, size_t per_page, int* requests, int* null_abstracts) {
  std::vector<std::string> ids;
  std::string cursor = "*";
  *requests = 0;
  for (int guard = 0; guard < 100; ++guard) {
    Resp r = c.get("/openalex/works?filter=type:article&per_page=" + std::to_string(per_page) +
                   "&cursor=" + cursor);
    ++*requests;
    EXPECT_EQ(r.status, 200);
    auto d = parse(r.body);
    EXPECT_TRUE(d["meta"]["page"].IsNull());
    EXPECT_TRUE(d["group_by"].IsArray());
    for (const auto& w : d["results"].GetArray()) {
      ids.emplace_back(w["id"].GetString());
      EXPECT_TRUE(w["display_name"].IsString());
      if (w["abstract_inverted_index"].IsNull()) ++*null_abstracts;
      else EXPECT_TRUE(w["abstract_inverted_index"].IsObject());
    }
    if (d["meta"]["next_cursor"].IsNull() || d["results"].Empty()) break;
    cursor = d["meta"]["next_cursor"].GetString();
  }
  return ids;
}

TEST(Sim, OpenAlexCursorPaging) {
  SimOptions o;
  o.docs = 60;
  Server s(o);
  Client c(s.port());
  int requests = 0, nulls = 0;
  auto ids = oa_walk(c, 25, &requests, &nulls);
  EXPECT_EQ(ids.size(), 60u);
  EXPECT_EQ(requests, 3);  // 25, 25, 10 (short page: null cursor)
  EXPECT_GT(nulls, 0);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end());

  o.docs = 50;  // exact multiple: one more request returns [] and null
  Server s2(o);
  Client c2(s2.port());
  ids = oa_walk(c2, 25, &requests, &nulls);
  EXPECT_EQ(ids.size(), 50u);
  EXPECT_EQ(requests, 3);

  auto d = parse(c.get("/openalex/works?per_page=2&cursor=*").body);
  EXPECT_EQ(d["meta"]["count"].GetInt(), 60);
  const auto& w = d["results"][0];
  EXPECT_TRUE(std::string(w["id"].GetString()).starts_with("https://openalex.org/W"));
  EXPECT_TRUE(w.HasMember("doi"));
  EXPECT_TRUE(w["publication_year"].IsInt());

  Resp r = c.get("/openalex/works?per_page=201");
  EXPECT_EQ(r.status, 400);
  EXPECT_STREQ(parse(r.body)["message"].GetString(),
               "per-page parameter must be between 1 and 200.");
  EXPECT_EQ(c.get("/openalex/works?cursor=garbage").status, 400);
  EXPECT_EQ(c.get("/openalex/works?api_key=bad").status, 401);
  d = parse(c.get("/openalex/works?page=3&per_page=25").body);
  EXPECT_EQ(d["results"].Size(), 10u);
  EXPECT_EQ(d["meta"]["page"].GetInt(), 3);
}

// The filters the predefined graph sends narrow the listing as OpenAlex's do; windows of
// publication dates that meet cover a year exactly once.
TEST(Sim, OpenAlexFiltersNarrowTheListingAndDateWindowsCoverAYear) {
  SimOptions o;
  o.docs = 3500;  // 100 works a year, 1990..2024
  Server s(o);
  Client c(s.port());
  auto count = [&](const std::string& filter) {
    Resp r = c.get("/openalex/works?per_page=1&filter=" + filter);
    EXPECT_EQ(r.status, 200) << filter << ": " << r.body;
    return parse(r.body)["meta"]["count"].GetUint64();
  };
  EXPECT_EQ(count("publication_year:2024"), 100u);
  EXPECT_EQ(count("publication_year:2023%7C2024"), 200u) << "a|b";
  EXPECT_EQ(count("publication_year:%3E2019"), 500u) << ">2019";
  const uint64_t with = count("publication_year:2024,has_abstract:true");
  EXPECT_EQ(with + count("publication_year:2024,has_abstract:false"), 100u);
  EXPECT_GT(with, 60u);
  EXPECT_LT(with, 95u) << "about one in five has no abstract";
  EXPECT_EQ(count("type:article"), 3500u);
  EXPECT_EQ(count("type:book"), 0u);
  // Month windows of 2024, by publication date, add up to the year, and each work's date lies
  // in the window that listed it.
  uint64_t months = 0;
  for (int m = 1; m <= 12; ++m) {
    char from[32], to[32];
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    std::snprintf(from, sizeof from, "2024-%02d-01", m);
    std::snprintf(to, sizeof to, "2024-%02d-%02d", m, days[m - 1]);
    const std::string f =
        std::string("from_publication_date:") + from + ",to_publication_date:" + to;
    months += count(f);
    auto d = parse(c.get("/openalex/works?per_page=200&filter=" + f).body);
    for (const auto& w : d["results"].GetArray()) {
      const std::string date = w["publication_date"].GetString();
      EXPECT_TRUE(date >= from && date <= to) << date << " outside " << from << ".." << to;
      EXPECT_EQ(w["publication_year"].GetInt(), 2024);
    }
  }
  EXPECT_EQ(months, 100u);
  // A cursor walk of a filter lists its works once; an unknown key or a bad date is a 400.
  std::set<std::string> ids;
  std::string cursor = "*";
  for (int guard = 0; guard < 20 && !cursor.empty(); ++guard) {
    auto d = parse(
        c.get("/openalex/works?per_page=30&filter=publication_year:2024&cursor=" + cursor).body);
    for (const auto& w : d["results"].GetArray())
      EXPECT_TRUE(ids.insert(w["id"].GetString()).second);
    cursor = d["meta"]["next_cursor"].IsString() ? d["meta"]["next_cursor"].GetString() : "";
  }
  EXPECT_EQ(ids.size(), 100u);
  Resp bad = c.get("/openalex/works?filter=color:blue");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(parse(bad.body)["message"].GetString(), std::string()) << bad.body;
  EXPECT_EQ(c.get("/openalex/works?filter=to_publication_date:2023-02-29").status, 400);
}

TEST(Sim, OpenAlex429CarriesRetryAfter) {
  SimOptions o;
  o.rpm = 60;  // 1 per window
  Server s(o);
  Client c(s.port());
  sluice::test::align_to_second();
  EXPECT_EQ(c.get("/openalex/works").status, 200);
  Resp r = c.get("/openalex/works");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(parse(r.body)["retryAfter"].GetInt(), 1);
}

// ---- lifecycle ---------------------------------------------------------------------------------

TEST(Sim, StopReturnsPromptlyWithPendingWork) {
  SimOptions o;
  o.latency_ms = 10000;
  auto s = std::make_unique<SimServer>(o);
  int port = s->start();
  EXPECT_EQ(s->port(), port);
  EXPECT_EQ(s->start(), port);  // already running
  Client c1(port), c2(port);
  ASSERT_TRUE(c1.send_request("GET", "/docs/doc-000001"));
  ASSERT_TRUE(c2.send_request("GET", "/docs"));
  std::this_thread::sleep_for(50ms);
  auto t0 = Clock::now();
  s->stop();
  s->stop();  // idempotent
  EXPECT_LT(Clock::now() - t0, 500ms);
  EXPECT_TRUE(c1.closed_within(1000));
  s.reset();
}

TEST(Sim, ManyConnections) {
  Server s(SimOptions{});
  std::vector<std::unique_ptr<Client>> cs;
  for (int i = 0; i < 200; ++i) cs.push_back(std::make_unique<Client>(s.port()));
  for (auto& c : cs) ASSERT_TRUE(c->send_request("GET", "/docs/doc-000002"));
  for (auto& c : cs) {
    Resp r;
    ASSERT_TRUE(c->read_response(r));
    EXPECT_EQ(r.status, 200);
  }
  EXPECT_EQ(s.stats()["requests"].GetUint64(), 200u);
}

}  // namespace
