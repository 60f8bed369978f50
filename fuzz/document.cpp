// Documents into sections (nodes/document.hpp): Markdown (md4c), HTML (gumbo) and PDF (poppler)
// from hostile bytes. Every section has text, and text and headings are valid UTF-8; a PDF may
// only fail with std::runtime_error. Input: one byte for the format, then the content.
#include <stdexcept>

#include "engine/text/text.hpp"
#include "fuzz/fuzz_target.hpp"
#include "nodes/document.hpp"

SLUICE_FUZZ_TARGET(document) {
  using namespace sluice;
  if (size < 1) return 0;
  const std::string_view in = fuzz::as_text(data + 1, size - 1);
  doc::Document d;
  switch (data[0] % 5) {
    case 0: d = doc::from_markdown(text::sanitize_utf8(in)); break;
    case 1: d = doc::from_html(text::sanitize_utf8(in), true); break;
    case 2: d = doc::from_html(text::sanitize_utf8(in), false); break;
    case 3: try { d = doc::from_pdf(in);
      } catch (const std::runtime_error&) {
        return 0;
      }
      break;
    default: {
      const doc::Format f = doc::detect(in.substr(0, 64), "", in);
      fuzz::check(doc::format_name(f)[0] != '\0', "detect names a format");
      return 0;
    }
  }
  fuzz::check(text::is_valid_utf8(d.title), "the title is valid UTF-8");
  for (const auto& s : d.sections) {
    fuzz::check(!s.text.empty(), "no section is empty");
    fuzz::check(text::is_valid_utf8(s.text), "section text is valid UTF-8");
    fuzz::check(text::is_valid_utf8(s.heading), "headings are valid UTF-8");
  }
  return 0;
}
