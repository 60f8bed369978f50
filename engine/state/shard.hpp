// Which documents this process handles. A document belongs to shard `stable_hash64(doc_id) mod N`
// (engine/text.hpp: a wyhash-style 64-bit hash of the id's bytes, seed 0, pinned by tests): the
// same on every machine and in every process. A shard split further among P local workers gives
// worker w the sub-shard `i + N*w` of `N*P`, which is still inside shard i. Pure functions,
// thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

struct ShardSpec {
  int index = 0;
  int count = 1;
  std::string origin;  // where it came from, for the "shard 3/10 (from SLURM_ARRAY_TASK_ID)" line

  bool all() const { return count <= 1; }
  bool owns(std::string_view doc_id) const;
  // Worker `w` of `p` local workers inside this shard.
  ShardSpec split(int w, int p) const;
  std::string text() const { return std::to_string(index) + "/" + std::to_string(count); }
  // "sI-of-N": how a shard's own files are named (a lock, a dead-letter file, JSONL parts).
  std::string file_tag() const;
};

int shard_of(std::string_view doc_id, int count);

// Parses "i/N" (0 <= i < N). Throws std::invalid_argument with a message that says what is wrong.
ShardSpec parse_shard(std::string_view text);

// The shard from an explicit `--shard` (non-empty wins), else from the scheduler's environment:
// SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, SLURM_PROCID/SLURM_NTASKS,
// OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE, PMI_RANK/PMI_SIZE, JOB_COMPLETION_INDEX with
// `shards` (Kubernetes Indexed Jobs have no count in the env). `getenv` is injectable for tests.
// Throws std::invalid_argument on inconsistent values.
using EnvFn = const char* (*)(const char*);
ShardSpec resolve_shard(const std::string& flag, int shards, EnvFn env);

}  // namespace sluice
