// Helpers for RapidJSON values on the record path (bodies, listing items, meta).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/params.hpp"
#include "engine/record.hpp"

namespace sluice {

// Compact JSON text of `v`.
inline std::string json_text(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

// False when `text` nests arrays/objects deeper than `max_depth`. RapidJSON's parser, Accept()
// and destructors all recurse per level, so an untrusted body is checked with this linear scan
// before it is parsed: a hostile "[[[[..." must be a malformed body, not a stack overflow.
inline bool json_depth_ok(std::string_view text, int max_depth = 256) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// Parses an untrusted body: false (and an empty document) when it is too deep or malformed.
inline bool parse_untrusted(rapidjson::Document& d, std::string_view text) {
  if (!json_depth_ok(text)) {
    d.SetNull();
    return false;
  }
  d.Parse(text.data(), text.size());
  return !d.HasParseError();
}

// A `skip`-style test: false for absent, null, false, 0 and ""; true for anything else.
inline bool json_truthy(const rapidjson::Value* v) {
  if (!v || v->IsNull()) return false;
  if (v->IsBool()) return v->GetBool();
  if (v->IsNumber()) return v->GetDouble() != 0;
  if (v->IsString()) return v->GetStringLength() > 0;
  return true;
}

// An RFC 6901 pointer from a param value ("" is the whole document); a bad one is a ParamError
// naming `param`.
inline rapidjson::Pointer json_pointer(const std::string& text, const std::string& param) {
  rapidjson::Pointer p(text.c_str(), text.size());
  if (!p.IsValid() || (!text.empty() && text[0] != '/'))
    throw ParamError(param, "\"" + text + "\" is not a JSON pointer (RFC 6901, e.g. /results/0/title)");
  return p;
}

// A node's `meta` param (meta name -> JSON pointer), checked and parsed once when the node is
// built; apply() copies each value found in a JSON value onto a record's meta as JSON.
class MetaPointers {
 public:
  MetaPointers() = default;
  explicit MetaPointers(const Params& p, const std::string& param = "meta") {
    const json::Value* m = p.get(param);
    if (!m || m->kind != json::Kind::object) return;
    for (const auto& mm : m->members) {
      if (mm.value.kind != json::Kind::string)
        throw ParamError(param, param + "." + mm.key + " must be a JSON pointer (a string)");
      _items.emplace_back(mm.key, json_pointer(mm.value.str, param));
    }
  }

  void apply(const rapidjson::Value& v, Meta& meta) const {
    for (const auto& [name, ptr] : _items)
      if (const rapidjson::Value* x = ptr.Get(v)) meta.set_json(name, json_text(*x));
  }

 private:
  std::vector<std::pair<std::string, rapidjson::Pointer>> _items;
};

}  // namespace sluice
