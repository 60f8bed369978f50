// Record templates: any template text is a template or std::invalid_argument; expanding never
// fails. Input: the template on the first line, then the id and meta values.
#include "engine/record_template.hpp"
#include "engine/record.hpp"
#include "fuzz/fuzz_target.hpp"

SLUICE_FUZZ_TARGET(record_template) {
  using namespace sluice;
  std::string_view in = fuzz::as_text(data, size);
  size_t nl = in.find('\n');
  std::string_view tmpl = in.substr(0, nl);
  std::string_view rest = nl == std::string_view::npos ? "" : in.substr(nl + 1);
  Record r;
  r.id = std::string(rest);
  r.doc_id = std::string(rest.substr(0, rest.size() / 2));
  r.meta.set_string("a", rest);
  r.meta.set_json("n", "12");
  try {
    RecordTemplate t(tmpl);
    std::string plain = t.expand(r, false);
    std::string encoded = t.expand(r, true);
    fuzz::check(encoded.size() >= plain.size(), "encoding only lengthens");
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
