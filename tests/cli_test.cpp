// The sluice binary as a user runs it: exit codes, messages and files.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/test_util.hpp"

namespace sluice {
namespace {

using test::run_sluice;

TEST(Cli, RunsTheDefaultGraphThenSearchesIt) {
  test::TempDir dir;
  std::string db = dir / "kjv.db", report = dir / "report.json";
  auto run =
      run_sluice("run graphs/local-files.json --threads 2 --set db=" + db + " --report " + report);
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  EXPECT_NE(run.out.find("docs 66 (indexed 66, filtered 0, dead-lettered 0)"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("lost 0"), std::string::npos);
  std::string rep = test::read_file(report);
  EXPECT_NE(rep.find("\"docs\":66"), std::string::npos) << rep;
  EXPECT_NE(rep.find("\"lost\":0"), std::string::npos);

  auto hit = run_sluice("search " + db + " '\"In the beginning God created the heaven\"' --k 1");
  EXPECT_EQ(hit.exit_code, 0) << hit.err;
  EXPECT_NE(hit.out.find("01-Genesis.txt#"), std::string::npos) << hit.out;
  auto vec = run_sluice("search " + db + " 'Jesus wept' --mode hybrid --k 5");
  EXPECT_EQ(vec.exit_code, 0) << vec.err;
  EXPECT_NE(vec.out.find(" 1. "), std::string::npos) << vec.out;
  auto none = run_sluice("search " + db + " qqqxxyyzz");
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_EQ(none.out, "no results for \"qqqxxyyzz\" (bm25)\n");
}

TEST(Cli, SearchOnAMissingDatabaseExits2) {
  auto r = run_sluice("search /nonexistent/x.db hello");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(
      r.err,
      "error: no index at \"/nonexistent/x.db\" (run a graph with an index.sqlite sink first)\n");
}

TEST(Cli, ValidateReportsOkOrEveryError) {
  auto ok = run_sluice("validate graphs/local-files.json");
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(ok.out, "ok: graphs/local-files.json: graph \"local-files\", 4 nodes (1 sources, 1 "
                    "sinks), 3 edges\n");
  test::TempDir dir;
  test::write_file(
      dir / "bad.json",
      "{\"nodes\": [{\"id\": \"a\", \"type\": \"source.rnage\"}],\n \"edges\": [[\"a\", \"b\"]]}");
  auto bad = run_sluice("validate " + (dir / "bad.json"));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("bad.json:1:32: nodes[0].type: unknown node type \"source.rnage\" (did "
                         "you mean 'source.range'?)"),
            std::string::npos)
      << bad.err;
  EXPECT_NE(bad.err.find("bad.json:2:18: edges[0][1]: no node with id \"b\""), std::string::npos)
      << bad.err;
  EXPECT_NE(bad.err.find("2 errors"), std::string::npos);
  auto set = run_sluice("validate graphs/local-files.json --set dbb=x");
  EXPECT_EQ(set.exit_code, 2);
  EXPECT_NE(set.err.find("--set dbb: unknown var 'dbb' (did you mean 'db'?)"), std::string::npos)
      << set.err;
  auto missing = run_sluice("validate /nonexistent.json");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.err, "/nonexistent.json: cannot read graph config: no such file\n1 error\n");
  auto directory = run_sluice("validate " + dir.path().string());
  EXPECT_EQ(directory.exit_code, 2);
  EXPECT_NE(directory.err.find("cannot read graph config: it is a directory"), std::string::npos)
      << directory.err;
}

TEST(Cli, NodesListsTypesAndParams) {
  auto all = run_sluice("nodes");
  EXPECT_EQ(all.exit_code, 0);
  for (const char* t :
       {"source.files", "source.jsonl", "source.range", "chunk.recursive", "chunk.sentence",
        "embed.hash", "util.filter", "util.dedup", "index.sqlite", "index.jsonl"})
    EXPECT_NE(all.out.find(t), std::string::npos) << t;
  auto one = run_sluice("nodes chunk.recursive");
  EXPECT_EQ(one.exit_code, 0);
  EXPECT_NE(one.out.find("overlap"), std::string::npos);
  EXPECT_NE(one.out.find("separators"), std::string::npos);
  auto typo = run_sluice("nodes chunk.recursiv");
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_NE(typo.err.find("did you mean 'chunk.recursive'"), std::string::npos);
}

TEST(Cli, TheReadmesNodeTableIsWhatSluiceNodesPrints) {
  // The README shows `sluice nodes` verbatim: a node added or redescribed updates it here.
  auto nodes = run_sluice("nodes");
  ASSERT_EQ(nodes.exit_code, 0) << nodes.err;
  const std::string readme = test::read_file(test::source_dir() + "/README.md");
  const std::string open = "`sluice nodes` (each type's params: `sluice nodes TYPE`):\n\n```\n";
  const size_t at = readme.find(open);
  ASSERT_NE(at, std::string::npos) << "README lost its node table";
  const size_t begin = at + open.size();
  const size_t end = readme.find("```\n", begin);
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(readme.substr(begin, end - begin), nodes.out)
      << "update README's node table with the output of `sluice nodes`";
}

TEST(Cli, ADeprecatedParamIsNotedOnStderrAndStillWorks) {
  test::TempDir dir;
  test::write_file(dir / "g.json", R"({"nodes": [
    {"id": "ids", "type": "source.lines", "params": {"path": "ids.txt"}},
    {"id": "embed", "type": "embed.openai", "params": {"url": "http://127.0.0.1:9/v1/embeddings",
      "model": "m", "max_attempts": 3}},
    {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
    "edges": [["ids", "embed"], ["embed", "out"]]})");
  auto r = run_sluice("validate " + (dir / "g.json"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("g.json:4:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\"max_attempts\" is deprecated: write \"retry.max_attempts\""),
            std::string::npos)
      << r.err;
}

TEST(Cli, GraphPrintsDot) {
  auto r = run_sluice("graph graphs/local-files.json --dot");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("digraph \"local-files\" {", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\"chunk\" -> \"embed\";"), std::string::npos);
}

TEST(Cli, BadArgumentsExit2) {
  EXPECT_EQ(run_sluice("run graphs/local-files.json --threads 0").exit_code, 2);
  EXPECT_EQ(run_sluice("run graphs/local-files.json --set novalue").exit_code, 2);
  EXPECT_EQ(run_sluice("search x y --mode semantic").exit_code, 2);
  EXPECT_EQ(run_sluice("frobnicate").exit_code, 2);
  auto help = run_sluice("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("run"), std::string::npos);
}

TEST(Cli, RunFailureExitsNonZeroWithReason) {
  test::TempDir dir;
  auto r = run_sluice("run graphs/local-files.json --quiet --set dir=" + (dir / "missing") +
                      " --set db=" + (dir / "x.db"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
}

TEST(Cli, ThreadsAreBoundedAlikeInTheConfigAndOnTheCommandLine) {
  auto r = run_sluice("run graphs/local-files.json --threads 100000");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("1024"), std::string::npos) << r.err;
}

TEST(Cli, AResumeWithoutItsLedgerSaysSoOnStderr) {
  test::TempDir dir;
  test::write_file(dir / "g.json", R"({"nodes": [
    {"id": "docs", "type": "source.range", "params": {"count": 3}},
    {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
                                       (dir / "out.jsonl") + R"("}}],
    "edges": [["docs", "out"]]})");
  auto r = run_sluice("run --quiet --resume --state " + (dir / "state") + " " + (dir / "g.json"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("--resume: no checkpoint ledger"), std::string::npos) << r.err;
  auto again =
      run_sluice("run --quiet --resume --state " + (dir / "state") + " " + (dir / "g.json"));
  EXPECT_EQ(again.err.find("no checkpoint ledger"), std::string::npos) << again.err;
}

TEST(Cli, AFailedFreshRunKeepsThePreviousOutputWhole) {
  test::TempDir dir;
  auto graph = [&](const std::string& source_dir) {
    test::write_file(dir / "g.json", R"({"nodes": [
      {"id": "docs", "type": "source.files", "params": {"dir": ")" +
                                         source_dir + R"("}},
      {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
                                         (dir / "out.jsonl") + R"("}}],
      "edges": [["docs", "out"]]})");
    return "run --quiet --state " + (dir / "state") + " " + (dir / "g.json");
  };
  std::filesystem::create_directories(dir / "src");
  test::write_file(dir / "src/a.txt", "first");
  test::write_file(dir / "src/b.txt", "second");
  ASSERT_EQ(run_sluice(graph(dir / "src")).exit_code, 0);
  const std::string before = test::read_file(dir / "out.jsonl");
  ASSERT_NE(before.find("a.txt"), std::string::npos) << before;

  auto failed = run_sluice(graph(dir / "missing"));
  EXPECT_NE(failed.exit_code, 0);
  EXPECT_EQ(test::read_file(dir / "out.jsonl"), before) << "a failed run destroys nothing";

  std::filesystem::remove(dir / "src/a.txt");
  ASSERT_EQ(run_sluice(graph(dir / "src")).exit_code, 0);
  const std::string after = test::read_file(dir / "out.jsonl");
  EXPECT_EQ(after.find("a.txt"), std::string::npos) << "a finished fresh run replaces the file";
  EXPECT_NE(after.find("b.txt"), std::string::npos) << after;
  EXPECT_FALSE(std::filesystem::exists(dir / "out.jsonl.parts"));
}

}  // namespace
}  // namespace sluice
