#include "nodes/extract_document.hpp"

#include <stdexcept>

#include "engine/text/text.hpp"
#include "nodes/document.hpp"

namespace sluice {

namespace {

// Which parser a node runs: one format, or each record's own (extract.auto).
enum class Mode { detect, markdown, html, pdf };

// The name a record's content goes by, for its extension: its path, else its id.
std::string name_of(const Record& r) {
  std::string path = r.meta.get_text("path");
  return path.empty() ? r.id : path;
}

class ExtractDocument final : public Node {
 public:
  ExtractDocument(const NodeInit& init, Mode mode)
      : _mode(mode), _sections(init.params.boolean("sections")),
        _main_only(!init.params.has("main_only") || init.params.boolean("main_only")),
        _keep_body(init.params.boolean("keep_body")) {}

  void process(RecordPtr in, Emitter& out) override {
    const std::string_view content = !in->body.empty() ? std::string_view(in->body) : in->text;
    doc::Format format = doc::Format::text;
    switch (_mode) {
      case Mode::markdown: format = doc::Format::markdown; break;
      case Mode::html: format = doc::Format::html; break;
      case Mode::pdf: format = doc::Format::pdf; break;
      case Mode::detect:
        format = doc::detect(name_of(*in), in->meta.get_text("content_type"), content);
        break;
    }
    // Markdown and HTML parsers get valid UTF-8: the content when it is, else a copy with
    // U+FFFD for the bad bytes.
    std::string fixed;
    auto valid_text = [&](std::string_view c) -> std::string_view {
      if (text::is_valid_utf8(c)) return c;
      fixed = text::sanitize_utf8(std::string(c));
      return fixed;
    };
    doc::Document d;
    try {
      switch (format) {
        case doc::Format::text: {
          // Plain text needs nothing: it goes on as it came.
          RecordPtr r = own(in);
          if (r->text.empty()) r->text = text::sanitize_utf8(std::string(content));
          if (!_keep_body) r->body.clear();
          out.emit(std::move(r));
          return;
        }
        case doc::Format::binary: {
          const std::string type = in->meta.get_text("content_type");
          out.drop(Outcome::dead_lettered, "binary content, no extractor for " +
                                               describe(name_of(*in)) +
                                               (type.empty() ? "" : " (" + type + ")") +
                                               ": extract.auto reads Markdown, HTML, PDF and text");
          return;
        }
        case doc::Format::markdown: d = doc::from_markdown(valid_text(content)); break;
        case doc::Format::html: d = doc::from_html(valid_text(content), _main_only); break;
        case doc::Format::pdf: d = doc::from_pdf(content); break;
      }
    } catch (const std::exception& e) {
      out.drop(Outcome::dead_lettered, e.what());
      return;
    }
    if (d.sections.empty()) {
      if (format == doc::Format::pdf)
        out.drop(Outcome::dead_lettered,
                 "PDF has no text to extract (scanned pages need OCR before sluice)");
      else out.drop(Outcome::filtered, "no text in the document");
      return;
    }
    emit_sections(in, d, format, out);
  }

 private:
  // ".docx files" / "this content" for the dead letter's reason.
  static std::string describe(const std::string& name) {
    const std::string ext = doc::extension_of(name);
    return ext.empty() || ext.size() > 12 ? "this content" : ext + " files";
  }

