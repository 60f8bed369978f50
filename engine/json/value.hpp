// Helpers for RapidJSON values on the record path (bodies, listing items, meta).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/json/scan.hpp"
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

// Builds a document from SAX events, refusing to nest deeper than kMaxUntrustedDepth. RapidJSON's
// parser, Accept() and the walks over a document all recurse per level, so a hostile "[[[[..."
// must be a malformed body, not a stack overflow. The reader asks for each array or object before
// it descends into it, so the refusal bounds its recursion too, with no separate pass over the
// text (that pass cost a third of the time to parse a Sefaria section).
class DepthLimitedBuilder {
 public:
  explicit DepthLimitedBuilder(rapidjson::Document& d) : _d(d) {}
  bool Null() { return _d.Null(); }
  bool Bool(bool b) { return _d.Bool(b); }
  bool Int(int i) { return _d.Int(i); }
  bool Uint(unsigned u) { return _d.Uint(u); }
  bool Int64(int64_t i) { return _d.Int64(i); }
  bool Uint64(uint64_t u) { return _d.Uint64(u); }
  bool Double(double x) { return _d.Double(x); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    return _d.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) { return _d.String(s, n, copy); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return _d.Key(s, n, copy); }
  bool StartObject() { return ++_depth <= kMaxUntrustedDepth && _d.StartObject(); }
  bool EndObject(rapidjson::SizeType n) { return --_depth, _d.EndObject(n); }
  bool StartArray() { return ++_depth <= kMaxUntrustedDepth && _d.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return --_depth, _d.EndArray(n); }

 private:
  rapidjson::Document& _d;
  int _depth = 0;
};

template <typename Stream>
bool parse_depth_limited(rapidjson::Document& d, Stream& in) {
  bool ok = false;
  auto parse = [&](rapidjson::Document& doc) {
    DepthLimitedBuilder builder(doc);
    rapidjson::Reader reader;
    ok = !reader.Parse(in, builder).IsError();
    return ok;
  };
  d.Populate(parse);
  if (!ok) d.SetNull();
  return ok;
}

// A UTF-8 byte order mark is skipped, whole: JsonPointerScan does the same. (RapidJSON's
// EncodedInputStream skips each of its three bytes alone, so "\xEF\"\"" read as "".)
inline bool has_bom(std::string_view text) { return text.starts_with("\xEF\xBB\xBF"); }

// Parses an untrusted body: false (and an empty document) when it is too deep or malformed.
inline bool parse_untrusted(rapidjson::Document& d, std::string_view text) {
  if (has_bom(text)) text.remove_prefix(3);
  rapidjson::MemoryStream in(text.data(), text.size());
  return parse_depth_limited(d, in);
}

// The same for a whole string: its terminating NUL lets the reader use its SIMD scans (where
// built with them, see CMakeLists.txt), a third faster on a Sefaria section. A NUL inside the
// text ends it for both readers alike.
inline bool parse_untrusted(rapidjson::Document& d, const std::string& text) {
  rapidjson::StringStream in(text.c_str() + (has_bom(text) ? 3 : 0));
  return parse_depth_limited(d, in);
}
inline bool parse_untrusted(rapidjson::Document& d, const char* text) {
  return parse_untrusted(d, std::string_view(text));
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
    throw ParamError(param,
                     "\"" + text + "\" is not a JSON pointer (RFC 6901, e.g. /results/0/title)");
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
