// extract.auto, extract.markdown, extract.html, extract.pdf: a document's raw content (the
// record's body, else its text) into text by sections, each with its heading path or page in
// meta (nodes/document.hpp does the parsing).
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo extract_auto_info();
NodeTypeInfo extract_markdown_info();
NodeTypeInfo extract_html_info();
NodeTypeInfo extract_pdf_info();
}  // namespace sluice
