// The engine's guarantees: every chunk reaches every sink exactly once through fan-out and
// fan-in at any thread count, in-flight documents stay bounded, and nothing vanishes unnoticed.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "engine/graph/batcher.hpp"
#include "engine/thread_role.hpp"
#include "nodes/builtin_nodes.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

int64_t sqlite_count(const std::string& db, const char* sql) {
  sqlite3* h = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(h, sql, -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(h);
  int64_t n = -1;
  if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(h);
  return n;
}

std::string fan_graph(const test::TempDir& dir, int docs, int max_inflight) {
  return R"({
  "settings": {"max_inflight_docs": )" +
         std::to_string(max_inflight) + R"(},
  "nodes": [
    {"id": "src", "type": "source.range", "params": {"count": )" +
         std::to_string(docs) + R"(, "size": 3000, "seed": 3}},
    {"id": "words", "type": "chunk.recursive", "params": {"size": 200, "id_tag": "w"}},
    {"id": "sentences", "type": "chunk.sentence", "params": {"size": 300, "id_tag": "s"}, "concurrency": 2},
    {"id": "embed", "type": "embed.hash", "params": {"dim": 32}},
    {"id": "db", "type": "index.sqlite", "params": {"path": ")" +
         (dir / "fan.db") + R"(", "batch": 64}},
    {"id": "file", "type": "index.jsonl", "params": {"path": ")" +
         (dir / "fan.jsonl") + R"(", "batch": 100}}
  ],
  "edges": [["src", "words"], ["src", "sentences"], ["words", "embed"], ["sentences", "embed"],
            ["embed", "db"], ["embed", "file"]]
})";
}

class EngineThreads : public ::testing::TestWithParam<int> {};

TEST_P(EngineThreads, FanOutAndFanInIndexEveryChunkExactlyOnce) {
  test::TempDir dir;
  const int docs = 200, max_inflight = 8;
  RunReport rep = test::run_json(fan_graph(dir, docs, max_inflight), GetParam());
  ASSERT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs, static_cast<uint64_t>(docs));
  EXPECT_EQ(rep.docs_indexed, static_cast<uint64_t>(docs));
  EXPECT_GT(rep.chunks, static_cast<uint64_t>(docs) * 2);
  EXPECT_LE(rep.peak_inflight_docs, max_inflight);
  EXPECT_GE(rep.peak_inflight_docs, 1);
  // Two sinks: each chunk is indexed once in each; `indexed` counts a record once, not per sink.
  EXPECT_EQ(rep.indexed, rep.chunks);
  int sinks = 0;
  for (const auto& n : rep.nodes)
    if (n.role == NodeRole::sink) {
      ++sinks;
      EXPECT_EQ(n.out, rep.chunks) << n.id;
    }
  EXPECT_EQ(sinks, 2);
  EXPECT_NE(rep.table().find("records indexed per sink: "), std::string::npos) << rep.table();

  auto lines = test::read_lines(dir / "fan.jsonl");
  EXPECT_EQ(lines.size(), rep.chunks);
  std::set<std::string> ids;
  for (const auto& l : lines) ids.insert(l.substr(0, l.find("\",\"doc_id\"")));
  EXPECT_EQ(ids.size(), rep.chunks) << "a chunk id was written twice";

  EXPECT_EQ(sqlite_count(dir / "fan.db", "SELECT count(*) FROM chunks"),
            static_cast<int64_t>(rep.chunks));
  EXPECT_EQ(sqlite_count(dir / "fan.db", "SELECT count(*) FROM chunks WHERE id LIKE '%#w%'") +
                sqlite_count(dir / "fan.db", "SELECT count(*) FROM chunks WHERE id LIKE '%#s%'"),
            static_cast<int64_t>(rep.chunks));
  EXPECT_EQ(sqlite_count(dir / "fan.db", "SELECT count(DISTINCT doc_id) FROM chunks"), docs);
}

INSTANTIATE_TEST_SUITE_P(Threads, EngineThreads, ::testing::Values(1, 2, 4, 8));

TEST(Engine, BatchLargerThanInflightLimitDoesNotStall) {
  // batch 512 and linger 10 s with only 2 documents in flight: the partial batch must be written
  // when the graph goes idle, not after the linger.
  test::TempDir dir;
  RunReport rep = test::run_json(R"({
  "settings": {"max_inflight_docs": 2},
  "nodes": [
    {"id": "src", "type": "source.range", "params": {"count": 40, "size": 100}},
    {"id": "k", "type": "index.jsonl", "params": {"path": ")" +
                                 (dir / "o.jsonl") + R"(", "batch": 512, "linger_ms": 10000}}
  ],
  "edges": [["src", "k"]]
})");
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 40u);
  EXPECT_LT(rep.elapsed_s, 10.0);
  EXPECT_EQ(test::read_lines(dir / "o.jsonl").size(), 40u);
}

