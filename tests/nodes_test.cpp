// Each built-in node wired into a small graph, asserting what reaches the sink.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <rapidjson/document.h>

#include "nodes/embed_hash.hpp"
#include "nodes/source_range.hpp"
#include "nodes/text_template.hpp"
#include "sim/sim.hpp"
#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

// source → [middle...] → index.jsonl; returns the JSONL lines.
std::vector<std::string> run_to_jsonl(const test::TempDir& dir, const std::string& source_node,
                                      const std::string& middle_nodes,
                                      const std::string& middle_edges,
                                      RunReport* report = nullptr) {
  auto trimmed = [](std::string t) {
    while (!t.empty() && (t.back() == ',' || std::isspace(static_cast<unsigned char>(t.back()))))
      t.pop_back();
    return t.empty() ? t : t + ",";
  };
  std::string g = R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") + R"("},
  "nodes": [)" + trimmed(source_node) +
                  trimmed(middle_nodes) + R"(
    {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
                  (dir / "out.jsonl") + R"("}}],
  "edges": [)" + middle_edges +
                  "]}";
  RunReport rep = test::run_json(g);
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  if (report) *report = rep;
  return test::read_lines(dir / "out.jsonl");
}

bool has(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines)
    if (l.find(needle) != std::string::npos) return true;
  return false;
}

TEST(SourceFiles, ReadsTextMarkdownHtmlJsonAndJsonl) {
  test::TempDir dir;
  test::write_file(dir / "in/a.txt", "plain text");
  test::write_file(dir / "in/sub/b.md", "# Title\nmarkdown");
  test::write_file(dir / "in/c.html", "<html><head><title>t</title></head><body><p>Hello &amp; "
                                      "<b>bye</b></p><script>x()</script></body></html>");
  test::write_file(dir / "in/d.json",
                   R"([{"id": "j1", "text": "first", "lang": "en"}, {"text": "second"}])");
  test::write_file(dir / "in/e.jsonl",
                   "{\"id\": 7, \"body\": \"seven\"}\n\n{\"id\": 8}\nnot json\n");
  RunReport rep;
  auto lines = run_to_jsonl(dir,
                            R"({"id": "src", "type": "source.files", "params": {"dir": ")" +
                                (dir / "in") + R"(", "text_field": "body"}})",
                            "", R"(["src", "out"])", &rep);
  EXPECT_TRUE(
      has(lines,
          R"("id":"a.txt","doc_id":"a.txt","seq":0,"text":"plain text","meta":{"path":"a.txt"})"));
  EXPECT_TRUE(has(lines, R"("id":"sub/b.md")"));
  EXPECT_TRUE(has(lines, R"("text":"Hello & bye")"))
      << "html: tags and script dropped, entities decoded";
  EXPECT_TRUE(
      has(lines, R"("id":"j1")"));  // but its text field is "text", not "body": empty text, kept
  EXPECT_TRUE(has(lines, R"("id":"d.json:1")"));
  EXPECT_TRUE(has(lines, R"("id":"7","doc_id":"7","seq":0,"text":"seven")"));
  EXPECT_TRUE(has(lines, R"("id":"8","doc_id":"8","seq":0,"text":"")"))
      << "empty text is still a document";
  EXPECT_EQ(rep.docs, 8u);
  EXPECT_EQ(rep.dead_lettered, 1u) << "the malformed line";
  auto dlq = test::read_lines(dir / "dlq.jsonl");
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_NE(dlq[0].find("\"id\":\"e.jsonl:4\""), std::string::npos) << dlq[0];
  EXPECT_NE(dlq[0].find("malformed JSON"), std::string::npos);
}

TEST(SourceFiles, GlobAndRecursiveSelectFiles) {
  test::TempDir dir;
  test::write_file(dir / "in/a.txt", "a");
  test::write_file(dir / "in/b.md", "b");
  test::write_file(dir / "in/sub/c.txt", "c");
  auto lines = run_to_jsonl(dir,
                            R"({"id": "src", "type": "source.files", "params": {"dir": ")" +
                                (dir / "in") + R"(", "glob": "*.txt", "recursive": false}})",
                            "", R"(["src", "out"])");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(has(lines, "\"id\":\"a.txt\""));
}

