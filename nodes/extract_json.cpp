#include "nodes/extract_json.hpp"

#include "engine/json/value.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/text/text.hpp"

namespace sluice {

namespace {

rapidjson::Pointer make_pointer(const std::string& text, const char* param) {
  return json_pointer(text, param);
}

class ExtractJson final : public Node {
 public:
  explicit ExtractJson(const NodeInit& init)
      : _flatten(init.params.boolean("flatten")), _strip(init.params.boolean("strip_html")),
        _keep_body(init.params.boolean("keep_body")),
        _missing_filters(init.params.str("missing") == "filter") {
    for (const auto& t : init.params.strings("text")) {
      _text.push_back(make_pointer(t, "text"));
      _text_names.push_back(t);
    }
    if (_text.empty()) throw ParamError("text", "give at least one JSON pointer");
    _meta = MetaPointers(init.params);
  }

  void process(RecordPtr in, Emitter& out) override {
    rapidjson::Document d;
    if (!parse_untrusted(d, in->body))
      return out.drop(Outcome::dead_lettered, "malformed JSON body");
    RecordPtr r = own(in);
    std::string text;
    bool found = false;
    for (size_t i = 0; i < _text.size(); ++i) {
      const rapidjson::Value* v = _text[i].Get(d);
      if (!v || v->IsNull()) continue;
      found = true;
      if (!text.empty()) text += '\n';
      append(*v, text);
    }
    if (!found) {
      std::string names;
      for (const auto& n : _text_names) names += (names.empty() ? "" : ", ") + n;
      return out.drop(_missing_filters ? Outcome::filtered : Outcome::dead_lettered,
                      "no value at " + names);
    }
    r->text = std::move(text);
    _meta.apply(d, r->meta);
    if (!_keep_body) std::string().swap(r->body);
    out.emit(std::move(r));
  }

 private:
  // Strings as text; arrays (Sefaria's jagged chapters/verses) as one line per non-empty leaf.
  void append(const rapidjson::Value& v, std::string& out) const {
    if (v.IsString()) {
      std::string_view s(v.GetString(), v.GetStringLength());
      if (s.empty()) return;
      std::string t = _strip ? text::html_to_text(s) : std::string(s);
      if (t.empty()) return;
      if (!out.empty() && out.back() != '\n') out += '\n';
      out += t;
    } else if (v.IsArray() && _flatten) {
      for (const auto& item : v.GetArray()) append(item, out);
    } else if (v.IsNumber() || v.IsBool()) {
      if (!out.empty() && out.back() != '\n') out += '\n';
      out += json_text(v);
    } else if (!v.IsNull()) {
      out += json_text(v);
    }
  }

  bool _flatten, _strip, _keep_body, _missing_filters;
  std::vector<rapidjson::Pointer> _text;
  std::vector<std::string> _text_names;
  MetaPointers _meta;
};

}  // namespace

NodeTypeInfo extract_json_info() {
  NodeTypeInfo info;
  info.type = "extract.json";
  info.role = NodeRole::transform;
  info.description = "Text and meta from a record's JSON body by JSON pointers. Nested arrays "
                     "flatten to one line per "
                     "non-empty string; HTML is stripped (footnotes dropped with their content, "
                     "entities decoded). A "
                     "malformed body or a missing text pointer dead-letters the record.";
  info.params = {
      required_param("text", ParamType::string_or_list,
                     "JSON pointer(s) to the text; several are joined by lines"),
      param("flatten", ParamType::boolean, "true",
            "nested arrays become lines (empty entries skipped)"),
      param("strip_html", ParamType::boolean, "true", "remove tags and footnotes, decode entities"),
      param("meta", ParamType::object, "{}", "meta name -> JSON pointer"),
      param("keep_body", ParamType::boolean, "false", "keep the raw body on the record (memory)"),
      with_choices(param("missing", ParamType::string, "\"dead_letter\"",
                         "no text at the pointers: dead_letter or filter"),
                   {"dead_letter", "filter"}),
  };
  info.make_node = [](const NodeInit& init) { return std::make_unique<ExtractJson>(init); };
  return info;
}

}  // namespace sluice
