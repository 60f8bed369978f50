// index.chroma against a real Chroma 1.0 server (the chromadb npm package scripts/setup installs
// into data/chroma), started on loopback in a temp dir for this suite and stopped after it.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <thread>

#include "tests/script_server.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using namespace std::chrono_literals;

std::string chroma_cli() {
  return test::source_dir() + "/data/chroma/node_modules/chromadb/dist/cli.mjs";
}

class ChromaServer {
 public:
  ChromaServer() : _port(test::free_port()) {
    std::string cmd = "node '" + chroma_cli() + "' run --path '" + _dir / "data" +
                      "' --host 127.0.0.1 --port " + std::to_string(_port) + " > '" +
                      _dir / "chroma.log" + "' 2>&1 & echo $! > '" + _dir / "pid" + "'";
    if (std::system(cmd.c_str()) != 0) return;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (test::http_get(url() + "/api/v2/heartbeat").status == 200) {
        _up = true;
        return;
      }
      std::this_thread::sleep_for(200ms);
    }
  }
  ~ChromaServer() {
    std::string cmd = "kill $(cat '" + _dir / "pid" + "') 2>/dev/null; sleep 0.3";
    (void)!std::system(cmd.c_str());
  }
  bool up() const { return _up; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(_port); }
  std::string log() const { return test::read_file(_dir / "chroma.log"); }
  std::string collections() const {
    return url() + "/api/v2/tenants/default_tenant/databases/default_database/collections";
  }

 private:
  test::TempDir _dir;
  int _port;
  bool _up = false;
};

// A POST with a JSON body; the parsed answer (null when it is not JSON).
rapidjson::Document post(const std::string& url, const std::string& body) {
  test::TempDir dir;
  test::write_file(dir / "body.json", body);
  std::string cmd = "curl -s -X POST -H 'Content-Type: application/json' --data-binary @'" +
                    dir / "body.json" + "' '" + url + "' > '" + dir / "out.json" + "'";
  rapidjson::Document d;
  if (std::system(cmd.c_str()) == 0) d.Parse(test::read_file(dir / "out.json").c_str());
  return d;
}

class Chroma : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(chroma_cli())) return;
    server = std::make_unique<ChromaServer>();
  }
  static void TearDownTestSuite() { server.reset(); }
  void SetUp() override {
    if (!server) {
      if (std::getenv("CI")) FAIL() << "chromadb is not installed (scripts/setup installs it)";
      GTEST_SKIP() << "chromadb is not installed in data/chroma: run scripts/setup";
    }
    ASSERT_TRUE(server->up()) << server->log();
  }

  // source.range → chunk.recursive → embed.hash → index.chroma; `settings` as JSON members.
  static std::string graph(const std::string& collection, int docs, int chunk_size,
                           const std::string& extra = "", bool embed = true,
                           const std::string& settings = "") {
    std::string sink = R"({"id": "sink", "type": "index.chroma", "params": {"url": ")" +
                       server->url() + R"(", "collection": ")" + collection + "\"" + extra + "}}";
    return R"({"settings": {)" + settings + R"(}, "nodes": [
      {"id": "docs", "type": "source.range", "params": {"count": )" +
           std::to_string(docs) + R"(, "size": 2000, "seed": 3}},
      {"id": "chunk", "type": "chunk.recursive", "params": {"size": )" +
           std::to_string(chunk_size) + R"(}},
      )" + (embed ? R"({"id": "embed", "type": "embed.hash", "params": {"dim": 32}},)" : "") +
           sink +
           R"(],
      "edges": [["docs", "chunk"], )" +
           (embed ? R"(["chunk", "embed"], ["embed", "sink"])" : R"(["chunk", "sink"])") + "]}";
  }

  // The collection's id and its record count.
  static std::string collection_id(const std::string& name) {
    rapidjson::Document d;
    d.Parse(test::http_get(server->collections() + "/" + name).body.c_str());
    return d.IsObject() && d.HasMember("id") ? d["id"].GetString() : "";
  }
  static int64_t count(const std::string& name) {
    std::string body =
        test::http_get(server->collections() + "/" + collection_id(name) + "/count").body;
    return body.empty() ? -1 : std::stoll(body);
  }

  static std::unique_ptr<ChromaServer> server;
};

std::unique_ptr<ChromaServer> Chroma::server;

