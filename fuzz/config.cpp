// The graph config parser: any text is a GraphSpec or a ConfigError, nothing else.
#include "engine/graph/graph_spec.hpp"
#include "fuzz/fuzz_target.hpp"
#include "nodes/builtin_nodes.hpp"

SLUICE_FUZZ_TARGET(config) {
  using namespace sluice;
  try {
    parse_graph(fuzz::as_text(data, size), "fuzz.json", {}, builtin_registry());
  } catch (const ConfigError& e) {
    fuzz::check(!e.text.empty(), "a ConfigError says what is wrong");
  }
  return 0;
}
