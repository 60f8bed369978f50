// Graph config → validated GraphSpec. Every mistake in a config is reported at once as
// `file:line:col: json.path: message` with a "did you mean" where a name is close to a known one.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/diagnostics.hpp"
#include "engine/http/client.hpp"
#include "engine/node.hpp"
#include "engine/secrets.hpp"

namespace sluice {

struct NodeSpec {
  std::string id;
  std::string type;
  const NodeTypeInfo* info = nullptr;
  Params params;
  int concurrency = 0;    // 0 = unlimited, 1 = serial, N
  bool adaptive = false;  // "adaptive[:N]": I/O nodes find their limit in [1, concurrency] (AIMD)
  json::Location loc;
};

// Bounds shared by the config's settings and the CLI's flags, so both refuse the same values.
constexpr int kMaxThreads = 1024;  // oneTBB threads per process
constexpr int kMaxProcesses = 1024;
constexpr int kMaxInflightDocs = 10'000'000;
constexpr int64_t kMaxConnections = 1'000'000;
constexpr int64_t kMaxBodyMb = 1 << 20;

struct GraphSettings {
  int threads = 0;  // 0 = hardware concurrency
  int max_inflight_docs = 256;
  // JSONL path of dead letters; empty: `sluice run` puts them beside the first output
  // (default_dead_letter_file).
  std::string dead_letter;
  // JSONL path: every record's outcome (id, doc id, outcome, node, reason); empty = none.
  std::string outcomes;
  // A run whose dead-lettered documents are more than this share of its documents fails (exit
  // 1), as does one in which every document was dead-lettered.
  double max_dead_letter_ratio = 0.1;
  // "limits_scope": "job" (default) splits rate limits and I/O concurrency across every process
  // of every shard; "shard" gives each shard its own (separate quotas), split across its processes.
  bool limits_per_shard = false;
  // "http_loop": how the HTTP loop waits on its sockets, "epoll" (default) or "poll".
  http::LoopKind http_loop = http::LoopKind::epoll;
  // "max_host_connections" / "max_connections": open connections per host / in all, per process
  // (0 = no cap). Transfers past a cap wait inside libcurl for a connection to come free.
  int64_t max_host_connections = 0;
  int64_t max_connections = 0;
  // "max_body_mb": response-body bytes one process receives at once, over all its requests
  // (0 = no bound); transfers past it wait. See http::ClientOptions::max_body_bytes.
  int64_t max_body_mb = 256;
};

struct GraphSpec {
  std::string file;
  std::string name;
  std::string description;
  std::map<std::string, std::string> vars;  // after --set overrides
  GraphSettings settings;
  std::vector<NodeSpec> nodes;
  std::vector<std::pair<size_t, size_t>> edges;  // indices into nodes
  std::vector<std::vector<size_t>> successors;   // per node
  std::vector<std::vector<size_t>> predecessors;
  std::vector<size_t> topo_order;
  std::string config_hash;  // hex; changes when nodes, params, edges or settings change
  // file:line:col: path: message lines for what is valid but worth saying (a deprecated param).
  std::string warnings;
  // Env values the config used: the run masks them in every message, report and dead letter.
  Secrets secrets;

  size_t index_of(std::string_view id) const;  // npos if absent
};

struct VarOverride {
  std::string name;
  std::string value;
};
// Parses "name=value"; false if there is no '='.
bool parse_override(std::string_view text, VarOverride& out);

// The keys of a graph's "settings", with their types, defaults, bounds and docs: what the loader
// accepts (each is read and range-checked there) and what `sluice schema` describes.
const std::vector<ParamSpec>& settings_params();

// Throws ConfigError with every problem found. `file` is used for messages and ${graph_dir}.
// `builtins` sets built-in vars (e.g. "shard" → "3", so a path can say out/part-${shard}.db).
GraphSpec parse_graph(std::string_view text, const std::string& file,
                      const std::vector<VarOverride>& overrides, const Registry& registry,
                      const std::map<std::string, std::string>& builtins = {});
GraphSpec load_graph(const std::string& path, const std::vector<VarOverride>& overrides,
                     const Registry& registry,
                     const std::map<std::string, std::string>& builtins = {});

// Rate limits (params declared job_total) and I/O nodes' `concurrency` are totals for the whole
// job: each of `parts` processes gets 1/parts of them (concurrency rounded up, at least 1).
// Leaves config_hash alone, so every worker of a job has the same hash.
void split_job_limits(GraphSpec& spec, int parts);

}  // namespace sluice