TEST_F(Chroma, UpsertsChunksWithTheirVectorsTextAndMetadata) {
  RunReport r = test::run_json(graph("chunks-a", 30, 500));
  ASSERT_EQ(r.error, "");
  ASSERT_GT(r.chunks, 60u);
  EXPECT_EQ(r.indexed, r.chunks);
  EXPECT_EQ(count("chunks-a"), static_cast<int64_t>(r.chunks));
  const std::string base = server->collections() + "/" + collection_id("chunks-a");
  rapidjson::Document got =
      post(base + "/get",
           R"({"ids": ["range-00000007#1"], "include": ["documents", "metadatas", "embeddings"]})");
  ASSERT_TRUE(got.IsObject() && got["ids"].IsArray() && got["ids"].Size() == 1) << server->log();
  EXPECT_STREQ(got["metadatas"][0]["doc_id"].GetString(), "range-00000007");
  EXPECT_EQ(got["metadatas"][0]["seq"].GetInt(), 1);
  EXPECT_GT(got["documents"][0].GetStringLength(), 100u);
  ASSERT_EQ(got["embeddings"][0].Size(), 32u);
  // Its own vector finds it first.
  std::string vec = "[";
  for (const auto& v : got["embeddings"][0].GetArray())
    vec += (vec.size() > 1 ? "," : "") + std::to_string(v.GetDouble());
  rapidjson::Document q =
      post(base + "/query", R"({"query_embeddings": [)" + vec + R"(]], "n_results": 3})");
  ASSERT_TRUE(q.IsObject() && q["ids"].IsArray()) << server->log();
  EXPECT_STREQ(q["ids"][0][0].GetString(), "range-00000007#1");
  // A second run upserts the same ids: nothing doubles.
  RunReport again = test::run_json(graph("chunks-a", 30, 500));
  ASSERT_EQ(again.error, "");
  EXPECT_EQ(count("chunks-a"), static_cast<int64_t>(r.chunks));
}

TEST_F(Chroma, AReplacedDocumentLosesTheChunksItNoLongerHas) {
  RunReport small = test::run_json(graph("replace-b", 20, 300));
  ASSERT_EQ(small.error, "");
  EXPECT_EQ(count("replace-b"), static_cast<int64_t>(small.chunks));
  RunReport large = test::run_json(graph("replace-b", 20, 1000));
  ASSERT_EQ(large.error, "");
  ASSERT_LT(large.chunks, small.chunks);
  EXPECT_EQ(count("replace-b"), static_cast<int64_t>(large.chunks));
  // Without replace_docs the earlier chunks stay.
  RunReport keep = test::run_json(graph("replace-b", 20, 300, R"(, "replace_docs": false)"));
  ASSERT_EQ(keep.error, "");
  RunReport plain = test::run_json(graph("replace-b", 20, 1000, R"(, "replace_docs": false)"));
  ASSERT_EQ(plain.error, "");
  EXPECT_EQ(count("replace-b"), static_cast<int64_t>(small.chunks));
}

TEST_F(Chroma, BatchesStayWithinTheServersLimit) {
  // The server takes at most max_batch_size (5,461 here) records an upsert; ask for more, with
  // enough documents in flight and a linger long enough that a batch would pass it.
  RunReport r =
      test::run_json(graph("batch-c", 1500, 500, R"(, "batch": 100000, "linger_ms": 60000)", true,
                           R"("max_inflight_docs": 2000)"));
  ASSERT_EQ(r.error, "");
  ASSERT_GT(r.chunks, 5461u);
  EXPECT_EQ(r.dead_lettered, 0u);
  // Not one upsert was refused (a batch past the limit would be, then halved and sent again).
  for (const auto& [code, n] : r.http.by_status) EXPECT_LT(code, 400) << n << " answered " << code;
  EXPECT_EQ(count("batch-c"), static_cast<int64_t>(r.chunks));
}

TEST_F(Chroma, ErrorsNameWhatToDo) {
  RunReport missing = test::run_json(graph("not-there", 2, 500, R"(, "create_collection": false)"));
  EXPECT_NE(missing.error.find("opening Chroma collection \"not-there\""), std::string::npos)
      << missing.error;
  EXPECT_NE(missing.error.find("\"create_collection\": true"), std::string::npos);
  RunReport no_vectors = test::run_json(graph("vectorless", 3, 500, "", false));
  EXPECT_EQ(no_vectors.indexed, 0u);
  EXPECT_GT(no_vectors.dead_lettered, 0u);
  ASSERT_FALSE(no_vectors.dead_letter_reasons.empty());
  EXPECT_NE(no_vectors.dead_letter_reasons[0].reason.find("needs a vector"), std::string::npos);
  // A name Chroma would refuse is a config error, with where it is.
  std::string bad = test::config_errors(graph("x", 1, 500));
  EXPECT_NE(bad.find("params.collection: collection must be 3-512 characters"), std::string::npos)
      << bad;
  // A wrong dimension for an existing collection: the batch is refused whole, its records
  // dead-lettered.
  RunReport dim = test::run_json(graph("chunks-dim", 3, 500));
  ASSERT_EQ(dim.error, "");
  std::string other = graph("chunks-dim", 3, 500);
  other.replace(other.find("\"dim\": 32"), 9, "\"dim\": 16");
  RunReport wrong = test::run_json(other);
  EXPECT_EQ(wrong.indexed, 0u);
  ASSERT_FALSE(wrong.dead_letter_reasons.empty());
  EXPECT_EQ(wrong.dead_letter_reasons[0].reason, "HTTP 400");  // the body is in the dead letter
  EXPECT_EQ(count("chunks-dim"), static_cast<int64_t>(dim.chunks));
}

// A stand-in server with a batch limit of 7: no upsert carries more, and every chunk is sent.
TEST(ChromaOffline, UpsertsNeverPassTheServersMaxBatchSize) {
  test::ScriptServer server([](const test::SeenRequest& r) {
    if (r.target == "/api/v2/pre-flight-checks")
      return test::ScriptServer::respond(200, R"({"max_batch_size": 7})");
    if (r.target.find("/upsert") != std::string::npos)
      return test::ScriptServer::respond(200, "{}");
    if (r.target.find("/count") != std::string::npos) return test::ScriptServer::respond(200, "0");
    if (r.method == "POST" && r.target.find("/collections") != std::string::npos)
      return test::ScriptServer::respond(200, R"({"id": "0b5c8a1e-1111-4222-8333-444455556666"})");
    return test::ScriptServer::respond(404, "{}");
  });
  RunReport r = test::run_json(R"({"nodes": [
      {"id": "docs", "type": "source.range", "params": {"count": 10, "size": 2000}},
      {"id": "chunk", "type": "chunk.recursive", "params": {"size": 300}},
      {"id": "embed", "type": "embed.hash", "params": {"dim": 4}},
      {"id": "sink", "type": "index.chroma", "params": {"url": ")" +
                               server.url() + R"(", "collection": "abc"}}],
      "edges": [["docs", "chunk"], ["chunk", "embed"], ["embed", "sink"]]})");
  ASSERT_EQ(r.error, "");
  ASSERT_GT(r.chunks, 30u);
  size_t sent = 0, upserts = 0;
  for (const auto& req : server.seen()) {
    if (req.target.find("/upsert") == std::string::npos) continue;
    EXPECT_EQ(req.target, "/api/v2/tenants/default_tenant/databases/default_database/collections/"
                          "0b5c8a1e-1111-4222-8333-444455556666/upsert");
    rapidjson::Document d;
    d.Parse(req.body.c_str());
    ASSERT_TRUE(d.IsObject() && d["ids"].IsArray()) << req.body.substr(0, 200);
    EXPECT_LE(d["ids"].Size(), 7u);
    EXPECT_EQ(d["embeddings"].Size(), d["ids"].Size());
    sent += d["ids"].Size();
    ++upserts;
  }
  EXPECT_EQ(sent, r.chunks);
  EXPECT_GE(upserts, r.chunks / 7);
}

TEST(ChromaOffline, AServerThatIsNotThereIsAClearError) {
  RunReport r = test::run_json(R"({"nodes": [
      {"id": "docs", "type": "source.range", "params": {"count": 2}},
      {"id": "embed", "type": "embed.hash", "params": {"dim": 8}},
      {"id": "sink", "type": "index.chroma", "params": {"url": "http://127.0.0.1:)" +
                               std::to_string(test::free_port()) + R"(", "collection": "abc",
        "retry": {"max_attempts": 1}}}],
      "edges": [["docs", "embed"], ["embed", "sink"]]})");
  EXPECT_NE(r.error.find("did not answer its pre-flight check"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace sluice
