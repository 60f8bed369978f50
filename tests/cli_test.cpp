// The sluice binary as a user runs it: exit codes, messages and files.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include <rapidjson/document.h>

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

  // --json: an array of whole results for programs; no results is an empty array.
  auto js = run_sluice("search " + db + " '\"Jesus wept\"' --k 3 --json");
  ASSERT_EQ(js.exit_code, 0) << js.err;
  rapidjson::Document d;
  d.Parse(js.out.c_str());
  ASSERT_FALSE(d.HasParseError()) << js.out;
  ASSERT_TRUE(d.IsArray());
  ASSERT_GE(d.Size(), 1u) << js.out;
  for (rapidjson::SizeType i = 0; i < d.Size(); ++i) {
    const auto& h = d[i];
    EXPECT_EQ(h["rank"].GetInt(), static_cast<int>(i) + 1);
    EXPECT_TRUE(h["score"].IsNumber());
    EXPECT_TRUE(h["meta"].IsObject());
    std::string id = h["id"].GetString(), doc = h["doc_id"].GetString();
    EXPECT_EQ(id.rfind(doc + "#", 0), 0u) << id << " " << doc;
  }
  EXPECT_NE(std::string(d[0]["text"].GetString()).find("Jesus wept"), std::string::npos) << js.out;
  auto js_none = run_sluice("search " + db + " qqqxxyyzz --json");
  EXPECT_EQ(js_none.exit_code, 0);
  EXPECT_EQ(js_none.out, "[]\n");
}

// Outcomes are never silent: dead letters land in a default file the summary names, with their
// reasons counted; too many of them, or every document, fails the run; settings.outcomes logs
// every record's outcome.
TEST(Cli, DeadLettersGoToADefaultFileAndTooManyFailTheRun) {
  test::TempDir dir;
  auto write_input = [&](int good, int bad) {
    std::string lines;
    for (int i = 0; i < good; ++i)
      lines += "{\"id\": \"g" + std::to_string(i) + "\", \"text\": \"words " + std::to_string(i) +
               "\"}\n";
    for (int i = 0; i < bad; ++i) lines += "not json " + std::to_string(i) + "\n";
    test::write_file(dir / "in.jsonl", lines);
  };
  test::write_file(dir / "g.json", R"({"name": "dl", "vars": {"ratio": "0.1"},
    "settings": {"max_dead_letter_ratio": "${ratio}", "outcomes": ")" +
                                       (dir / "outcomes.jsonl") + R"("},
    "nodes": [{"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                                       (dir / "in.jsonl") + R"("}},
              {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
                                       (dir / "o.jsonl") + R"("}}],
    "edges": [["src", "out"]]})");
  const std::string dlq = dir / "dl.dead-letter.jsonl";

  write_input(20, 0);
  auto clean = run_sluice("run " + (dir / "g.json") + " --threads 2");
  EXPECT_EQ(clean.exit_code, 0) << clean.err << clean.out;
  EXPECT_FALSE(std::filesystem::exists(dlq)) << "no dead letter, no file";
  EXPECT_EQ(test::read_lines(dir / "outcomes.jsonl").size(), 20u);

  write_input(7, 3);  // 30% dead-lettered: more than the 10% allowed
  auto some = run_sluice("run " + (dir / "g.json") + " --threads 2");
  EXPECT_EQ(some.exit_code, 1) << some.err << some.out;
  EXPECT_NE(some.out.find("dead-lettered 3 records, each with its reason in " + dlq +
                          "; the most frequent reasons:\n           3  src: malformed JSON\n"),
            std::string::npos)
      << some.out;
  EXPECT_NE(some.out.find("error: 3 of 10 documents (30.0%) were dead-lettered, more than "
                          "settings.max_dead_letter_ratio 0.1; the most frequent reason: "
                          "malformed JSON (node \"src\"); each is in " +
                          dlq),
            std::string::npos)
      << some.out;
  EXPECT_EQ(test::read_lines(dlq).size(), 3u);
  auto outcomes = test::read_lines(dir / "outcomes.jsonl");
  ASSERT_EQ(outcomes.size(), 10u) << "a fresh run starts the outcomes anew";
  int indexed = 0, dead = 0;
  for (const auto& l : outcomes) {
    indexed +=
        l.find("\"outcome\":\"indexed\",\"node\":\"out\",\"reason\":null") != std::string::npos;
    dead +=
        l.find("\"outcome\":\"dead_lettered\",\"node\":\"src\",\"reason\":\"malformed JSON\"") !=
        std::string::npos;
  }
  EXPECT_EQ(indexed, 7);
  EXPECT_EQ(dead, 3);

  auto allowed = run_sluice("run " + (dir / "g.json") + " --threads 2 --set ratio=0.5");
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err << allowed.out;
  EXPECT_EQ(test::read_lines(dlq).size(), 3u) << "a fresh run starts its dead letters anew";

  write_input(0, 4);
  auto all = run_sluice("run " + (dir / "g.json") + " --threads 2 --set ratio=1");
  EXPECT_EQ(all.exit_code, 1) << all.out;
  EXPECT_NE(all.out.find("error: every document (4) was dead-lettered"), std::string::npos)
      << all.out;

  auto bad = run_sluice("run " + (dir / "g.json") + " --set ratio=2");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("settings.max_dead_letter_ratio: expected a number from 0 to 1"),
            std::string::npos)
      << bad.err;
}

