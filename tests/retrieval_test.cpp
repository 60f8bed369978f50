// Retrieval quality on the bundled corpus against the question sets in bench/retrieval (what
// scripts/bench-retrieval prints): hybrid search must never do worse than bm25 alone, in recall@10
// or in MRR, with the default graph's embedder.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <filesystem>

#include "nodes/embed_fasttext.hpp"
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
  // bm25 postings (what an index past 100k chunks gets) rank exactly as FTS5 does: every
  // question's top 10 is the same, score for score.
  auto built = test::run_sluice("build-search " + db);
  ASSERT_EQ(built.exit_code, 0) << built.err;
  ASSERT_NE(built.out.find("wrote the bm25 postings"), std::string::npos) << built.out;
  VectorOptions fts5;
  fts5.exact = true;
  for (const char* set : {"kjv-questions.jsonl", "kjv-keywords.jsonl"})
    for (const auto& q : questions(set)) {
      const auto a = search_index(db, q.q, 10, SearchMode::bm25);
      const auto b = search_index(db, q.q, 10, SearchMode::bm25, nullptr, -1, {}, fts5);
      ASSERT_EQ(a.size(), b.size()) << q.q;
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].id, b[i].id) << q.q << " #" << i;
        EXPECT_NEAR(a[i].score, b[i].score, 1e-6 * b[i].score) << q.q;
        EXPECT_EQ(a[i].snippet, b[i].snippet);
      }
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

namespace sluice {
namespace {

// A fastText model trained on a few books, used by embed.fasttext, searched in vector mode: a
// chunk's own text finds it first (the model the index names is loaded for the query).
TEST(FastText, TrainEmbedIndexAndSearch) {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "books");
  for (const char* b : {"08-Ruth.txt", "32-Jonah.txt", "57-Philemon.txt", "31-Obadiah.txt"})
    std::filesystem::copy_file(test::source_dir() + "/graphs/data/kjv/" + b, dir / "books/" + b);
  test::write_file(dir / "books/picture.png", std::string("\x89PNG\r\n\x1a\n\0\0", 10));
  auto train = test::run_sluice("train-embedder " + (dir / "books") + " --out " + (dir / "m") +
                                " --dim 16 --epoch 3 --threads 1 --seed 1 --min-count 1");
  ASSERT_EQ(train.exit_code, 0) << train.err;
  EXPECT_NE(train.out.find("16 dimensions, from 4 files"), std::string::npos) << train.out;
  EXPECT_NE(train.out.find("1 binary skipped"), std::string::npos) << train.out;
  ASSERT_TRUE(std::filesystem::exists(dir / "m.bin"));
  EXPECT_FALSE(std::filesystem::exists(dir / "m.bin.train.txt")) << "the training text is removed";

  const std::string db = dir / "i.db";
  auto run = test::run_sluice("run graphs/local-files.json --quiet --set dir=" + (dir / "books") +
                              " --set glob='*.txt' --set db=" + db +
                              " --set embedder=embed.fasttext --set model=" + (dir / "m.bin") +
                              " --state " + (dir / "state"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // The chunk holding Ruth 1:16 (found by its words), searched by its own text in vector mode:
  // the same words, the same vector.
  const auto ruth = search_index(db, "\"Intreat me not to leave thee\"", 1, SearchMode::bm25);
  ASSERT_EQ(ruth.size(), 1u);
  const auto hits = search_index(db, ruth[0].text, 3, SearchMode::vector);
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].id, ruth[0].id);
  EXPECT_GT(hits[0].score, 0.99);
  EXPECT_FALSE(search_index(db, "a widow and her mother in law", 3, SearchMode::hybrid).empty());

  // A missing model is a config error that says how to make one.
  auto missing = test::run_sluice("validate graphs/local-files.json --set embedder=embed.fasttext "
                                  "--set model=" +
                                  (dir / "nope.bin"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE((missing.out + missing.err).find("sluice train-embedder"), std::string::npos)
      << missing.out << missing.err;
}

// A .vec file: known words only, each weighted by its rank; malformed lines are errors naming
// the line.
TEST(FastText, VecFilesWeighWordsByRankAndRefuseBadLines) {
  test::TempDir dir;
  test::write_file(dir / "v.vec", "3 2\nthe 1 0\nark 0 1\nflood 0.6 0.8\n");
  const auto m = load_fasttext(dir / "v.vec");
  EXPECT_EQ(m->dim(), 2);
  const auto one = m->embed("Ark!");
  EXPECT_NEAR(one[0], 0.0, 1e-6);
  EXPECT_NEAR(one[1], 1.0, 1e-6);
  // "the" (rank 1) weighs less than "ark" (rank 2): the sum leans to ark's axis.
  const auto two = m->embed("the ark");
  EXPECT_GT(two[1], two[0]);
  EXPECT_NEAR(two[0] * two[0] + two[1] * two[1], 1.0, 1e-5);
  const auto none = m->embed("unknown words only");
  EXPECT_EQ(none, (std::vector<float>{0, 0}));
  // A word listed twice keeps its first row, and the words after it their own.
  test::write_file(dir / "twice.vec", "3 2\nthe 1 0\nthe 0 1\nark 0.6 0.8\n");
  const auto ark = load_fasttext(dir / "twice.vec")->embed("ark");
  EXPECT_NEAR(ark[0], 0.6, 1e-6);
  EXPECT_NEAR(ark[1], 0.8, 1e-6);
  EXPECT_NEAR(load_fasttext(dir / "twice.vec")->embed("the")[0], 1.0, 1e-6);
  test::write_file(dir / "bad.vec", "2 2\nthe 1 0\nark 0 x\n");
  try {
    load_fasttext(dir / "bad.vec");
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.vec:3: expected 2 numbers"), std::string::npos)
        << e.what();
  }
  test::write_file(dir / "foreign.bin", "not a model");
  EXPECT_THROW(load_fasttext(dir / "foreign.bin"), std::runtime_error);
}

}  // namespace
}  // namespace sluice