// Test-only nodes, registered next to the built-ins.
class ForgetfulNode final : public Node {
 public:
  void process(RecordPtr, Emitter&) override {
  }  // no output, no outcome: a bug the engine must catch
};

class ThrowingNode final : public Node {
 public:
  void process(RecordPtr in, Emitter& out) override {
    if (in->id.back() % 3 == 0) throw std::runtime_error("boom on " + in->id);
    out.emit(std::move(in));
  }
};

class SlowNode final : public Node {
 public:
  void process(RecordPtr in, Emitter& out) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    out.emit(std::move(in));
  }
};

// Hands each record to a thread of its own outside the arena (as the HTTP loop is), which
// offloads the rest of the work: the offloaded part must run on an arena thread, count as the
// node's busy time, and keep the graph from finishing before it did. Records whose id ends in
// `fail_digit` throw there instead.
class OffloadingNode final : public Node {
 public:
  explicit OffloadingNode(char fail_digit = 0) : _fail_digit(fail_digit) {}
  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    _output->hold();
    std::lock_guard lock(_mu);
    _threads.emplace_back([this, in = std::move(in)] {
      t_outside_arena = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      _output->offload([this, in] {
        if (tbb::this_task_arena::current_thread_index() < 0 || t_outside_arena)
          off_arena.fetch_add(1);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        bool fail = in->id.back() == _fail_digit;
        if (!fail) _output->forward(in);
        else _output->finish(in, Outcome::dead_lettered, "offload failed");
        _output->release();
        if (fail) throw std::runtime_error("parse failed for " + in->id);
      });
    });
  }
  void close() override {
    std::lock_guard lock(_mu);
    for (auto& t : _threads) t.join();
  }
  static inline std::atomic<int> off_arena{0};

 private:
  char _fail_digit;
  std::mutex _mu;
  std::vector<std::thread> _threads;
};

const Registry& test_registry() {
  static const Registry reg = [] {
    Registry r;
    register_builtin_nodes(r);
    auto add = [&](const char* type, const std::function<std::unique_ptr<Node>()>& make) {
      NodeTypeInfo i;
      i.type = type;
      i.description = "test node";
      i.make_node = [make](const NodeInit&) { return make(); };
      r.add(std::move(i));
    };
    add("test.forgetful", [] { return std::make_unique<ForgetfulNode>(); });
    add("test.throwing", [] { return std::make_unique<ThrowingNode>(); });
    add("test.slow", [] { return std::make_unique<SlowNode>(); });
    add("test.offload", [] { return std::make_unique<OffloadingNode>(); });
    add("test.offload_throws", [] { return std::make_unique<OffloadingNode>('7'); });
    return r;
  }();
  return reg;
}

std::string through(const std::string& type, const std::string& extra_settings = "",
                    int count = 30) {
  return R"({"settings": {"max_inflight_docs": 4)" + extra_settings + R"(},
  "nodes": [{"id": "src", "type": "source.range", "params": {"count": )" +
         std::to_string(count) + R"(, "size": 50}},
            {"id": "t", "type": ")" +
         type + R"("},
            {"id": "k", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
  "edges": [["src", "t"], ["t", "k"]]})";
}

TEST(Engine, RecordWithoutOutcomeIsCountedLost) {
  RunReport rep = test::run_json(through("test.forgetful"), 2, test_registry());
  EXPECT_EQ(rep.lost, 30u);
  EXPECT_EQ(rep.docs, 30u);
  EXPECT_EQ(rep.exit_code(), 1);
}

TEST(Engine, ExceptionDeadLettersTheRecordWithItsReason) {
  test::TempDir dir;
  RunReport rep =
      test::run_json(through("test.throwing", ", \"dead_letter\": \"" + (dir / "dlq.jsonl") + "\""),
                     2, test_registry());
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 12u);  // ids ending in 0, 3, 6 or 9: three of each among 00..29
  EXPECT_EQ(rep.docs_dead_lettered, 12u);
  EXPECT_EQ(rep.docs_indexed, 18u);
  auto lines = test::read_lines(dir / "dlq.jsonl");
  ASSERT_EQ(lines.size(), 12u);
  EXPECT_NE(lines[0].find("\"node\":\"t\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("exception: boom on range-"), std::string::npos) << lines[0];
  EXPECT_EQ(rep.exit_code(), 0);
}

TEST(Engine, OffloadedWorkRunsOnTheArenaAndIsWaitedFor) {
  OffloadingNode::off_arena = 0;
  RunReport rep = test::run_json(through("test.offload"), 2, test_registry());
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 30u);
  EXPECT_EQ(OffloadingNode::off_arena.load(), 0) << "offloaded work ran outside the arena";
  ASSERT_EQ(rep.nodes.size(), 3u);
  EXPECT_GE(rep.nodes[1].busy_s, 0.025) << "30 offloaded calls of at least 1 ms each";
}

TEST(Engine, AnExceptionInOffloadedWorkFailsTheRun) {
  RunReport rep = test::run_json(through("test.offload_throws"), 2, test_registry());
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_NE(rep.error.find("parse failed for range-"), std::string::npos) << rep.error;
  EXPECT_NE(rep.error.find("node \"t\""), std::string::npos) << rep.error;
  EXPECT_EQ(rep.exit_code(), 1);
}

TEST(Engine, InterruptStopsPullingAndDrainsInFlight) {
  std::atomic<bool> interrupt{false};
  GraphSpec spec = test::spec_from(through("test.slow", "", 100000), test_registry());
  RunOptions opts;
  opts.threads = 2;
  opts.interrupt = &interrupt;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    interrupt = true;
  });
  RunReport rep = run_graph(spec, opts);
  stopper.join();
  EXPECT_TRUE(rep.interrupted);
  EXPECT_EQ(rep.exit_code(), 130);
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_LT(rep.docs, 100000u);
  EXPECT_EQ(rep.docs_indexed, rep.docs) << "every admitted document must finish";
}

