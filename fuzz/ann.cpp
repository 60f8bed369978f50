// The nearest-neighbour graph file (`PATH.hnsw`) on untrusted bytes: mapping it either refuses it
// with a std::runtime_error or gives a graph whose links check and search stay inside the file,
// never a crash. The corpus starts from a real graph of 16-dimension vectors.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fuzz/fuzz_target.hpp"
#include "nodes/index_sqlite_ann.hpp"

namespace {
// This process's scratch file, removed at exit.
struct Scratch {
  std::string path =
      (std::filesystem::temp_directory_path() / ("sluice-fuzz-ann-" + std::to_string(getpid())))
          .string();
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};
}  // namespace

SLUICE_FUZZ_TARGET(ann) {
  static const Scratch scratch;
  const std::string& path = scratch.path;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  float query[16];
  for (int i = 0; i < 16; ++i) query[i] = i % 3 == 0 ? 0.5f : -0.25f;
  try {
    sluice::sqlite_index::AnnGraph g(path, 16);
    g.links_ok();
    auto hits = g.search(query, 5, 40);
    sluice::fuzz::check(hits.size() <= 5, "at most k hits");
    for (size_t i = 1; i < hits.size(); ++i)
      sluice::fuzz::check(hits[i - 1].first >= hits[i].first, "hits best first");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
