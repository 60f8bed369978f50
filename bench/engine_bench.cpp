// Engine overhead per item per hop, beside a bare oneTBB function_node chain measured in the
// same process; and the hash embedder. Ratios, not absolute times, are what docs/benchmarks.md
// reports.
#include <benchmark/benchmark.h>
#include <tbb/flow_graph.h>
#include <tbb/task_arena.h>

#include <chrono>
#include <memory>

#include "engine/graph/graph_runner.hpp"
#include "engine/graph/graph_spec.hpp"
#include "nodes/builtin_nodes.hpp"
#include "nodes/embed_hash.hpp"
#include "nodes/source_range.hpp"

namespace {

using namespace sluice;
using Clock = std::chrono::steady_clock;
constexpr int kHops = 10;

// N shared_ptr messages through 10 unlimited function_nodes (identity bodies).
void BM_BareTbbChain(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  tbb::task_arena arena(2);
  double total_s = 0;
  for (auto _ : state) {
    arena.execute([&] {
      tbb::flow::graph g;
      using FN = tbb::flow::function_node<std::shared_ptr<int>, std::shared_ptr<int>>;
      std::vector<std::unique_ptr<FN>> chain;
      for (int i = 0; i < kHops; ++i)
        chain.push_back(std::make_unique<FN>(g, tbb::flow::unlimited,
                                             [](const std::shared_ptr<int>& p) { return p; }));
      for (int i = 0; i + 1 < kHops; ++i) tbb::flow::make_edge(*chain[i], *chain[i + 1]);
      auto t0 = Clock::now();
      for (int i = 0; i < n; ++i) chain[0]->try_put(std::make_shared<int>(i));
      g.wait_for_all();
      total_s += std::chrono::duration<double>(Clock::now() - t0).count();
    });
  }
  state.counters["ns_per_item_hop"] =
      total_s * 1e9 / (static_cast<double>(state.iterations()) * n * kHops);
}
BENCHMARK(BM_BareTbbChain)->Arg(200000)->Unit(benchmark::kMillisecond)->UseRealTime();

std::string chain_graph(int count, int hops) {
  std::string nodes = R"({"id": "src", "type": "source.range", "params": {"count": )" +
                      std::to_string(count) + R"(, "size": 16}})";
  std::string edges;
  std::string prev = "src";
  for (int i = 0; i < hops; ++i) {
    // Appends, not "literal" + std::string: GCC 12 warns falsely (-Wrestrict) on that.
    std::string id = "p";
    id += std::to_string(i);
    nodes.append(R"(, {"id": ")").append(id).append(R"(", "type": "util.pass"})");
    edges.append(R"([")").append(prev).append(R"(", ")").append(id).append(R"("],)");
    prev = id;
  }
  nodes +=
      R"(, {"id": "sink", "type": "index.jsonl", "params": {"path": "/dev/null", "batch": 4096}})";
  edges.append(R"([")").append(prev).append(R"(", "sink"])");
  return R"({"settings": {"max_inflight_docs": 1024}, "nodes": [)" + nodes + R"(], "edges": [)" +
         edges + "]}";
}

// sluice's cost per hop: the same run with 10 util.pass nodes and with none, in one process;
// the difference divided by items × hops.
void BM_EngineChain(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  GraphSpec with = parse_graph(chain_graph(n, kHops), "bench", {}, builtin_registry());
  GraphSpec without = parse_graph(chain_graph(n, 0), "bench", {}, builtin_registry());
  RunOptions opts;
  opts.threads = 2;
  double t_with = 0, t_without = 0;
  for (auto _ : state) {
    RunReport a = run_graph(without, opts);
    RunReport b = run_graph(with, opts);
    if (a.lost || b.lost || !a.error.empty() || !b.error.empty()) state.SkipWithError("run failed");
    t_without += a.elapsed_s;
    t_with += b.elapsed_s;
  }
  double iters = static_cast<double>(state.iterations());
  state.counters["ns_per_item_hop"] = (t_with - t_without) * 1e9 / (iters * n * kHops);
  state.counters["ns_per_item_source_to_sink"] = t_without * 1e9 / (iters * n);
}
BENCHMARK(BM_EngineChain)->Arg(200000)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_HashEmbed(benchmark::State& state) {
  std::string text = range_text(1, 1, 800);
  for (auto _ : state) benchmark::DoNotOptimize(hash_embed(text, 256));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_HashEmbed);

}  // namespace
