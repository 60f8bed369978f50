#include "nodes/extract_json.hpp"

#include "engine/json/value.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/text/text.hpp"
#include "nodes/text_template.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>

namespace sluice {

namespace {

rapidjson::Pointer make_pointer(const std::string& text, const char* param) {
  return json_pointer(text, param);
}

// What a body has where `p` finds nothing: the keys at the deepest part of the path that exists,
// for a warning that shows what the pointer should have said.
std::string what_is_near(const rapidjson::Pointer& p, const rapidjson::Value& root) {
  for (size_t k = p.GetTokenCount(); k-- > 0;) {
    rapidjson::Pointer prefix(p.GetTokens(), k);
    const rapidjson::Value* v = prefix.Get(root);
    if (!v) continue;
    rapidjson::StringBuffer sb;
    prefix.Stringify(sb);
    std::string where = k == 0 ? "the top level" : "\"" + std::string(sb.GetString()) + "\"";
    if (v->IsObject()) {
      if (v->MemberCount() == 0) return where + " is an empty object";
      std::string keys;
      size_t n = 0;
      for (const auto& m : v->GetObject()) {
        if (++n > 12) {
          keys += ", ... (" + std::to_string(v->MemberCount()) + " keys)";
          break;
        }
        keys += (keys.empty() ? "\"" : ", \"") +
                std::string(m.name.GetString(), std::min<size_t>(m.name.GetStringLength(), 40)) +
                "\"";
      }
      return "keys at " + where + ": " + keys;
    }
    if (v->IsArray())
      return where + " is an array of " + std::to_string(v->Size()) +
             " items (index it with /0, /1, ...)";
    return where + " is a " + (v->IsString() ? "string" : v->IsNumber() ? "number" : "scalar");
  }
  return "the body is not a JSON object";
}

class ExtractJson final : public Node {
 public:
  explicit ExtractJson(const NodeInit& init)
      : _flatten(init.params.boolean("flatten")), _strip(init.params.boolean("strip_html")),
        _keep_body(init.params.boolean("keep_body")),
        _missing_filters(init.params.str("missing") == "filter") {
    _template = text_template_param(init.params);
    if (_template && init.params.has("text"))
      throw ParamError("text_template", "give text (JSON pointers) or text_template, not both");
    if (!_template) {
      if (!init.params.has("text"))
        throw ParamError("text", "give text (JSON pointers to the text) or text_template");
      for (const auto& t : init.params.strings("text")) {
        _text.push_back(make_pointer(t, "text"));
        _text_names.push_back(t);
      }
      if (_text.empty()) throw ParamError("text", "give at least one JSON pointer");
    }
    _meta = MetaPointers(init.params);
    _hits = std::make_unique<std::atomic<uint64_t>[]>(_text.size());
    _near.resize(_text.size());
  }

  // A run with fewer records than kWarnAfter checks its pointers at the end.
  void close() override {
    const uint64_t seen = _seen.load();
    if (seen > 0 && seen < kWarnAfter) warn_unmatched(seen);
  }

  void process(RecordPtr in, Emitter& out) override {
    rapidjson::Document d;
    if (!parse_untrusted(d, in->body))
      return out.drop(Outcome::dead_lettered, "malformed JSON body");
    RecordPtr r = own(in);
    if (_template) {
      _meta.apply(d, r->meta);
      r->text = _template->render(d, r->meta);
      if (r->text.empty())
        return out.drop(_missing_filters ? Outcome::filtered : Outcome::dead_lettered,
                        "no value for " + _template->fields());
      if (!_keep_body) std::string().swap(r->body);
      out.emit(std::move(r));
      return;
    }
    std::string text;
    bool found = false;
    for (size_t i = 0; i < _text.size(); ++i) {
      const rapidjson::Value* v = _text[i].Get(d);
      if (!v || v->IsNull()) {
        note_miss(i, d);
        continue;
      }
      _hits[i].fetch_add(1, std::memory_order_relaxed);
      found = true;
      if (!text.empty()) text += '\n';
      append(*v, text);
    }
    if (_seen.fetch_add(1, std::memory_order_acq_rel) + 1 == kWarnAfter) warn_unmatched(kWarnAfter);
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

  void note_miss(size_t i, const rapidjson::Value& body) {
    if (_hits[i].load(std::memory_order_relaxed) > 0 || _seen.load() >= kWarnAfter) return;
    std::lock_guard lock(_near_mu);
    if (_near[i].empty()) _near[i] = what_is_near(_text[i], body);
  }

  // A text pointer that matched none of the first records is most likely misspelt (a missing
  // text dead-letters the record, or drops that part of it silently when another pointer
  // matched): say so once, with what the bodies have there.
  void warn_unmatched(uint64_t records) {
    if (!_output) return;
    for (size_t i = 0; i < _text.size(); ++i) {
      if (_hits[i].load() > 0) continue;
      std::string near;
      {
        std::lock_guard lock(_near_mu);
        near = _near[i];
      }
      _output->warn("text pointer \"" + _text_names[i] + "\" matched nothing in the first " +
                    std::to_string(records) + " records" + (near.empty() ? "" : " (" + near + ")"));
    }
  }

  static constexpr uint64_t kWarnAfter = 100;
  bool _flatten, _strip, _keep_body, _missing_filters;
  std::atomic<uint64_t> _seen{0};
  std::unique_ptr<std::atomic<uint64_t>[]> _hits;
  std::mutex _near_mu;
  std::vector<std::string> _near;  // what the first body without a match had there
  std::vector<rapidjson::Pointer> _text;
  std::optional<TextTemplate> _template;
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
      param("text", ParamType::string_or_list, "null",
            "JSON pointer(s) to the text; several are joined by lines (or text_template)"),
      param("text_template", ParamType::string, "null", text_template_doc()),
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
