// Templates filled from a record: "{id}", "{doc_id}", "{meta.NAME}" ("{{" and "}}" are literal
// braces). Used for URLs (values percent-encoded), headers and bodies. "{+id}" inserts a value
// as is even in a URL (RFC 6570 reserved expansion), e.g. when the id is a whole URL.
// Pure; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/record.hpp"

namespace sluice {

class RecordTemplate {
 public:
  // Throws std::invalid_argument naming the bad placeholder (factories turn it into a ParamError).
  explicit RecordTemplate(std::string_view text);
  std::string expand(const Record& r, bool url_encode) const;
  bool empty() const { return _parts.empty(); }

 private:
  struct Part {
    enum Kind { literal, id, doc_id, meta } kind;
    std::string text;  // literal text, or the meta name
    bool raw = false;  // {+name}: never encoded
  };
  std::vector<Part> _parts;
};

// RFC 3986 percent-encoding of everything but unreserved characters.
std::string url_encode(std::string_view s);

}  // namespace sluice