std::string files_source(const test::TempDir& dir, const std::string& extra = "") {
  return R"({"id": "src", "type": "source.files", "params": {"dir": ")" + (dir / "in") + "\"" +
         extra + "}}";
}

TEST(SourceFiles, LinkLoopsEndAndIdsAreTheListedPaths) {
  namespace fs = std::filesystem;
  test::TempDir dir;
  test::write_file(dir / "in/a.txt", "a");
  test::write_file(dir / "in/sub/b.txt", "b");
  fs::create_directory_symlink(".", dir / "in/loop");        // a link to dir itself
  fs::create_directory_symlink("..", dir / "in/sub/up");     // and to a parent
  fs::create_directory_symlink("sub", dir / "in/also_sub");  // a second name for sub
  fs::create_symlink("a.txt", dir / "in/link1.txt");
  fs::create_symlink("sub/b.txt", dir / "in/link2.txt");
  fs::create_symlink("../../in/a.txt", dir / "in/sub/link3.txt");
  RunReport rep;
  auto lines = run_to_jsonl(dir, files_source(dir), "", R"(["src", "out"])", &rep);
  std::vector<std::string> ids;
  for (const auto& l : lines) ids.push_back(l.substr(7, l.find('"', 7) - 7));
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"a.txt", "link1.txt", "link2.txt", "sub/b.txt",
                                           "sub/link3.txt"}))
      << "each listed path is one document; a directory is listed once, under its real path";
  EXPECT_EQ(rep.docs, 5u);
  EXPECT_EQ(rep.dead_lettered, 0u);
  EXPECT_TRUE(has(lines, R"("id":"link1.txt","doc_id":"link1.txt","seq":0,"text":"a")"));
}

TEST(SourceFiles, LinksLeavingDirAreDeadLetteredUnlessAllowed) {
  namespace fs = std::filesystem;
  test::TempDir dir;
  test::write_file(dir / "in/a.txt", "a");
  test::write_file(dir / "secret/key.txt", "outside");
  fs::create_symlink(dir / "secret/key.txt", dir / "in/key.txt");
  fs::create_directory_symlink("../secret", dir / "in/secret");
  fs::create_symlink("missing.txt", dir / "in/broken.txt");
  fs::create_symlink("loop2.txt", dir / "in/loop1.txt");  // a loop of file links
  fs::create_symlink("loop1.txt", dir / "in/loop2.txt");
  RunReport rep;
  auto lines = run_to_jsonl(dir, files_source(dir), "", R"(["src", "out"])", &rep);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(has(lines, R"("id":"a.txt")"));
  EXPECT_EQ(rep.dead_lettered, 5u);
  auto dlq = test::read_lines(dir / "dlq.jsonl");
  ASSERT_EQ(dlq.size(), 5u);
  EXPECT_TRUE(has(dlq, R"("id":"loop1.txt")"));
  EXPECT_TRUE(has(dlq, "Too many levels of symbolic links"));
  EXPECT_TRUE(has(dlq, R"("id":"key.txt")"));
  EXPECT_TRUE(has(dlq, R"("id":"secret")"));
  EXPECT_TRUE(has(dlq, "symlink leads outside dir; set \\\"links\\\": \\\"all\\\""));
  EXPECT_TRUE(has(dlq, R"("id":"broken.txt")"));
  EXPECT_TRUE(has(dlq, "broken symlink"));
  EXPECT_FALSE(has(lines, "outside"));

  fs::remove(dir / "dlq.jsonl");
  lines =
      run_to_jsonl(dir, files_source(dir, R"(, "links": "all")"), "", R"(["src", "out"])", &rep);
  EXPECT_EQ(lines.size(), 3u);
  EXPECT_TRUE(has(lines, R"("id":"key.txt","doc_id":"key.txt","seq":0,"text":"outside")"));
  EXPECT_TRUE(has(lines, R"("id":"secret/key.txt")")) << "listed under dir, not the target";
  EXPECT_EQ(rep.dead_lettered, 3u) << "the broken link and the loop";

  fs::remove(dir / "dlq.jsonl");
  lines =
      run_to_jsonl(dir, files_source(dir, R"(, "links": "none")"), "", R"(["src", "out"])", &rep);
  EXPECT_EQ(lines.size(), 1u);
  EXPECT_EQ(rep.dead_lettered, 0u);
}