// Shards that share a directory keep their own logs: a dead-letter (or outcomes) file the graph
// names becomes each shard's, so one shard starting fresh never deletes another's.
TEST(Cli, ANamedDeadLetterFileIsEachShardsOwn) {
  test::TempDir dir;
  std::string lines;
  for (int i = 0; i < 40; ++i)
    lines += i % 4 == 0 ? "not json " + std::to_string(i) + "\n"
                        : "{\"id\": \"g" + std::to_string(i) + "\", \"text\": \"w\"}\n";
  test::write_file(dir / "in.jsonl", lines);
  test::write_file(dir / "g.json", R"({"name": "dl",
    "settings": {"max_dead_letter_ratio": 0.5, "dead_letter": ")" +
                                       (dir / "dlq.jsonl") + R"(", "outcomes": ")" +
                                       (dir / "outcomes.jsonl") + R"("},
    "nodes": [{"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                                       (dir / "in.jsonl") + R"("}},
              {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
                                       (dir / "o-${shard}.jsonl") + R"("}}],
    "edges": [["src", "out"]]})");
  size_t dead = 0, outcomes = 0;
  for (int shard = 0; shard < 2; ++shard) {
    auto r = run_sluice("run " + (dir / "g.json") + " --quiet --threads 2 --state " + (dir / "st") +
                        " --shard " + std::to_string(shard) + "/2");
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  }
  for (int shard = 0; shard < 2; ++shard) {
    const std::string tag = ".s" + std::to_string(shard) + "-of-2.jsonl";
    ASSERT_TRUE(std::filesystem::exists(dir / ("dlq" + tag))) << "shard " << shard;
    dead += test::read_lines(dir / ("dlq" + tag)).size();
    outcomes += test::read_lines(dir / ("outcomes" + tag)).size();
  }
  EXPECT_EQ(dead, 10u) << "each shard's dead letters, none deleted by the other's fresh start";
  EXPECT_EQ(outcomes, 40u);
  EXPECT_FALSE(std::filesystem::exists(dir / "dlq.jsonl"));
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
  EXPECT_EQ(ok.out, "ok: graphs/local-files.json: graph \"local-files\", 5 nodes (1 sources, 1 "
                    "sinks), 4 edges\n");
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

namespace sluice {
namespace {

// `sluice search A.db B.db QUERY`: a sharded job's indexes searched as one, results merged by
// score, each chunk once.
TEST(Cli, SearchMergesTheIndexesOfAShardedJob) {
  test::TempDir dir;
  for (int i = 0; i < 2; ++i) {
    auto run = test::run_sluice("run graphs/local-files.json --quiet --shard " + std::to_string(i) +
                                "/2 --set db=" + (dir / ("s" + std::to_string(i) + ".db")) +
                                " --state " + (dir / ("state" + std::to_string(i))));
    ASSERT_EQ(run.exit_code, 0) << run.err;
  }
  const std::string both = (dir / "s0.db") + " " + (dir / "s1.db");
  for (const char* phrase :
       {"Jesus wept", "In the beginning God created the heaven", "Intreat me not to leave thee"}) {
    auto r = test::run_sluice("search " + both + " '\"" + phrase + "\"' --k 1 --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find(phrase), std::string::npos) << phrase << ": " << r.out;
  }
  auto wide = test::run_sluice("search " + both + " 'God' --k 40 --json");
  ASSERT_EQ(wide.exit_code, 0) << wide.err;
  rapidjson::Document d;
  d.Parse(wide.out.c_str());
  ASSERT_TRUE(d.IsArray());
  EXPECT_EQ(d.Size(), 40u);
  std::set<std::string> ids;
  double last = 1e300;
  for (const auto& h : d.GetArray()) {
    EXPECT_TRUE(ids.insert(h["id"].GetString()).second) << "each chunk once";
    EXPECT_LE(h["score"].GetDouble(), last) << "merged by score";
    last = h["score"].GetDouble();
  }
  // Every merged result is one of a shard's own top 40; with k past every match, the merge
  // holds both shards' results whole (the shards split the documents).
  auto count = [&](const std::string& dbs, int k, std::set<std::string>* out) {
    auto r = test::run_sluice("search " + dbs + " 'God' --k " + std::to_string(k) + " --json");
    rapidjson::Document di;
    di.Parse(r.out.c_str());
    EXPECT_TRUE(di.IsArray()) << r.out;
    if (!di.IsArray()) return size_t{0};
    if (out)
      for (const auto& h : di.GetArray()) out->insert(h["id"].GetString());
    return static_cast<size_t>(di.Size());
  };
  std::set<std::string> top;
  count(dir / "s0.db", 40, &top);
  count(dir / "s1.db", 40, &top);
  for (const auto& id : ids) EXPECT_TRUE(top.count(id)) << id;
  const size_t n0 = count(dir / "s0.db", 10000, nullptr), n1 = count(dir / "s1.db", 10000, nullptr);
  EXPECT_GT(n0, 0u);
  EXPECT_GT(n1, 0u);
  EXPECT_EQ(count(both, 10000, nullptr), n0 + n1);
  auto one = test::run_sluice("search " + (dir / "s0.db"));
  EXPECT_EQ(one.exit_code, 2);
  EXPECT_NE(one.err.find("DB... QUERY"), std::string::npos) << one.err;
}

}  // namespace
}  // namespace sluice
