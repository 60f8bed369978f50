// Secrets stay secret: a value read from ${env:...} never appears in a validate error, a run
// error, the report, stderr or the dead-letter file; URL passwords are masked alike.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "engine/diagnostics.hpp"
#include "engine/secrets.hpp"
#include "tests/script_server.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

constexpr const char* kCanary = "canary-4711-secret";

TEST(Secrets, RedactMasksEveryValueAndUrlPasswords) {
  Secrets s;
  s.add(kCanary);
  s.add("8");  // too short to be a key: a setting, left alone
  EXPECT_EQ(s.redact(std::string("key ") + kCanary + " and again " + kCanary + " 8"),
            "key *** and again *** 8");
  EXPECT_EQ(s.redact("GET http://user:hunter22@host:80/x failed"),
            "GET http://user:***@host:80/x failed");
  EXPECT_EQ(s.redact("mail a@b.c, http://host/a@b"), "mail a@b.c, http://host/a@b");
}

TEST(Diagnostics, ControlCharactersAreEscapedAndNothingSuggestsItself) {
  EXPECT_EQ(escape_controls(std::string("a\0b\nc\x1b[2J", 9)), "a\\x00b\\nc\\x1b[2J");
  EXPECT_EQ(did_you_mean("a", {"a"}), "");
  EXPECT_EQ(did_you_mean("thread", {"threads"}), " (did you mean 'threads'?)");
}

// Sets the canary env var for one test and removes it after.
struct CanaryEnv {
  CanaryEnv() { ::setenv("SLUICE_TEST_CANARY", kCanary, 1); }
  ~CanaryEnv() { ::unsetenv("SLUICE_TEST_CANARY"); }
};

void expect_no_canary(const test::CommandResult& r, const std::string& what) {
  EXPECT_EQ(r.out.find(kCanary), std::string::npos) << what << " stdout: " << r.out;
  EXPECT_EQ(r.err.find(kCanary), std::string::npos) << what << " stderr: " << r.err;
}

TEST(Secrets, NoFailingRunPrintsAnEnvValueAnywhere) {
  CanaryEnv env;
  test::TempDir dir;
  test::write_file(dir / "ids.txt", "doc-1\ndoc-2\n");
  test::ScriptServer echo([](const test::SeenRequest& r) {
    return test::ScriptServer::respond(403, "denied for " + r.head);  // echoes the key back
  });
  auto graph = [&](const std::string& name, const std::string& fetch_params,
                   const std::string& sink_path, const std::string& settings = "{}") {
    std::string path = dir / (name + ".json");
    test::write_file(path, R"({"settings": )" + settings + R"(,
      "nodes": [{"id": "ids", "type": "source.lines", "params": {"path": ")" +
                               (dir / "ids.txt") + R"("}},
        {"id": "fetch", "type": "fetch.http", "params": {)" +
                               fetch_params + R"(}},
        {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
                               sink_path + R"("}}],
      "edges": [["ids", "fetch"], ["fetch", "out"]]})");
    return path;
  };
  const std::string report = dir / "report.json", dlq = dir / "dlq.jsonl";
  const std::string ok_fetch = R"("url": ")" + echo.url("/d/{id}") +
                               R"(", "headers": {"X-Key": "${env:SLUICE_TEST_CANARY}"})";
  struct Case {
    std::string what, cmd;
  } cases[] = {
      {"a bad integer",
       "validate " + graph("int", ok_fetch + R"(, "timeout_ms": "${env:SLUICE_TEST_CANARY}")",
                           dir / "o.jsonl")},
      {"a bad enum",
       "validate " +
           graph("enum", ok_fetch + R"(, "method": "${env:SLUICE_TEST_CANARY}")", dir / "o.jsonl")},
      {"a path built from the key",
       "run --quiet --report " + report + " " +
           graph("path", ok_fetch, "/proc/no-such-dir/${env:SLUICE_TEST_CANARY}/o.jsonl")},
      {"a URL password and an echoing server",
       "run --quiet --report " + report + " " +
           graph("echo",
                 R"("url": "http://user:${env:SLUICE_TEST_CANARY}@)" +
                     echo.url("/d/{id}").substr(7) +
                     R"(", "headers": {"X-Key": "${env:SLUICE_TEST_CANARY}"})",
                 dir / "o.jsonl", R"({"dead_letter": ")" + dlq + R"("})")},
  };
  for (const auto& c : cases) {
    std::filesystem::remove(report);
    auto r = test::run_sluice(c.cmd);
    if (c.what.find("echo") == std::string::npos) {
      EXPECT_NE(r.exit_code, 0) << c.what << ": " << r.err;
    }
    expect_no_canary(r, c.what);
    if (std::filesystem::exists(report)) {
      EXPECT_EQ(test::read_file(report).find(kCanary), std::string::npos) << c.what;
    }
  }
  ASSERT_TRUE(std::filesystem::exists(dlq));
  std::string dead = test::read_file(dlq);
  EXPECT_NE(dead.find("denied for"), std::string::npos) << "the server's message is kept";
  EXPECT_EQ(dead.find(kCanary), std::string::npos) << dead;
  EXPECT_NE(dead.find("***"), std::string::npos) << dead;
}

TEST(Secrets, AUrlPasswordIsMaskedInDeadLettersWithNoEnvValueInTheConfig) {
  test::TempDir dir;
  test::write_file(dir / "ids.txt", "doc-1\n");
  // The server's error names a URL with a password in it (a proxy echoing its upstream).
  test::ScriptServer echo([](const test::SeenRequest&) {
    return test::ScriptServer::respond(403, "denied for http://svc:hunter2-literal@upstream/x");
  });
  RunReport rep = test::run_json(R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") + R"("},
    "nodes": [{"id": "ids", "type": "source.lines", "params": {"path": ")" +
                                 (dir / "ids.txt") +
                                 R"("}},
      {"id": "fetch", "type": "fetch.http", "params": {"url": ")" +
                                 echo.url("/d/{id}") + R"("}},
      {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
    "edges": [["ids", "fetch"], ["fetch", "out"]]})");
  EXPECT_EQ(rep.dead_lettered, 1u);
  const std::string dead = test::read_file(dir / "dlq.jsonl");
  EXPECT_NE(dead.find("denied for http://svc:***@upstream/x"), std::string::npos) << dead;
  EXPECT_EQ(dead.find("hunter2-literal"), std::string::npos) << dead;
}

}  // namespace
}  // namespace sluice
