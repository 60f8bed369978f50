// The shared set-up of every test that talks HTTP: a `sluice sim` started in-process on
// loopback, stopped when it goes out of scope, with its URL and /stats at hand; and the small
// graphs and checks the HTTP node tests share.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

#include "sim/sim.hpp"
#include "tests/test_util.hpp"

namespace sluice::test {

class RunningSim : public sim::SimServer {
 public:
  explicit RunningSim(sim::SimOptions options = {}) : SimServer(std::move(options)) { start(); }
  // "http://127.0.0.1:PORT" followed by `path`.
  std::string url(std::string_view path = "") const;
  // Its /stats, parsed (a parse error fails the test).
  rapidjson::Document stats() const;
};

// ids → fetch.http (`url`, `fetch_params` appended to its params, `fetch_conc` as its
// concurrency) → extract.json (/text, /title) → index.sqlite at `sink_path`.
std::string fetch_graph(const std::string& ids, const std::string& url,
                        const std::string& sink_path, const std::string& fetch_params,
                        const std::string& fetch_conc, const std::string& settings = "");

// `n` document ids fetched from the sim's /docs/{id} into an SQLite index in `dir`, with the
// fetch node's `concurrency` as given (JSON: 8, "\"adaptive:100\"").
RunReport fetch_ids(const RunningSim& sim, const TempDir& dir, int n,
                    const std::string& concurrency, int threads = 2);

// The one integer `sql` returns from the SQLite file `db` (-1 when none).
int64_t sqlite_count(const std::string& db, const char* sql);

}  // namespace sluice::test
