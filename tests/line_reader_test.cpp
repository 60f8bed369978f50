// engine/text/line_reader and the line sources on it: a read error is an error, a line past the
// cap is dead-lettered with its number while the rest is read, and a directory is refused.
#include "engine/text/line_reader.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/test_util.hpp"

namespace sluice {
namespace {

TEST(LineReader, LinesLongLinesAndTheLastLineWithoutANewline) {
  test::TempDir dir;
  const std::string big(3000, 'x');
  test::write_file(dir / "f.txt", "one\r\ntwo\n" + big + "\n\nlast");
  LineReader in;
  in.open(dir / "f.txt", 1000);
  std::string line;
  ASSERT_EQ(in.next(line), LineReader::Status::line);
  EXPECT_EQ(line, "one");
  ASSERT_EQ(in.next(line), LineReader::Status::line);
  EXPECT_EQ(line, "two");
  ASSERT_EQ(in.next(line), LineReader::Status::too_long);
  EXPECT_EQ(in.line_number(), 3u);
  ASSERT_EQ(in.next(line), LineReader::Status::line);
  EXPECT_EQ(line, "");
  ASSERT_EQ(in.next(line), LineReader::Status::line);
  EXPECT_EQ(line, "last");
  EXPECT_EQ(in.line_number(), 5u);
  EXPECT_EQ(in.next(line), LineReader::Status::end);
}

TEST(LineReader, ALongLineAcrossManyChunksIsSkippedWithoutHoldingIt) {
  test::TempDir dir;
  test::write_file(dir / "f.txt",
                   std::string(1 << 20, 'y') + "\nafter\n" + std::string(200000, 'z'));
  LineReader in;
  in.open(dir / "f.txt", 100);
  std::string line;
  EXPECT_EQ(in.next(line), LineReader::Status::too_long);
  ASSERT_EQ(in.next(line), LineReader::Status::line);
  EXPECT_EQ(line, "after");
  EXPECT_EQ(in.next(line), LineReader::Status::too_long) << "a long last line";
  EXPECT_EQ(in.line_number(), 3u);
  EXPECT_EQ(in.next(line), LineReader::Status::end);
}

TEST(LineReader, DirectoriesAndReadErrorsAreErrorsNotAnEmptyFile) {
  test::TempDir dir;
  LineReader a;
  EXPECT_THROW(a.open(dir.path().string(), 100), std::runtime_error);
  LineReader b;
  EXPECT_THROW(b.open(dir / "missing", 100), std::runtime_error);
  // Reading this process's memory from address 0 fails with EIO: a read error mid-file.
  LineReader c;
  c.open("/proc/self/mem", 100);
  std::string line;
  try {
    c.next(line);
    FAIL() << "a read error must not read as the end of input";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("reading \"/proc/self/mem\" failed at line 1"),
              std::string::npos)
        << e.what();
  }
}

TEST(LineSources, ADirectoryFailsTheRunAndALongLineIsDeadLettered) {
  test::TempDir dir;
  for (const char* type : {"source.lines", "source.jsonl"}) {
    auto graph = [&](const std::string& path) {
      return R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") + R"("},
        "nodes": [{"id": "in", "type": ")" +
             type + R"(", "params": {"path": ")" + path +
             R"(", "max_line_mb": 1}},
          {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
             (dir / "out.jsonl") + R"("}}], "edges": [["in", "out"]]})";
    };
    RunReport rep = test::run_json(graph(dir.path().string()));
    EXPECT_NE(rep.error.find("is a directory"), std::string::npos) << type << ": " << rep.error;

    const bool jsonl = std::string(type) == "source.jsonl";
    auto line = [&](const std::string& id) {
      return jsonl ? R"({"id": ")" + id + R"(", "text": "t"})" : id;
    };
    test::write_file(dir / "in.txt",
                     line("a") + "\n" +
                         (jsonl ? R"({"id": "big", "text": ")" + std::string(2 << 20, 'x') + "\"}"
                                : std::string(2 << 20, 'x')) +
                         "\n" + line("c") + "\n");
    std::filesystem::remove(dir / "dlq.jsonl");
    rep = test::run_json(graph(dir / "in.txt"));
    EXPECT_EQ(rep.error, "") << type;
    EXPECT_EQ(rep.docs_indexed, 2u) << type;
    EXPECT_EQ(rep.dead_lettered, 1u) << type;
    EXPECT_NE(test::read_file(dir / "dlq.jsonl").find("line 2 of"), std::string::npos) << type;
  }
}

}  // namespace
}  // namespace sluice
