// Retrieval quality on the bundled corpus against the question sets in bench/retrieval (what
// scripts/bench-retrieval prints): hybrid search must never do worse than bm25 alone, in recall@10
// or in MRR, with the default graph's embedder.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "nodes/index_sqlite_search.hpp"
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

}  // namespace
}  // namespace sluice
