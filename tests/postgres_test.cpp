// index.postgres against two real servers the suite starts itself on loopback: Debian's
// PostgreSQL 15 (initdb and pg_ctl in a temp dir, as the postgres user when run as root; no
// pgvector, so vectors are real[]) and PGlite (PostgreSQL 18 in WebAssembly with pgvector, the npm
// packages scripts/setup installs into data/pglite).
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <thread>

#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using Rows = std::vector<std::vector<std::string>>;

// The rows `sql` gives (NULL as "<null>"); an error fails the test and gives none.
Rows query(const std::string& dsn, const std::string& sql) {
  Rows out;
  PGconn* c = PQconnectdb(dsn.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    ADD_FAILURE() << PQerrorMessage(c);
    PQfinish(c);
    return out;
  }
  PGresult* r = PQexec(c, sql.c_str());
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) {
      out.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j)
        out.back().push_back(PQgetisnull(r, i, j) ? "<null>" : PQgetvalue(r, i, j));
    }
  } else if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
  }
  PQclear(r);
  PQfinish(c);
  return out;
}

bool connects(const std::string& dsn) {
  PGconn* c = PQconnectdb(dsn.c_str());
  bool ok = PQstatus(c) == CONNECTION_OK;
  PQfinish(c);
  return ok;
}

// The table's row count, or -1 while it is not there (no test failure).
int64_t rows_in(const std::string& dsn, const std::string& table) {
  PGconn* c = PQconnectdb(dsn.c_str());
  int64_t n = -1;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, ("SELECT count(*) FROM " + table).c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
      n = std::stoll(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  PQfinish(c);
  return n;
}

std::string count(const std::string& dsn, const std::string& table) {
  Rows r = query(dsn, "SELECT count(*) FROM " + table);
  return r.empty() ? "" : r[0][0];
}

// A server on loopback for one test suite.
class Server {
 public:
  virtual ~Server() = default;
  virtual bool up() const = 0;
  virtual std::string dsn() const = 0;
  virtual std::string log() const = 0;
  virtual bool has_pgvector() const = 0;
};

class DebianPostgres : public Server {
 public:
  static constexpr const char* kBin = "/usr/lib/postgresql/15/bin";
  DebianPostgres() : _port(test::free_port()) {
    // initdb refuses root: run it and the server as the postgres user.
    std::string as = geteuid() == 0 ? "runuser -u postgres -- " : "";
    if (geteuid() == 0) {
      std::string own = "chown -R postgres '" + _dir.path().string() + "'";
      if (std::system(own.c_str()) != 0) return;
    }
    std::string init = as + kBin + "/initdb -D '" + _dir / "data" +
                       "' -A trust -U postgres -E UTF8 --no-sync > '" + _dir / "initdb.log" +
                       "' 2>&1";
    if (std::system(init.c_str()) != 0) return;
    std::string start = as + kBin + "/pg_ctl -D '" + _dir / "data" + "' -l '" + _dir / "pg.log" +
                        "' -w -t 60 -o \"-p " + std::to_string(_port) + " -k '" +
                        _dir.path().string() +
                        "' -c listen_addresses=127.0.0.1 -c fsync=off\" start > /dev/null 2>&1";
    _up = std::system(start.c_str()) == 0 && connects(dsn());
  }
  ~DebianPostgres() override {
    std::string as = geteuid() == 0 ? "runuser -u postgres -- " : "";
    std::string stop =
        as + kBin + "/pg_ctl -D '" + _dir / "data" + "' -m immediate stop > /dev/null 2>&1";
    (void)!std::system(stop.c_str());
  }
  bool up() const override { return _up; }
  std::string dsn() const override {
    return "host=127.0.0.1 port=" + std::to_string(_port) +
           " user=postgres dbname=postgres sslmode=disable connect_timeout=10";
  }
  std::string log() const override {
    return test::read_file(_dir / "initdb.log") + test::read_file(_dir / "pg.log");
  }
  bool has_pgvector() const override { return false; }

 private:
  test::TempDir _dir;
  int _port;
  bool _up = false;
};

std::string pglite_server() {
  return test::source_dir() +
         "/data/pglite/node_modules/@electric-sql/pglite-socket/dist/scripts/server.js";
}

class PGlite : public Server {
 public:
  PGlite() : _port(test::free_port()) {
    std::string cmd = "cd '" + test::source_dir() + "/data/pglite' && node '" + pglite_server() +
                      "' --port=" + std::to_string(_port) +
                      " --max-connections=4 --extensions=@electric-sql/pglite-pgvector:vector > '" +
                      _dir / "pglite.log" + "' 2>&1 & echo $! > '" + _dir / "pid" + "'";
    if (std::system(cmd.c_str()) != 0) return;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline && !_up) {
      std::this_thread::sleep_for(250ms);
      _up = test::read_file(_dir / "pglite.log").find("listening") != std::string::npos &&
            connects(dsn());
    }
  }
  ~PGlite() override {
    std::string cmd = "kill $(cat '" + _dir / "pid" + "') 2>/dev/null; sleep 0.3";
    (void)!std::system(cmd.c_str());
  }
  bool up() const override { return _up; }
  std::string dsn() const override {
    return "host=127.0.0.1 port=" + std::to_string(_port) +
           " user=postgres dbname=postgres sslmode=disable connect_timeout=10";
  }
  std::string log() const override { return test::read_file(_dir / "pglite.log"); }
  bool has_pgvector() const override { return true; }

 private:
  test::TempDir _dir;
  int _port;
  bool _up = false;
};

