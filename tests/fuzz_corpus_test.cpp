// Every fuzz target (fuzz/*.cpp) replays its corpus, fuzz/corpus/<target>/: the seeds and every
// input a fuzzing run saved, findings included once fixed. A crash, a sanitizer report or a
// failed check fails this test as it would the fuzzer.
#include <gtest/gtest.h>

#include <filesystem>

#include "fuzz/fuzz_target.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

namespace fs = std::filesystem;

TEST(FuzzCorpus, EveryTargetReplaysItsCorpus) {
  const fs::path root = fs::path(test::source_dir()) / "fuzz" / "corpus";
  ASSERT_GE(fuzz::targets().size(), 8u);
  for (const auto& [name, target] : fuzz::targets()) {
    const fs::path dir = root / name;
    ASSERT_TRUE(fs::is_directory(dir)) << "no corpus for target " << name;
    size_t files = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::string bytes = test::read_file(e.path().string());
      SCOPED_TRACE(e.path().string());
      EXPECT_EQ(target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0);
      ++files;
    }
    EXPECT_GT(files, 0u) << name;
    std::printf("%s: %zu inputs\n", name.c_str(), files);
  }
}

}  // namespace
}  // namespace sluice
