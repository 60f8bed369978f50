// Documents with their structure: Markdown, HTML and PDF into sections (nodes/document.hpp), the
// extract.* nodes, and a folder of mixed files through graphs/local-files.json.
#include <gtest/gtest.h>

#include <rapidjson/document.h>

#include "nodes/builtin_nodes.hpp"
#include "nodes/document.hpp"
#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using doc::Format;

std::string headings(const doc::Document& d) {
  std::string out;
  for (const auto& s : d.sections) out += "[" + s.heading + "]";
  return out;
}

TEST(Markdown, HeadingsAreSectionBoundariesWithTheirPath) {
  doc::Document d = doc::from_markdown(
      "Intro text.\n\n# Tool\n\nWhat it does.\n\n## Install\n\n### From source\n\n"
      "Run `make`.\n\n## Use\n\nSee [the manual](https://example.org/m) &hellip; now.\n");
  EXPECT_EQ(headings(d), "[][Tool][Tool > Install > From source][Tool > Use]")
      << "a section with only its heading (Install) is left out";
  ASSERT_EQ(d.sections.size(), 4u);
  EXPECT_EQ(d.sections[0].text, "Intro text.");
  EXPECT_EQ(d.sections[1].text, "Tool\n\nWhat it does.");
  EXPECT_EQ(d.sections[2].text, "From source\n\nRun make.");
  EXPECT_EQ(d.sections[3].text, "Use\n\nSee the manual \u2026 now.") << "links as their text";
  EXPECT_EQ(d.title, "Tool");
}

TEST(Markdown, CodeFencesStayWholeAndTablesAndListsKeepTheirShape) {
  doc::Document d = doc::from_markdown(
      "# Build\n\n```cpp\nint main() {\n\n  return 0;  // a < b && c\n}\n```\n\n"
      "| key | value |\n|-----|-------|\n| a   | 1     |\n\n- one\n- two\n\n3. three\n4. four\n");
  ASSERT_EQ(d.sections.size(), 1u);
  EXPECT_EQ(d.sections[0].text,
            "Build\n\n```cpp\nint main() {\n\n  return 0;  // a < b && c\n}\n```\n\n"
            "key | value\na | 1\n\n- one\n- two\n\n3. three\n4. four");
}

TEST(Markdown, FrontMatterGoesToMeta) {
  doc::Document d = doc::from_markdown("---\ntitle: \"A Guide\"\ntags:\n  - rag\n  - "
                                       "search\ndraft: false\n---\n# Heading\n\nBody.\n");
  ASSERT_EQ(d.front_matter.size(), 3u);
  EXPECT_EQ(d.front_matter[0], (std::pair<std::string, std::string>{"title", "A Guide"}));
  EXPECT_EQ(d.front_matter[1], (std::pair<std::string, std::string>{"tags", "rag, search"}));
  EXPECT_EQ(d.title, "A Guide");
  ASSERT_EQ(d.sections.size(), 1u);
  EXPECT_EQ(d.sections[0].text, "Heading\n\nBody.");
  // A leading thematic break with no closing line is not front matter.
  doc::Document hr = doc::from_markdown("---\nnot: front matter\n\ntext\n");
  EXPECT_TRUE(hr.front_matter.empty());
}

TEST(Html, TheMainTextWithoutChromeAndEveryNamedEntity) {
  doc::Document d = doc::from_html(
      "<!doctype html><html><head><title>Page &amp; Title</title><style>p{}</style>"
      "<script>var x = '<p>';</script></head><body>"
      "<header><a href=/>Home</a> <a href=/about>About</a></header>"
      "<nav><ul><li>Menu item</li></ul></nav>"
      "<main><h1>Article</h1><p>First&nbsp;para &frac34; &CounterClockwiseContourIntegral; "
      "&hellip;</p><div role=navigation>Prev | Next</div>"
      "<h2>Part two</h2><p>Second <b>bold</b> para.<br>New line.</p>"
      "<pre><code class=\"language-py\">if a &lt; b:\n    pass\n</code></pre></main>"
      "<footer>Copyright</footer><aside>Ads</aside></body></html>");
  EXPECT_EQ(d.title, "Page & Title");
  EXPECT_EQ(headings(d), "[Article][Article > Part two]");
  ASSERT_EQ(d.sections.size(), 2u);
  EXPECT_EQ(d.sections[0].text, "Article\n\nFirst\u00a0para \u00be \u2233 \u2026");
  EXPECT_EQ(d.sections[1].text,
            "Part two\n\nSecond bold para.\nNew line.\n\n```py\nif a < b:\n    pass\n```");
  // With no <main> and several articles, the body without its chrome.
  doc::Document body = doc::from_html(
      "<body><nav>Menu</nav><article><p>One</p></article><article><p>Two</p></article>"
      "<footer>Foot</footer></body>");
  ASSERT_EQ(body.sections.size(), 1u);
  EXPECT_EQ(body.sections[0].text, "One\n\nTwo");
}