// The same tests on each server: the suite's server is started once.
template <class S>
class Postgres : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if constexpr (std::is_same_v<S, DebianPostgres>) {
      if (!std::filesystem::exists(std::string(DebianPostgres::kBin) + "/initdb")) return;
    } else {
      if (!std::filesystem::exists(pglite_server())) return;
    }
    server = std::make_unique<S>();
  }
  static void TearDownTestSuite() { server.reset(); }
  void SetUp() override {
    if (!server) {
      if (std::getenv("CI")) FAIL() << "the server is not installed (scripts/setup installs it)";
      GTEST_SKIP() << "the server is not installed: run scripts/setup";
    }
    ASSERT_TRUE(server->up()) << server->log();
  }

  // source.range → chunk.recursive → embed.hash → index.postgres.
  static std::string graph(const std::string& table, int docs, int chunk_size,
                           const std::string& extra = "") {
    return R"({"nodes": [
      {"id": "docs", "type": "source.range", "params": {"count": )" +
           std::to_string(docs) + R"(, "size": 2000, "seed": 5}},
      {"id": "chunk", "type": "chunk.recursive", "params": {"size": )" +
           std::to_string(chunk_size) + R"(}},
      {"id": "embed", "type": "embed.hash", "params": {"dim": 16}},
      {"id": "sink", "type": "index.postgres", "params": {"dsn": ")" +
           server->dsn() + R"(", "table": ")" + table + "\"" + extra + R"(}}],
      "edges": [["docs", "chunk"], ["chunk", "embed"], ["embed", "sink"]]})";
  }

  static std::unique_ptr<S> server;
};

template <class S>
std::unique_ptr<S> Postgres<S>::server;

using Servers = ::testing::Types<DebianPostgres, PGlite>;
class ServerNames {
 public:
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, DebianPostgres> ? "Debian15" : "PGlite";
  }
};
TYPED_TEST_SUITE(Postgres, Servers, ServerNames);

