// `sluice search` on untrusted input: any query against a real index (built once), and any bytes
// as the index file. Each is hits or a std::runtime_error (exit 2 in the CLI), never a crash.
// Input: a mode byte, then the query; a file, when the input starts with SQLite's header.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine/graph/graph_runner.hpp"
#include "engine/graph/graph_spec.hpp"
#include "fuzz/fuzz_target.hpp"
#include "nodes/builtin_nodes.hpp"
#include "nodes/index_sqlite_search.hpp"

namespace {

namespace fs = std::filesystem;

// A directory of this process's files, removed at exit.
struct ScratchDir {
  fs::path path = fs::temp_directory_path() / ("sluice-fuzz-" + std::to_string(getpid()));
  ScratchDir() { fs::create_directories(path / "docs"); }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
const fs::path& scratch() {
  static ScratchDir dir;
  return dir.path;
}

// A small index of three documents with embed.hash vectors, in a directory of this process.
const std::string& real_index() {
  static const std::string path = [] {
    const fs::path& dir = scratch();
    std::ofstream(dir / "docs/a.txt") << "The quartz heron sings at midnight by the river.";
    std::ofstream(dir / "docs/b.txt") << "A donkey spoke to its rider on the road.\n\nHills.";
    std::ofstream(dir / "docs/c.txt") << "Rivers and hills; the heron, the donkey: 1, 2, 3.";
    std::string g = R"({"nodes": [
      {"id": "f", "type": "source.files", "params": {"dir": ")" +
                    (dir / "docs").string() + R"("}},
      {"id": "c", "type": "chunk.recursive", "params": {"size": 20}},
      {"id": "e", "type": "embed.hash", "params": {"dim": 16}},
      {"id": "i", "type": "index.sqlite", "params": {"path": ")" +
                    (dir / "i.db").string() + R"("}}],
      "edges": [["f", "c"], ["c", "e"], ["e", "i"]]})";
    sluice::GraphSpec spec = sluice::parse_graph(g, "fuzz.json", {}, sluice::builtin_registry());
    sluice::RunOptions opts;
    opts.threads = 1;
    sluice::run_graph(spec, opts);
    return (dir / "i.db").string();
  }();
  return path;
}

void search_all_modes(const std::string& path, const std::string& query) {
  using sluice::SearchMode;
  for (SearchMode m : {SearchMode::bm25, SearchMode::vector, SearchMode::hybrid}) {
    try {
      std::string note;
      auto hits = sluice::search_index(path, query, 5, m, &note);
      sluice::fuzz::check(hits.size() <= 5, "at most k hits");
    } catch (const std::runtime_error&) {
    }
  }
}

}  // namespace

SLUICE_FUZZ_TARGET(search) {
  std::string_view in = sluice::fuzz::as_text(data, size);
  constexpr std::string_view kSqliteHeader("SQLite format 3\0", 16);
  if (in.substr(0, kSqliteHeader.size()) == kSqliteHeader) {
    // The bytes are the index: a damaged or crafted file.
    static const std::string path = (scratch() / "file.db").string();
    fs::remove(path + "-wal");
    fs::remove(path + "-shm");
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(in.data(), in.size());
    search_all_modes(path, "heron donkey");
    return 0;
  }
  search_all_modes(real_index(), std::string(in));
  return 0;
}
