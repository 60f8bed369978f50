// Retrieval quality on the bundled corpus against the question sets in bench/retrieval (what
// scripts/bench-retrieval prints): hybrid search must never do worse than bm25 alone, in recall@10
// or in MRR, with the default graph's embedder.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "nodes/index_sqlite_search.hpp"
#include "sim/sim.hpp"
#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

struct Question {
  std::string q;
  std::map<std::string, std::vector<std::string>> answers;  // book file -> verses ("22:28")
};

std::vector<Question> questions(const std::string& file) {
  std::vector<Question> out;
  for (const auto& line : test::read_lines(test::source_dir() + "/bench/retrieval/" + file)) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    EXPECT_TRUE(d.IsObject() && d.HasMember("q") && d.HasMember("answers")) << line;
    if (!d.IsObject()) continue;
    Question q{d["q"].GetString(), {}};
    for (const auto& a : d["answers"].GetObject())
      for (const auto& v : a.value.GetArray())
        q.answers[a.name.GetString()].push_back(v.GetString());
    out.push_back(std::move(q));
  }
  return out;
}

bool relevant(const SearchHit& h, const Question& q) {
  const std::string book = h.doc_id.substr(h.doc_id.rfind('/') + 1);
  auto it = q.answers.find(book);
  if (it == q.answers.end()) return false;
  const std::string text = "\n" + h.text;
  for (const auto& v : it->second)
    if (text.find("\n" + v + " ") != std::string::npos) return true;
  return false;
}

struct Score {
  double recall = 0, mrr = 0;
};

Score score(const std::string& db, const std::vector<Question>& qs, SearchMode mode) {
  Score s;
  for (const auto& q : qs) {
    const auto hits = search_index(db, q.q, 10, mode);
    for (size_t i = 0; i < hits.size(); ++i)
      if (relevant(hits[i], q)) {
        s.recall += 1.0 / static_cast<double>(qs.size());
        s.mrr += 1.0 / static_cast<double>((i + 1) * qs.size());
        break;
      }
  }
  return s;
}

TEST(Retrieval, HybridIsNeverWorseThanBm25OnEitherQuestionSet) {
  test::TempDir dir;
  const std::string db = dir / "kjv.db";
  auto run = test::run_sluice("run graphs/local-files.json --quiet --set db=" + db + " --state " +
                              (dir / "state"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* set : {"kjv-questions.jsonl", "kjv-keywords.jsonl"}) {
    SCOPED_TRACE(set);
    const auto qs = questions(set);
    ASSERT_GE(qs.size(), std::string(set) == "kjv-questions.jsonl" ? 40u : 20u);
    const Score b = score(db, qs, SearchMode::bm25), h = score(db, qs, SearchMode::hybrid);
    EXPECT_GE(h.recall, b.recall - 1e-9);
    EXPECT_GE(h.mrr, b.mrr - 1e-9);
    EXPECT_GT(b.recall, 0.5) << "the questions are answerable";
  }
}

// An index embedded through an HTTP API is searched in vector mode with the graph that built it:
// its node embeds the query with its endpoint and key. Without the graph, without the key, or
// with another model, a clear error (exit 2).
TEST(Retrieval, VectorSearchEmbedsTheQueryThroughTheGraphsHttpEmbedder) {
  test::RunningSim server(sim::SimOptions{});
  for (const std::string type : {"embed.openai", "embed.gemini"}) {
    SCOPED_TRACE(type);
    test::TempDir dir;
    std::string docs;
    const std::vector<std::string> texts = {
        "The quick brown fox jumps over the lazy dog.", "A journey of a thousand miles begins.",
        "To be or not to be, that is the question.", "All that glitters is not gold.",
        "The rain in Spain stays mainly in the plain."};
    for (size_t i = 0; i < texts.size(); ++i)
      docs += R"({"id": "d)" + std::to_string(i) + R"(", "text": ")" + texts[i] + "\"}\n";
    test::write_file(dir / "in.jsonl", docs);
    const std::string where = type == "embed.openai"
                                  ? R"("url": ")" + server.url("/v1/embeddings") + "\""
                                  : R"("base_url": ")" + server.url("/v1beta") + "\"";
    const std::string graph = dir / "g.json";
    test::write_file(graph, R"({"vars": {"model": "m1"},
      "nodes": [{"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                                (dir / "in.jsonl") + R"("}},
        {"id": "emb", "type": ")" +
                                type + R"(", "params": {)" + where +
                                R"(, "model": "${model}",
          "api_key": "${env:SLUICE_TEST_SEARCH_KEY}"}},
        {"id": "db", "type": "index.sqlite", "params": {"path": ")" +
                                (dir / "i.db") + R"("}}],
      "edges": [["src", "emb"], ["emb", "db"]]})");
    ::setenv("SLUICE_TEST_SEARCH_KEY", "search-test-key", 1);
    auto run = test::run_sluice("run " + graph + " --quiet --state " + (dir / "state"));
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const std::string search = "search " + (dir / "i.db") + " '" + texts[2] + "' --k 2 --json ";

    auto no_graph = test::run_sluice(search + "--mode vector");
    EXPECT_EQ(no_graph.exit_code, 2);
    EXPECT_NE(no_graph.err.find("--graph PATH"), std::string::npos) << no_graph.err;

    auto found = test::run_sluice(search + "--mode vector --graph " + graph);
    ASSERT_EQ(found.exit_code, 0) << found.err;
    rapidjson::Document d;
    d.Parse(found.out.c_str());
    ASSERT_TRUE(d.IsArray() && d.Size() == 2) << found.out;
    EXPECT_STREQ(d[0]["id"].GetString(), "d2") << "the same text, the same vector";
    auto hybrid = test::run_sluice(search + "--mode hybrid --graph " + graph);
    EXPECT_EQ(hybrid.exit_code, 0) << hybrid.err;
    EXPECT_NE(hybrid.out.find("\"d2\""), std::string::npos);

    auto other_model =
        test::run_sluice(search + "--mode vector --graph " + graph + " --set model=m2");
    EXPECT_EQ(other_model.exit_code, 2);
    EXPECT_NE(other_model.err.find("the index was embedded with " + type + " (model m1)"),
              std::string::npos)
        << other_model.err;

    ::unsetenv("SLUICE_TEST_SEARCH_KEY");
    auto no_key = test::run_sluice(search + "--mode vector --graph " + graph);
    EXPECT_EQ(no_key.exit_code, 2);
    EXPECT_NE(no_key.err.find("api_key reads ${env:SLUICE_TEST_SEARCH_KEY}, which is not set"),
              std::string::npos)
        << no_key.err;
  }
}

}  // namespace
}  // namespace sluice
