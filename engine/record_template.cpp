#include "engine/record_template.hpp"

#include <stdexcept>

namespace sluice {

RecordTemplate::RecordTemplate(std::string_view t) {
  std::string lit;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if ((c == '{' || c == '}') && i + 1 < t.size() && t[i + 1] == c) {
      lit += c;
      ++i;
      continue;
    }
    if (c == '}') throw std::invalid_argument("unmatched '}' (write }} for a literal brace)");
    if (c != '{') {
      lit += c;
      continue;
    }
    size_t close = t.find('}', i);
    if (close == std::string_view::npos)
      throw std::invalid_argument("unterminated '{' (write {{ for a literal brace)");
    std::string name(t.substr(i + 1, close - i - 1));
    if (!lit.empty()) _parts.push_back({Part::literal, std::move(lit), false});
    lit.clear();
    bool raw = !name.empty() && name[0] == '+';
    if (raw) name.erase(0, 1);
    if (name == "id") _parts.push_back({Part::id, "", raw});
    else if (name == "doc_id") _parts.push_back({Part::doc_id, "", raw});
    else if (name.rfind("meta.", 0) == 0 && name.size() > 5)
      _parts.push_back({Part::meta, name.substr(5), raw});
    else
      throw std::invalid_argument("unknown placeholder {" + name +
                                  "} (use {id}, {doc_id} or {meta.NAME}; {+id} for no encoding)");
    i = close;
  }
  if (!lit.empty()) _parts.push_back({Part::literal, std::move(lit), false});
}

std::string RecordTemplate::expand(const Record& r, bool encode) const {
  std::string out;
  for (const auto& p : _parts) {
    const bool enc = encode && !p.raw;
    switch (p.kind) {
      case Part::literal: out += p.text; break;
      case Part::id: out += enc ? url_encode(r.id) : r.id; break;
      case Part::doc_id: out += enc ? url_encode(r.doc_id) : r.doc_id; break;
      case Part::meta: {
        std::string v = r.meta.get_text(p.text);
        out += enc ? url_encode(v) : v;
        break;
      }
    }
  }
  return out;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace sluice
