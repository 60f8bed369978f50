// HTML to text and entity decoding: valid UTF-8 in, valid UTF-8 out.
#include "engine/text/text.hpp"
#include "fuzz/fuzz_target.hpp"

SLUICE_FUZZ_TARGET(html) {
  using namespace sluice;
  std::string in = text::sanitize_utf8(std::string(fuzz::as_text(data, size)));
  std::string t = text::html_to_text(in);
  fuzz::check(text::is_valid_utf8(t), "html_to_text keeps UTF-8 valid");
  std::string e = text::decode_entities(in);
  fuzz::check(text::is_valid_utf8(e), "decode_entities keeps UTF-8 valid");
  return 0;
}
