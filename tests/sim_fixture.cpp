#include "tests/sim_fixture.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

namespace sluice::test {

std::string RunningSim::url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + std::string(path);
}

rapidjson::Document RunningSim::stats() const {
  rapidjson::Document d;
  d.Parse(stats_json().c_str());
  EXPECT_FALSE(d.HasParseError());
  return d;
}

std::string fetch_graph(const std::string& ids, const std::string& url,
                        const std::string& sink_path, const std::string& fetch_params,
                        const std::string& fetch_conc, const std::string& settings) {
  return R"({"settings": {"max_inflight_docs": 2000)" + settings + R"(},
  "nodes": [{"id": "ids", "type": "source.lines", "params": {"path": ")" +
         ids + R"("}},
    {"id": "fetch", "type": "fetch.http", "params": {"url": ")" +
         url + R"(")" + fetch_params + R"(}, "concurrency": )" + fetch_conc + R"(},
    {"id": "extract", "type": "extract.json", "params": {"text": "/text", "meta": {"title": "/title"}}},
    {"id": "index", "type": "index.sqlite", "params": {"path": ")" +
         sink_path + R"(", "batch": 64}}],
  "edges": [["ids", "fetch"], ["fetch", "extract"], ["extract", "index"]]})";
}

RunReport fetch_ids(const RunningSim& sim, const TempDir& dir, int n,
                    const std::string& concurrency, int threads) {
  return run_json(
      fetch_graph(ids_file(dir, n), sim.url("/docs/{id}"), dir / "f.db", "", concurrency), threads);
}

int64_t sqlite_count(const std::string& db, const char* sql) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, sql, -1, &s, nullptr);
  int64_t n = -1;
  if (s && sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(h);
  return n;
}

}  // namespace sluice::test
