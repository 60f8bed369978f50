// Documents with their structure: Markdown (md4c), HTML (gumbo) and PDF (poppler-cpp) into
// sections, each with its heading path (or page), for the extract.* nodes. Everything read here
// is untrusted: no recursion over the input's nesting, output always valid UTF-8, failures as
// std::runtime_error with a reason fit for a dead letter.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::doc {

struct Section {
  std::string heading;  // heading path, "Install > From source"; "" before the first heading
  std::string text;     // the section's text, its own heading as the first line
  int page = 0;         // PDF: 1-based page number; 0 otherwise
};

struct Document {
  std::string title;  // <title>, front matter `title`, the first h1, or the PDF's title
  std::vector<std::pair<std::string, std::string>> front_matter;  // Markdown: key, value
  std::vector<Section> sections;                                  // in document order, none empty
};

// Code blocks become fenced blocks (```lang ... ```), kept whole in one section; list items
// "- " / "1. "; table rows "a | b | c"; links and inline markup their text. A section that would
// hold only its heading is left out (its heading stays in the path of those below it).
// `main_only`: a web page's main content (<main>, role=main, or its one <article>) without
// navigation, header, footer, aside, forms, script and style.
Document from_html(std::string_view html, bool main_only = true);
// CommonMark with GitHub's tables, task lists, strikethrough and autolinks; a leading YAML front
// matter block (--- ... ---) of `key: value` lines (lists joined with ", ") goes to front_matter.
Document from_markdown(std::string_view markdown);
// One section per page with text; throws for bytes poppler cannot open or an encrypted PDF.
Document from_pdf(std::string_view bytes);

enum class Format { text, markdown, html, pdf, binary };
const char* format_name(Format f);
// What `content` is: "%PDF-" is a PDF and an HTML doctype or <html> is HTML whatever the name
// says; NUL bytes or invalid UTF-8 in the first 8 KiB is binary; else the extension of `name`
// (a path or URL: .md .markdown .mdx, .html .htm .xhtml) or `content_type` (text/markdown,
// text/html, application/pdf) decides, and anything else is text.
Format detect(std::string_view name, std::string_view content_type, std::string_view content);
// The extension of a path or URL, lower-cased, its query and fragment left out: ".md" ("" when
// the last part of the path has no dot).
std::string extension_of(std::string_view name);

}  // namespace sluice::doc