  void emit_sections(const RecordPtr& in, doc::Document& d, doc::Format format, Emitter& out) {
    auto add_meta = [&](Record& r) {
      r.meta.set_string("format", doc::format_name(format));
      if (!d.title.empty() && r.meta.get_json("title") == nullptr)
        r.meta.set_string("title", d.title);
      for (const auto& [key, value] : d.front_matter)
        if (r.meta.get_json(key) == nullptr) r.meta.set_string(key, value);
      if (!_keep_body) r.body.clear();
    };
    if (!_sections || d.sections.size() == 1) {
      RecordPtr r = own(in);
      if (d.sections.size() == 1) {
        if (!d.sections[0].heading.empty()) r->meta.set_string("heading", d.sections[0].heading);
        if (d.sections[0].page > 0) r->meta.set_int("page", d.sections[0].page);
        r->text = std::move(d.sections[0].text);
      } else {
        r->text.clear();
        for (auto& s : d.sections) {
          if (!r->text.empty()) r->text += "\n\n";
          r->text += s.text;
        }
      }
      add_meta(*r);
      out.emit(std::move(r));
      return;
    }
    out.outputs().reserve(d.sections.size());
    for (size_t n = 0; n < d.sections.size(); ++n) {
      doc::Section& s = d.sections[n];
      RecordPtr r = in->derive(
          in->id + (s.page > 0 ? "#p" + std::to_string(s.page) : "#s" + std::to_string(n)));
      r->text = std::move(s.text);
      if (!s.heading.empty()) r->meta.set_string("heading", s.heading);
      if (s.page > 0) r->meta.set_int("page", s.page);
      add_meta(*r);
      out.emit(std::move(r));
    }
  }

  Mode _mode;
  bool _sections, _main_only, _keep_body;
};

std::vector<ParamSpec> common_params() {
  return {
      param("sections", ParamType::boolean, "true",
            "one record per section (per page for a PDF), its heading path in meta.heading "
            "(meta.page); false: one record per document"),
      param("keep_body", ParamType::boolean, "false",
            "keep the raw content on the record (memory)"),
  };
}

ParamSpec main_only_param() {
  return param("main_only", ParamType::boolean, "true",
               "HTML: only the page's main content (<main>, role=main or its one <article>), "
               "without navigation, header, footer, aside, script and style");
}

NodeTypeInfo info_for(const char* type, Mode mode, std::string description, bool html) {
  NodeTypeInfo info;
  info.type = type;
  info.role = NodeRole::transform;
  info.description = std::move(description);
  info.params = common_params();
  if (html) info.params.push_back(main_only_param());
  info.make_node = [mode](const NodeInit& init) {
    return std::make_unique<ExtractDocument>(init, mode);
  };
  return info;
}

const char* kSections =
    " Reads the record's body (raw content, as source.files leaves a PDF or an HTML page and "
    "fetch.http a response), else its text. Sections end at headings: each record's text "
    "starts with its heading, meta.heading is the path (\"Install > From source\"), "
    "meta.title the document's title; code blocks stay whole as ``` fences, list items are "
    "\"- \" lines, table rows \"a | b\" lines, links their text.";

}  // namespace

NodeTypeInfo extract_auto_info() {
  return info_for("extract.auto", Mode::detect,
                  std::string("Each document by its own format: PDF (by its %PDF- header), HTML "
                              "(a doctype or <html>, or .html/.htm), Markdown (.md/.markdown), "
                              "text as it is; binary content (NUL bytes or invalid UTF-8) is "
                              "dead-lettered, never indexed.") +
                      kSections,
                  true);
}

NodeTypeInfo extract_markdown_info() {
  return info_for("extract.markdown", Mode::markdown,
                  std::string("Markdown (CommonMark and GitHub's tables, task lists, "
                              "strikethrough, autolinks; md4c) into text by sections. A YAML "
                              "front matter block's key: value lines go to meta.") +
                      kSections,
                  false);
}

NodeTypeInfo extract_html_info() {
  return info_for("extract.html", Mode::html,
                  std::string("HTML (an HTML5 parser, gumbo: every named entity) into the "
                              "page's text by sections, without its navigation.") +
                      kSections,
                  true);
}

NodeTypeInfo extract_pdf_info() {
  return info_for("extract.pdf", Mode::pdf,
                  "PDF text (poppler) in reading order, one record per page with meta.page "
                  "(sections: false joins the pages), meta.title from the PDF's info. An "
                  "encrypted or damaged PDF, or one without a text layer, is dead-lettered.",
                  false);
}

}  // namespace sluice
