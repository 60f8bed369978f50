#include "nodes/source_jsonl.hpp"

#include "engine/json/value.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/text/text.hpp"
#include "nodes/source_lines.hpp"

namespace sluice {

RecordPtr record_from_json(std::string_view object_json, const std::string& fallback_id,
                           const std::string& id_field, const std::string& text_field,
                           const TextTemplate* text_template) {
  auto r = std::make_shared<Record>();
  rapidjson::Document d;
  const bool parsed = parse_untrusted(d, object_json);
  if (!parsed || !d.IsObject()) {
    r->id = fallback_id;
    r->error = !parsed ? "malformed JSON" : "not a JSON object";
    return r;
  }
  r->id = fallback_id;
  for (auto it = d.MemberBegin(); it != d.MemberEnd(); ++it) {
    std::string_view key(it->name.GetString(), it->name.GetStringLength());
    const auto& v = it->value;
    if (key == id_field && (v.IsString() || v.IsNumber())) {
      if (v.IsString()) {
        r->id.assign(v.GetString(), v.GetStringLength());
      } else {
        r->id = json_text(v);
      }
      continue;
    }
    if (key == text_field && !text_template) {
      if (v.IsString()) r->text.assign(v.GetString(), v.GetStringLength());
      else if (!v.IsNull()) r->error = "field \"" + text_field + "\" is not a string";
      continue;
    }
    r->meta.set_json(key, json_text(v));
  }
  if (r->id.empty()) r->id = fallback_id;
  if (text_template) r->text = text_template->render(d, r->meta);
  if (!text::is_valid_utf8(r->text)) r->text = text::sanitize_utf8(r->text);
  r->doc_id = r->id;
  return r;
}

namespace {

class JsonlSource final : public Source {
 public:
  explicit JsonlSource(const NodeInit& init)
      : _path(init.params.str("path")), _id_field(init.params.str("id_field")),
        _text_field(init.params.str("text_field")), _template(text_template_param(init.params)),
        _max_line(max_line_bytes(init.params)) {}

  void open() override { _in.open(_path, _max_line, stopping_check()); }

  RecordPtr next() override {
    std::string line;
    for (;;) {
      auto status = _in.next(line);
      if (status == LineReader::Status::end) return nullptr;
      if (status == LineReader::Status::too_long) return too_long_line(_in, _path);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      return record_from_json(line, "line:" + std::to_string(_in.line_number()), _id_field,
                              _text_field, _template ? &*_template : nullptr);
    }
  }

 private:
  std::string _path, _id_field, _text_field;
  std::optional<TextTemplate> _template;
  size_t _max_line;
  LineReader _in;
};

}  // namespace

NodeTypeInfo source_jsonl_info() {
  NodeTypeInfo info;
  info.type = "source.jsonl";
  info.role = NodeRole::source;
  info.description =
      "Documents from a JSON Lines file, one object per line; other fields become meta.";
  info.params = {
      required_param("path", ParamType::string, "JSON Lines file to read"),
      param("id_field", ParamType::string, "\"id\"",
            "field holding the document id (default: line:N)"),
      param("text_field", ParamType::string, "\"text\"", "field holding the document text"),
      param("text_template", ParamType::string, "null", text_template_doc()),
      max_line_param(),
  };
  info.make_source = [](const NodeInit& init) { return std::make_unique<JsonlSource>(init); };
  return info;
}

}  // namespace sluice