TEST(SourceFiles, AnEntryThatCannotBeListedIsReportedAndTheRunGoesOn) {
  // A chain of directories deeper than PATH_MAX cannot be listed by path, even by root (a
  // directory without permissions would be listed by root).
  test::TempDir dir;
  test::write_file(dir / "in/a.txt", "a");
  const std::string name(200, 'd');
  int fd = ::open((dir / "in").c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  std::vector<int> fds{fd};
  for (int depth = 0; depth < 24; ++depth) {
    ASSERT_EQ(::mkdirat(fds.back(), name.c_str(), 0700), 0);
    int next = ::openat(fds.back(), name.c_str(), O_RDONLY | O_DIRECTORY);
    ASSERT_GE(next, 0);
    fds.push_back(next);
  }
  RunReport rep;
  auto lines = run_to_jsonl(dir, files_source(dir), "", R"(["src", "out"])", &rep);
  EXPECT_EQ(lines.size(), 1u);
  EXPECT_EQ(rep.dead_lettered, 1u);
  auto dlq = test::read_lines(dir / "dlq.jsonl");
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_NE(dlq[0].find("File name too long"), std::string::npos) << dlq[0];
  // Remove the chain from the inside out: the temp dir's cleanup goes by path.
  for (size_t i = fds.size() - 1; i > 0; --i) {
    ::close(fds[i]);
    ASSERT_EQ(::unlinkat(fds[i - 1], name.c_str(), AT_REMOVEDIR), 0);
  }
  ::close(fds[0]);
}

TEST(SourceJsonl, OneDocumentPerLineWithMeta) {
  test::TempDir dir;
  test::write_file(dir / "in.jsonl", "{\"key\": \"k1\", \"content\": \"one\", \"n\": 1}\n{\"key\": "
                                     "\"k2\", \"content\": \"two\"}\n");
  auto lines =
      run_to_jsonl(dir,
                   R"({"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                       (dir / "in.jsonl") + R"(", "id_field": "key", "text_field": "content"}})",
                   "", R"(["src", "out"])");
  ASSERT_EQ(lines.size(), 2u);
  // Lines are formatted in parallel: their order is not the input's.
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines[0], R"({"id":"k1","doc_id":"k1","seq":0,"text":"one","meta":{"n":1}})");
}