TYPED_TEST(Postgres, UpsertsRowsWithTheirVectorsTextAndMeta) {
  const std::string dsn = this->server->dsn();
  RunReport r = test::run_json(this->graph("chunks_a", 30, 500));
  ASSERT_EQ(r.error, "");
  ASSERT_GT(r.chunks, 60u);
  EXPECT_EQ(r.indexed, r.chunks);
  EXPECT_EQ(count(dsn, "chunks_a"), std::to_string(r.chunks));
  Rows type =
      query(dsn, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                 "'chunks_a'::regclass AND attname = 'embedding'");
  ASSERT_EQ(type.size(), 1u);
  EXPECT_EQ(type[0][0], this->server->has_pgvector() ? "vector" : "real[]");
  Rows row = query(dsn, "SELECT doc_id, seq, length(text) > 100, meta::text, "
                        "cardinality(embedding::real[]), sluice_run IS NOT NULL FROM chunks_a "
                        "WHERE id = 'range-00000004#2'");
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0][0], "range-00000004");
  EXPECT_EQ(row[0][1], "2");
  EXPECT_EQ(row[0][2], "t");
  EXPECT_EQ(row[0][4], "16");
  EXPECT_EQ(row[0][5], "t");
  if (this->server->has_pgvector()) {
    // pgvector's cosine distance finds a chunk from its own vector.
    Rows near = query(dsn, "SELECT id FROM chunks_a ORDER BY embedding <=> (SELECT embedding FROM "
                           "chunks_a WHERE id = 'range-00000004#2') LIMIT 1");
    ASSERT_EQ(near.size(), 1u);
    EXPECT_EQ(near[0][0], "range-00000004#2");
  }
  // A second run upserts: nothing doubles.
  RunReport again = test::run_json(this->graph("chunks_a", 30, 500));
  ASSERT_EQ(again.error, "");
  EXPECT_EQ(count(dsn, "chunks_a"), std::to_string(r.chunks));
}

TYPED_TEST(Postgres, AReplacedDocumentLosesTheRowsItNoLongerHas) {
  const std::string dsn = this->server->dsn();
  RunReport small = test::run_json(this->graph("replace_b", 20, 300));
  ASSERT_EQ(small.error, "");
  RunReport large = test::run_json(this->graph("replace_b", 20, 1000));
  ASSERT_EQ(large.error, "");
  ASSERT_LT(large.chunks, small.chunks);
  EXPECT_EQ(count(dsn, "replace_b"), std::to_string(large.chunks));
  RunReport keep = test::run_json(this->graph("replace_b", 20, 300, R"(, "replace_docs": false)"));
  ASSERT_EQ(keep.error, "");
  EXPECT_EQ(count(dsn, "replace_b"), std::to_string(small.chunks));
}

TYPED_TEST(Postgres, ARowTheServerRefusesIsDeadLetteredAloneAndErrorsSayWhatToDo) {
  const std::string dsn = this->server->dsn();
  test::TempDir dir;
  // jsonb cannot hold \u0000: that document's row is refused, the batch's others are written.
  // A NUL in the text itself never reaches libpq (which would cut the value short).
  test::write_file(dir / "docs.jsonl", R"({"id": "good-1", "text": "alpha beta"}
{"id": "bad", "text": "gamma delta", "note": "a\u0000b"}
{"id": "nul", "text": "eta\u0000theta"}
{"id": "good-2", "text": "epsilon zeta"}
)");
  RunReport r = test::run_json(R"({"nodes": [
      {"id": "docs", "type": "source.jsonl", "params": {"path": ")" +
                               dir / "docs.jsonl" + R"("}},
      {"id": "sink", "type": "index.postgres", "params": {"dsn": ")" +
                               dsn + R"(", "table": "refused_c"}}],
      "edges": [["docs", "sink"]]})");
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.indexed, 2u);
  EXPECT_EQ(r.dead_lettered, 2u);
  EXPECT_EQ(count(dsn, "refused_c"), "2");
  Rows embedding = query(dsn, "SELECT count(*) FROM refused_c WHERE embedding IS NULL");
  ASSERT_EQ(embedding.size(), 1u);
  EXPECT_EQ(embedding[0][0], "2") << "no embedder: no vector";

  RunReport missing =
      test::run_json(this->graph("not_there", 2, 500, R"(, "create_table": false)"));
  EXPECT_NE(missing.error.find("table not_there does not exist (\"create_table\": true"),
            std::string::npos)
      << missing.error;
  // Nothing listens there: a clear error, which never shows the dsn's password.
  std::string down = this->graph("x_d", 2, 500);
  const size_t port = down.find("port=") + 5;
  down.replace(port, down.find(' ', port) - port, std::to_string(test::free_port()));
  down.replace(down.find("user=postgres"), 13, "user=postgres password=s3cret-xyz");
  RunReport refused = test::run_json(down);
  EXPECT_NE(refused.error.find("index.postgres: cannot connect"), std::string::npos)
      << refused.error;
  EXPECT_EQ(refused.error.find("s3cret"), std::string::npos) << refused.error;
  // A dsn libpq cannot read is a config error of ours: libpq's would quote it, password and all.
  std::string garbled = this->graph("x_f", 2, 500);
  garbled.replace(garbled.find("user=postgres"), 13, "user=postgres password=s3cret xyz");
  std::string unreadable = test::config_errors(garbled);
  EXPECT_NE(unreadable.find("dsn is not a libpq connection string"), std::string::npos)
      << unreadable;
  EXPECT_EQ(unreadable.find("xyz"), std::string::npos) << unreadable;
  std::string bad = test::config_errors(this->graph("drop table x;", 2, 500));
  EXPECT_NE(bad.find("params.table: table must be NAME or SCHEMA.NAME"), std::string::npos) << bad;
  if (!this->server->has_pgvector()) {
    RunReport needs = test::run_json(this->graph("x_e", 2, 500, R"(, "vector_type": "vector")"));
    EXPECT_NE(needs.error.find("needs the pgvector extension"), std::string::npos) << needs.error;
  }
}

