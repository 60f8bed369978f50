#include "engine/state/shard.hpp"

#include <charconv>
#include <cstdlib>
#include <stdexcept>

#include "engine/text/text.hpp"

namespace sluice {

int shard_of(std::string_view doc_id, int count) {
  if (count <= 1) return 0;
  return static_cast<int>(text::stable_hash64(doc_id) % static_cast<uint64_t>(count));
}

bool ShardSpec::owns(std::string_view doc_id) const {
  return count <= 1 || shard_of(doc_id, count) == index;
}

std::string ShardSpec::file_tag() const {
  std::string tag = "s";  // built by appending: GCC 12 warns (-Wrestrict, falsely) on "s" + ...
  tag += std::to_string(index);
  tag += "-of-";
  tag += std::to_string(count);
  return tag;
}

ShardSpec ShardSpec::split(int w, int p) const {
  ShardSpec s = *this;
  s.index = index + count * w;
  s.count = count * p;
  return s;
}

namespace {

std::optional<int> to_int(std::string_view s) {
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

ShardSpec checked(int index, int count, std::string origin) {
  if (count < 1)
    throw std::invalid_argument(origin + ": the shard count must be at least 1, got " +
                                std::to_string(count));
  if (index < 0 || index >= count)
    throw std::invalid_argument(origin + ": shard " + std::to_string(index) +
                                " is out of range for " + std::to_string(count) + " shards (0 to " +
                                std::to_string(count - 1) + ")");
  return ShardSpec{index, count, std::move(origin)};
}

}  // namespace

ShardSpec parse_shard(std::string_view text) {
  size_t slash = text.find('/');
  auto i = slash == std::string_view::npos ? std::nullopt : to_int(text.substr(0, slash));
  auto n = slash == std::string_view::npos ? std::nullopt : to_int(text.substr(slash + 1));
  if (!i || !n)
    throw std::invalid_argument("--shard: expected INDEX/COUNT such as 0/4, got \"" +
                                std::string(text) + "\"");
  return checked(*i, *n, "--shard " + std::string(text));
}

ShardSpec resolve_shard(const std::string& flag, int shards, EnvFn env) {
  if (!flag.empty()) return parse_shard(flag);
  auto pair = [&](const char* idx_name, const char* count_name) -> std::optional<ShardSpec> {
    const char* idx = env(idx_name);
    const char* cnt = env(count_name);
    if (!idx || !cnt) return std::nullopt;
    auto i = to_int(idx), n = to_int(cnt);
    std::string origin = std::string(idx_name) + "=" + idx + ", " + count_name + "=" + cnt;
    if (!i || !n) throw std::invalid_argument(origin + ": not whole numbers");
    return checked(*i, *n, origin);
  };
  // Slurm array tasks count from --array=0-N; the shard count is the array's size.
  if (auto s = pair("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")) return *s;
  if (auto s = pair("SLURM_PROCID", "SLURM_NTASKS")) return *s;
  if (auto s = pair("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")) return *s;
  if (auto s = pair("PMI_RANK", "PMI_SIZE")) return *s;
  if (const char* idx = env("JOB_COMPLETION_INDEX")) {
    auto i = to_int(idx);
    std::string origin = std::string("JOB_COMPLETION_INDEX=") + idx;
    if (!i) throw std::invalid_argument(origin + ": not a whole number");
    if (shards < 1)
      throw std::invalid_argument(
          origin + " is set but --shards is not: pass --shards N (the Job's completions)");
    return checked(*i, shards, origin + ", --shards " + std::to_string(shards));
  }
  if (shards > 1)
    throw std::invalid_argument("--shards " + std::to_string(shards) +
                                " needs --shard i/N or a scheduler's index in the environment");
  return ShardSpec{0, 1, "single shard"};
}

}  // namespace sluice