// Title and body combined into the text by `text_template`, on every node that reads JSON.
TEST(TextTemplate, ComposesTheTextFromFieldsOnJsonlFilesAndExtractJson) {
  test::TempDir dir;
  const std::string rows = "{\"id\": \"a\", \"title\": \"Title A\", \"body\": \"Body of A.\", "
                           "\"tags\": [\"x\", \"y\"]}\n"
                           "{\"id\": \"b\", \"title\": \"Title B\", \"n\": 7}\n"
                           "{\"id\": \"c\", \"other\": 1}\n";
  test::write_file(dir / "in.jsonl", rows);
  const std::string tpl = R"j("text_template": "{title}\n\n{body}\n\n{tags} ({n})")j";
  RunReport rep;
  auto lines = run_to_jsonl(dir,
                            R"({"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                                (dir / "in.jsonl") + R"(", )" + tpl + "}}",
                            R"({"id": "chunk", "type": "chunk.recursive"})",
                            R"(["src", "chunk"], ["chunk", "out"])", &rep);
  std::sort(lines.begin(), lines.end());
  ASSERT_EQ(lines.size(), 2u) << "c has none of the fields: empty text, filtered";
  EXPECT_NE(lines[0].find(R"j("text":"Title A\n\nBody of A.\n\nx\ny ()")j"), std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find(R"j("text":"Title B\n\n(7)")j"), std::string::npos)
      << "a missing field leaves no empty lines: " << lines[1];
  EXPECT_EQ(rep.docs_filtered, 1u);

  // source.files reads a .jsonl file the same way.
  std::filesystem::create_directories(dir / "files");
  test::write_file(dir / "files/rows.jsonl", rows);
  lines = run_to_jsonl(dir,
                       R"({"id": "src", "type": "source.files", "params": {"dir": ")" +
                           (dir / "files") + R"(", )" + tpl + "}}",
                       R"({"id": "chunk", "type": "chunk.recursive"})",
                       R"(["src", "chunk"], ["chunk", "out"])");
  EXPECT_TRUE(has(lines, R"j("text":"Title A\n\nBody of A.\n\nx\ny ()")j")) << lines.size();

  // extract.json on fetched bodies (the sim's /docs/{id}: title, text), with a pointer and meta.
  sim::SimOptions o;
  o.docs = 3;
  test::RunningSim server(o);
  test::write_file(dir / "ids.txt", "doc-000001\ndoc-000002\n");
  lines = run_to_jsonl(dir,
                       R"({"id": "src", "type": "source.lines", "params": {"path": ")" +
                           (dir / "ids.txt") + R"("}})",
                       R"({"id": "get", "type": "fetch.http", "params": {"url": ")" + server.url() +
                           R"j(/docs/{id}"}},
         {"id": "x", "type": "extract.json", "params": {"text_template": "# {title}\n\n{/text}\n({meta.name})", "meta": {"name": "/id"}}})j",
                       R"(["src", "get"], ["get", "x"], ["x", "out"])");
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& l : lines) {
    rapidjson::Document d;
    d.Parse(l.c_str());
    const std::string text = d["text"].GetString();
    EXPECT_EQ(text.rfind("# ", 0), 0u) << text;
    EXPECT_NE(text.find("\n\n"), std::string::npos) << text;
    EXPECT_EQ(text.substr(text.size() - 12), "(" + std::string(d["id"].GetString()) + ")") << text;
  }

  // Bad templates are config errors naming the param.
  EXPECT_NE(
      test::config_errors(
          R"({"nodes": [{"id": "s", "type": "source.jsonl", "params": {"path": "x", "text_template": "{title"}}], "edges": []})")
          .find("text_template"),
      std::string::npos);
  EXPECT_NE(
      test::config_errors(
          R"({"nodes": [{"id": "s", "type": "source.range"}, {"id": "x", "type": "extract.json", "params": {"text": "/a", "text_template": "{a}"}}], "edges": [["s", "x"]]})")
          .find("not both"),
      std::string::npos);
}

TEST(TextTemplate, FieldsPointersMetaAndBraces) {
  rapidjson::Document d;
  d.Parse(R"({"a": "A", "b": [1, 2], "o": {"k": true}, "z": null})");
  Meta m;
  m.set_string("m", "M");
  EXPECT_EQ(TextTemplate("{{lit}} {a} {/b/0} {meta.m} {o} {z}.").render(d, m),
            "{lit} A 1 M {\"k\":true} .");
  EXPECT_EQ(TextTemplate("{x} and {meta.y}").render(d, m), "") << "nothing found: no text";
  EXPECT_THROW(TextTemplate("{a"), std::invalid_argument);
  EXPECT_THROW(TextTemplate("a}"), std::invalid_argument);
  EXPECT_THROW(TextTemplate("{}"), std::invalid_argument);
  EXPECT_THROW(TextTemplate("no fields"), std::invalid_argument);
  EXPECT_THROW(TextTemplate("{/a~9}"), std::invalid_argument);
}

TEST(SourceRange, IsDeterministicAndSized) {
  EXPECT_EQ(range_text(1, 5, 500), range_text(1, 5, 500));
  EXPECT_NE(range_text(1, 5, 500), range_text(2, 5, 500));
  std::string t = range_text(0, 0, 1000);
  EXPECT_LE(t.size(), 1000u);
  EXPECT_GE(t.size(), 980u);
  EXPECT_NE(t.find(". "), std::string::npos);
}

