// The bundled sample corpus (graphs/data/kjv), for tests and benchmarks: the text of each file,
// in file-name order; empty when the corpus is missing. Needs SLUICE_SOURCE_DIR.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace sluice::test {

inline std::vector<std::string> sample_corpus_files() {
  const std::filesystem::path dir = std::filesystem::path(SLUICE_SOURCE_DIR) / "graphs/data/kjv";
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_directory(dir, ec))
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> texts;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    texts.push_back(ss.str());
  }
  return texts;
}

}  // namespace sluice::test