TEST(Html, HostileNestingAndBrokenMarkupNeitherCrashNorRecurse) {
  std::string deep;
  for (int i = 0; i < 200000; ++i) deep += "<div>";
  deep += "deep text";
  doc::Document d = doc::from_html(deep);
  ASSERT_EQ(d.sections.size(), 1u);
  EXPECT_EQ(d.sections[0].text, "deep text");
  std::string lists;
  for (int i = 0; i < 50000; ++i) lists += "<ol><li><table><tr><td>";
  EXPECT_NO_THROW(doc::from_html(lists));
  EXPECT_NO_THROW(doc::from_html(std::string("<p>\xff\xfe bad bytes</p>")));
  EXPECT_NO_THROW(doc::from_markdown(std::string(100000, '>') + " quote"));
  EXPECT_NO_THROW(doc::from_markdown(std::string(50000, '[') + std::string(50000, ']')));
}

TEST(Pdf, TextPerPageWithPageNumbersAndTheTitle) {
  std::string pdf = test::make_pdf(
      {{"Chapter one begins here.", "A second line."}, {}, {"The third page (with parentheses)."}},
      "A Test Document");
  doc::Document d = doc::from_pdf(pdf);
  EXPECT_EQ(d.title, "A Test Document");
  ASSERT_EQ(d.sections.size(), 2u) << "the empty second page has no section";
  EXPECT_EQ(d.sections[0].page, 1);
  EXPECT_EQ(d.sections[0].text, "Chapter one begins here.\nA second line.");
  EXPECT_EQ(d.sections[1].page, 3);
  EXPECT_EQ(d.sections[1].text, "The third page (with parentheses).");
  // Damaged and foreign bytes are errors with a reason, never a crash.
  EXPECT_THROW(doc::from_pdf("not a pdf at all"), std::runtime_error);
  EXPECT_THROW(doc::from_pdf(pdf.substr(0, 40)), std::runtime_error);
  std::string garbled = pdf;
  for (size_t i = 200; i < garbled.size(); i += 7) garbled[i] = '\x01';
  try {
    doc::from_pdf(garbled);
  } catch (const std::runtime_error&) {
  }
}

TEST(Detect, ContentFirstThenTheNameThenTheType) {
  EXPECT_EQ(doc::detect("a.txt", "", "%PDF-1.7\n..."), Format::pdf);
  EXPECT_EQ(doc::detect("page", "", "\xEF\xBB\xBF  <!DOCTYPE html><p>x"), Format::html);
  EXPECT_EQ(doc::detect("x.md", "", std::string("PK\x03\x04\0\0", 6)), Format::binary);
  EXPECT_EQ(doc::detect("x.txt", "", "caf\xe9 latin-1"), Format::binary);
  EXPECT_EQ(doc::detect("docs/README.MD", "", "# Title"), Format::markdown);
  EXPECT_EQ(doc::detect("https://h/p.html?x=1#top", "", "<p>hi"), Format::html);
  EXPECT_EQ(doc::detect("id-42", "text/markdown; charset=utf-8", "# x"), Format::markdown);
  EXPECT_EQ(doc::detect("notes", "", "plain words"), Format::text);
  EXPECT_EQ(doc::detect("v1.2/notes", "", "plain words"), Format::text);
  // A multi-byte character cut at the 8 KiB mark is still text.
  std::string text = std::string(8191, 'a') + "\xc3\xa9 more";
  EXPECT_EQ(doc::detect("t.txt", "", text), Format::text);
}