TEST(UtilFilter, DropsByLengthAndRegex) {
  test::TempDir dir;
  test::write_file(
      dir / "in.jsonl",
      "{\"id\": \"short\", \"text\": \"hi\"}\n{\"id\": \"ok\", \"text\": \"hello world\"}\n"
      "{\"id\": \"long\", \"text\": \"hello world, this is far too long\"}\n"
      "{\"id\": \"spam\", \"text\": \"hello SPAM\"}\n{\"id\": \"nomatch\", \"text\": \"goodbye "
      "now\"}\n");
  RunReport rep;
  auto lines = run_to_jsonl(dir,
                            R"({"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                                (dir / "in.jsonl") + R"("}},
         {"id": "f", "type": "util.filter", "params": {"min_chars": 3, "max_chars": 12, "match": "^hello", "exclude": "SPAM"}},)",
                            "", R"(["src", "f"], ["f", "out"])", &rep);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(has(lines, "\"id\":\"ok\""));
  EXPECT_EQ(rep.filtered, 4u);
  EXPECT_EQ(rep.docs_filtered, 4u);

  // On a meta field: keep the English ones with a title.
  test::write_file(dir / "m.jsonl", "{\"id\": \"en\", \"text\": \"x\", \"lang\": \"en\"}\n"
                                    "{\"id\": \"de\", \"text\": \"x\", \"lang\": \"de\"}\n"
                                    "{\"id\": \"none\", \"text\": \"x\"}\n");
  lines = run_to_jsonl(dir,
                       R"({"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                           (dir / "m.jsonl") + R"("}},
         {"id": "f", "type": "util.filter", "params": {"field": "meta.lang", "match": "^en$"}},)",
                       "", R"(["src", "f"], ["f", "out"])", &rep);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(has(lines, "\"id\":\"en\""));
  EXPECT_EQ(rep.filtered, 2u);
  EXPECT_NE(
      test::config_errors(
          R"({"nodes": [{"id": "s", "type": "source.range"}, {"id": "f", "type": "util.filter", "params": {"field": "title"}}], "edges": [["s", "f"]]})")
          .find("meta.NAME"),
      std::string::npos);
}

TEST(UtilDedup, DropsExactRepeats) {
  test::TempDir dir;
  test::write_file(dir / "in.jsonl",
                   "{\"id\": \"a\", \"text\": \"same\"}\n{\"id\": \"b\", \"text\": \"same\"}\n"
                   "{\"id\": \"c\", \"text\": \"other\"}\n{\"id\": \"d\", \"text\": \"same \"}\n");
  RunReport rep;
  auto lines = run_to_jsonl(dir,
                            R"({"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                                (dir / "in.jsonl") + R"("}},
         {"id": "d", "type": "util.dedup", "concurrency": "serial"},)",
                            "", R"(["src", "d"], ["d", "out"])", &rep);
  EXPECT_EQ(lines.size(), 3u);
  EXPECT_FALSE(has(lines, "\"id\":\"b\""));
  EXPECT_EQ(rep.filtered, 1u);
}

TEST(EmbedHash, NormalizedDeterministicAndLexical) {
  auto a = hash_embed("The river runs to the sea", 64);
  auto b = hash_embed("the RIVER runs to the sea!", 64);
  auto c = hash_embed("quantum chromodynamics lattice", 64);
  ASSERT_EQ(a.size(), 64u);
  EXPECT_EQ(a, b) << "case and punctuation do not matter";
  double norm = 0, dot_ac = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    norm += a[i] * a[i];
    dot_ac += a[i] * c[i];
  }
  EXPECT_NEAR(norm, 1.0, 1e-5);
  EXPECT_LT(dot_ac, 0.5);
  auto zero = hash_embed("  ... ", 8);
  for (float x : zero) EXPECT_EQ(x, 0.0f);
}

TEST(Chunkers, IdsAreDeterministicAndTagged) {
  test::TempDir dir;
  test::write_file(
      dir / "in.jsonl",
      "{\"id\": \"doc\", \"text\": \"One two three. Four five six. Seven eight nine.\"}\n");
  auto lines = run_to_jsonl(dir,
                            R"({"id": "src", "type": "source.jsonl", "params": {"path": ")" +
                                (dir / "in.jsonl") + R"("}},
         {"id": "c", "type": "chunk.sentence", "params": {"size": 17, "id_tag": "s"}},)",
                            "", R"(["src", "c"], ["c", "out"])");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(has(lines, R"({"id":"doc#s0","doc_id":"doc","seq":0,"text":"One two three. ")"));
  EXPECT_TRUE(has(lines, R"({"id":"doc#s2","doc_id":"doc","seq":2,"text":"Seven eight nine.")"));
}

}  // namespace
}  // namespace sluice