TEST(Engine, SetupFailureIsAClearError) {
  RunReport rep = test::run_json(R"({
  "nodes": [{"id": "src", "type": "source.files", "params": {"dir": "/nonexistent/sluice"}},
            {"id": "k", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
  "edges": [["src", "k"]]})");
  EXPECT_EQ(rep.error, "node \"src\" (source.files): directory \"/nonexistent/sluice\" does not "
                       "exist or is not a directory");
  EXPECT_EQ(rep.exit_code(), 1);
}

TEST(Engine, ReportJsonHasTheDocumentedKeys) {
  RunReport rep = test::run_json(through("util.pass"));
  std::string j = rep.to_json();
  for (const char* key :
       {"\"docs\":", "\"chunks\":", "\"lost\":", "\"dead_lettered\":", "\"elapsed_s\":",
        "\"peak_rss_bytes\":", "\"nodes\":[", "\"busy_s\":", "\"in\":", "\"out\":", "\"errors\":"})
    EXPECT_NE(j.find(key), std::string::npos) << key;
}

TEST(Batcher, FullByItemsOrBytesDueAfterLingerOrForced) {
  Batcher b(3, 60'000);
  auto rec = [](const std::string& id) {
    auto r = std::make_shared<Record>();
    r->id = id;
    return r;
  };
  EXPECT_TRUE(b.add(rec("a")).empty());
  EXPECT_TRUE(b.add(rec("b")).empty());
  EXPECT_TRUE(b.take_due(false).empty()) << "younger than linger";
  EXPECT_TRUE(b.pending());
  auto full = b.add(rec("c"));
  ASSERT_EQ(full.items.size(), 3u) << "full at max_items";
  EXPECT_EQ(full.items[2]->id, "c");
  EXPECT_FALSE(b.pending());

  b.set_max_bytes(10);
  EXPECT_TRUE(b.add(rec("d"), size_t{6}).empty());
  EXPECT_EQ(b.add(rec("e"), size_t{6}).items.size(), 2u) << "full at max_bytes";
  EXPECT_TRUE(b.add(rec("f"), size_t{1}).empty()) << "the byte count starts over";
  EXPECT_EQ(b.take_due(true).items.size(), 1u) << "forced at end of input";
  EXPECT_TRUE(b.take_due(true).empty());
}

TEST(Batcher, CarriesTextInOrderAndReusesAWrittenBuffer) {
  Batcher b(2, 60'000);
  auto rec = [] { return std::make_shared<Record>(); };
  EXPECT_TRUE(b.add(rec(), std::string_view("one\n")).empty());
  auto full = b.add(rec(), std::string_view("two\n"));
  ASSERT_EQ(full.items.size(), 2u);
  EXPECT_EQ(full.text, "one\ntwo\n");
  full.text.reserve(1 << 20);
  const char* buffer = full.text.data();
  b.recycle(std::move(full.text));
  b.add(rec(), std::string_view("three\n"));  // still the old buffer; the recycled one is next
  auto next = b.add(rec(), std::string_view("four\n"));
  EXPECT_EQ(next.text, "three\nfour\n");
  b.add(rec(), std::string_view("five\n"));
  auto after = b.take_due(true);
  EXPECT_EQ(after.text, "five\n");
  EXPECT_EQ(after.text.data(), buffer) << "the recycled megabyte is reused, not reallocated";
}

}  // namespace
}  // namespace sluice