// The default graph, its dir var pointed at a folder of mixed documents: each indexed by its own
// format, with headings and pages in meta.
TEST(ExtractAuto, LocalFilesIndexesAFolderOfMixedDocuments) {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "docs/sub");
  test::write_file(dir / "docs/guide.md",
                   "---\nauthor: Ada\n---\n# Guide\n\nIntro.\n\n## Install\n\nRun the installer "
                   "with care.\n\n```sh\n./configure && make\n```\n");
  test::write_file(dir / "docs/sub/page.html",
                   "<html><head><title>Web Page</title></head><body><nav>Menu</nav><main>"
                   "<h1>News</h1><p>Donkeys can talk &mdash; sometimes.</p></main></body></html>");
  test::write_file(
      dir / "docs/paper.pdf",
      test::make_pdf({{"Abstract of the paper."}, {"Results on page two."}}, "The Paper"));
  test::write_file(dir / "docs/notes.txt", "Plain notes about balance.\n");
  GraphSpec spec = load_graph(test::source_dir() + "/graphs/local-files.json",
                              {{"dir", dir / "docs"}, {"db", dir / "i.db"}}, builtin_registry());
  spec.settings.dead_letter = dir / "dlq.jsonl";
  RunReport rep = run_graph(spec, {});
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs, 4u);
  EXPECT_EQ(rep.docs_indexed, 4u) << test::read_file(dir / "dlq.jsonl");
  const std::string db = dir / "i.db";
  auto count = [&](const std::string& where) {
    return test::sqlite_count(db, ("SELECT count(*) FROM chunks WHERE " + where).c_str());
  };
  EXPECT_EQ(count("doc_id = 'guide.md' AND json_extract(meta, '$.heading') = 'Guide > Install' "
                  "AND text LIKE 'Install%./configure && make%' AND "
                  "json_extract(meta, '$.author') = 'Ada' AND json_extract(meta, '$.format') = "
                  "'markdown'"),
            1);
  EXPECT_EQ(count("doc_id = 'sub/page.html' AND text = 'News' || char(10) || char(10) || "
                  "'Donkeys can talk ' || char(8212) || ' sometimes.' AND "
                  "json_extract(meta, '$.title') = 'Web Page'"),
            1)
      << "navigation dropped, the entity decoded";
  EXPECT_EQ(count("doc_id = 'paper.pdf' AND json_extract(meta, '$.page') = 2 AND "
                  "text = 'Results on page two.' AND json_extract(meta, '$.title') = 'The Paper'"),
            1);
  EXPECT_EQ(count("doc_id = 'notes.txt' AND text = 'Plain notes about balance.'"), 1);
  EXPECT_EQ(count("text LIKE '%PDF-%' OR text LIKE '%<%'"), 0);
  // Search says where in its document a hit is.
  auto pdf = test::run_sluice("search " + db + " \"results on page two\" --k 1");
  EXPECT_NE(pdf.out.find("paper.pdf#p2#0  (page 2)"), std::string::npos) << pdf.out;
  auto md = test::run_sluice("search " + db + " installer --k 1");
  EXPECT_NE(md.out.find("guide.md#s1#0  (Guide > Install)"), std::string::npos) << md.out;
}

// Binary content is never indexed: without an extractor it dead-letters at the chunker with what
// to do, and extract.auto dead-letters what it cannot read, saying what it is.
TEST(ExtractAuto, BinaryContentIsDeadLetteredNeverIndexed) {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "in");
  test::write_file(dir / "in/paper.pdf", test::make_pdf({{"Some text."}}));
  test::write_file(dir / "in/blob.docx", std::string("PK\x03\x04\0\0binary", 12));
  test::write_file(dir / "in/ok.txt", "fine");
  auto graph = [&](bool extractor) {
    return R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") +
           R"(", "max_dead_letter_ratio": 1},
      "nodes": [{"id": "files", "type": "source.files", "params": {"dir": ")" +
           (dir / "in") + R"("}},)" +
           (extractor ? R"({"id": "extract", "type": "extract.auto"},)" : "") +
           R"({"id": "chunk", "type": "chunk.recursive"},
        {"id": "index", "type": "index.jsonl", "params": {"path": ")" +
           (dir / "out.jsonl") + R"("}}],
      "edges": [)" +
           (extractor ? R"(["files", "extract"], ["extract", "chunk"])" : R"(["files", "chunk"])") +
           R"(, ["chunk", "index"]]})";
  };
  RunReport bare = test::run_json(graph(false));
  EXPECT_EQ(bare.docs_indexed, 1u);
  EXPECT_EQ(bare.docs_dead_lettered, 2u);
  std::string dlq = test::read_file(dir / "dlq.jsonl");
  EXPECT_NE(dlq.find("binary content (application/pdf) and no text: put an extractor "
                     "(extract.auto, extract.json) before node \\\"chunk\\\""),
            std::string::npos)
      << dlq;
  EXPECT_NE(dlq.find("binary content (application/octet-stream)"), std::string::npos) << dlq;

  RunReport with = test::run_json(graph(true));
  EXPECT_EQ(with.docs_indexed, 2u);
  EXPECT_EQ(with.docs_dead_lettered, 1u);
  dlq = test::read_file(dir / "dlq.jsonl");
  EXPECT_NE(dlq.find("binary content, no extractor for .docx files (application/octet-stream)"),
            std::string::npos)
      << dlq;
  for (const auto& line : test::read_lines(dir / "out.jsonl"))
    EXPECT_EQ(line.find("PK"), std::string::npos) << line;
}

}  // namespace
}  // namespace sluice