// kill -9 in the middle of a run, then --resume: the table holds exactly what one clean run
// writes (the same ids, texts and vectors), on both servers.
TYPED_TEST(Postgres, KillNineThenResumeGivesTheCleanTable) {
  const std::string dsn = this->server->dsn();
  sim::SimOptions o;
  o.docs = 600;
  o.latency_ms = 20;
  test::RunningSim sim(o);
  test::TempDir dir;
  const std::string ids = test::ids_file(dir, 600);
  const std::string graph = dir / "g.json";
  test::write_file(graph, R"({"vars": {"table": "clean"},
    "settings": {"max_inflight_docs": 64},
    "nodes": [
      {"id": "ids", "type": "source.lines", "params": {"path": ")" +
                              ids + R"("}},
      {"id": "fetch", "type": "fetch.http", "concurrency": 8, "params": {"url": ")" +
                              sim.url("/docs/{id}") + R"("}},
      {"id": "extract", "type": "extract.json", "params": {"text": "/text"}},
      {"id": "chunk", "type": "chunk.recursive", "params": {"size": 400}},
      {"id": "embed", "type": "embed.hash", "params": {"dim": 8}},
      {"id": "sink", "type": "index.postgres", "params": {"dsn": ")" +
                              dsn + R"(", "table": "${table}", "batch": 50}}],
    "edges": [["ids", "fetch"], ["fetch", "extract"], ["extract", "chunk"],
              ["chunk", "embed"], ["embed", "sink"]]})");
  auto clean = test::run_sluice("run '" + graph + "' --quiet --state '" + dir / "st-clean" + "'");
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  // The crashed run: killed once some rows are in.
  const std::string run =
      "run '" + graph + "' --quiet --set table=crashed --state '" + dir / "st" + "'";
  // Built before fork(): the child of a threaded process only execs.
  const std::string cmd = "exec '" + std::string(SLUICE_BIN) + "' " + run + " > /dev/null 2>&1";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + 60s;
  bool some = false;
  while (!some && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    some = rows_in(dsn, "crashed") > 0;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(some) << "no row was written within 60 s";
  const std::string partial = count(dsn, "crashed");
  auto resumed = test::run_sluice(run + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const std::string rows = "SELECT id, md5(text), embedding::text FROM ";
  Rows want = query(dsn, rows + "clean ORDER BY id");
  Rows got = query(dsn, rows + "crashed ORDER BY id");
  ASSERT_GT(want.size(), 600u);
  EXPECT_EQ(got, want) << "killed after " << partial << " rows";
  EXPECT_LT(std::stoul(partial), want.size()) << "the kill came after the end: make it longer";
}

}  // namespace
}  // namespace sluice
