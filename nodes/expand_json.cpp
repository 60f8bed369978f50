#include "nodes/expand_json.hpp"

#include "engine/json/value.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>

namespace sluice {

namespace {

// The id template: literal text with {id} (the input's id), {index} (the element's position
// from 0), {item} (the element itself, a string or number) and {/pointer} (a value inside the
// element). Checked when the node is built.
class IdTemplate {
 public:
  explicit IdTemplate(const std::string& text) {
    std::string lit;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] != '{') {
        if (text[i] == '}') throw ParamError("id", "unmatched '}' in \"" + text + "\"");
        lit += text[i];
        continue;
      }
      size_t end = text.find('}', i);
      if (end == std::string::npos) throw ParamError("id", "unclosed '{' in \"" + text + "\"");
      std::string name = text.substr(i + 1, end - i - 1);
      _parts.push_back({Part::literal, std::move(lit), {}});
      lit.clear();
      if (name == "id") _parts.push_back({Part::input_id, name, {}});
      else if (name == "index") _parts.push_back({Part::index, name, {}});
      else if (name == "item") _parts.push_back({Part::item, name, {}});
      else if (!name.empty() && name[0] == '/')
        _parts.push_back({Part::pointer, name, json_pointer(name, "id")});
      else
        throw ParamError("id",
                         "unknown field {" + name + "} in \"" + text +
                             "\" (use {id}, {index}, {item} or a JSON pointer such as {/ref})");
      i = end;
    }
    _parts.push_back({Part::literal, std::move(lit), {}});
  }

  // The element's id, or "" with `why` set when the element lacks a value the template needs.
  std::string expand(const Record& in, size_t index, const rapidjson::Value& item,
                     std::string& why) const {
    std::string out;
    for (const auto& p : _parts) {
      switch (p.kind) {
        case Part::literal: out += p.text; break;
        case Part::input_id: out += in.id; break;
        case Part::index: out += std::to_string(index); break;
        case Part::item:
        case Part::pointer: {
          const rapidjson::Value* v = p.kind == Part::item ? &item : p.ptr.Get(item);
          if (v && v->IsString() && v->GetStringLength() > 0)
            out.append(v->GetString(), v->GetStringLength());
          else if (v && v->IsNumber()) out += json_text(*v);
          else {
            why = "{" + p.text + "} is not a string or number";
            return {};
          }
          break;
        }
      }
    }
    return out;
  }

 private:
  struct Part {
    enum Kind { literal, input_id, index, item, pointer } kind;
    std::string text;
    rapidjson::Pointer ptr;
  };
  std::vector<Part> _parts;
};

class ExpandJson final : public Node {
 public:
  explicit ExpandJson(const NodeInit& init)
      : _items_name(init.params.str("items")), _items(json_pointer(_items_name, "items")),
        _id(init.params.str("id")), _documents(init.params.boolean("documents")),
        _meta(init.params) {
    if (init.params.has("skip")) _skip.emplace(json_pointer(init.params.str("skip"), "skip"));
  }

  void process(RecordPtr in, Emitter& out) override {
    rapidjson::Document d;
    if (!parse_untrusted(d, in->body))
      return out.drop(Outcome::dead_lettered, "malformed JSON body");
    const rapidjson::Value* arr = _items.Get(d);
    if (!arr || !arr->IsArray())
      return out.drop(Outcome::dead_lettered,
                      "items: no array at \"" + _items_name + "\"" +
                          (arr ? std::string(" (found ") + kind_of(*arr) + ")" : ""));
    // Build every element first: one without an id dead-letters the input whole (with the
    // element named), never a part of it silently.
    std::vector<RecordPtr> made;
    made.reserve(arr->Size());
    size_t index = 0;
    for (const auto& item : arr->GetArray()) {
      size_t i = index++;
      if (_skip && json_truthy(_skip->Get(item))) continue;
      std::string why;
      std::string id = _id.expand(*in, i, item, why);
      if (id.empty())
        return out.drop(Outcome::dead_lettered,
                        "items[" + std::to_string(i) +
                            "]: " + (why.empty() ? "the id template gave an empty id" : why));
      RecordPtr r = in->derive(std::move(id));
      if (_documents) r->doc_id = r->id;  // each element is a document of its own in the index
      r->body = json_text(item);
      _meta.apply(item, r->meta);
      made.push_back(std::move(r));
    }
    if (made.empty()) return out.drop(Outcome::filtered, "no items at \"" + _items_name + "\"");
    for (auto& r : made) out.emit(std::move(r));
  }

 private:
  static const char* kind_of(const rapidjson::Value& v) {
    if (v.IsObject()) return "an object";
    if (v.IsString()) return "a string";
    if (v.IsNumber()) return "a number";
    if (v.IsBool()) return "a boolean";
    return "null";
  }

  std::string _items_name;
  rapidjson::Pointer _items;
  IdTemplate _id;
  bool _documents;
  MetaPointers _meta;
  std::optional<rapidjson::Pointer> _skip;
};

}  // namespace

NodeTypeInfo expand_json_info() {
  NodeTypeInfo info;
  info.type = "expand.json";
  info.role = NodeRole::transform;
  info.description = "One record per element of an array in the record's JSON body (a listing, a "
                     "table of contents): each "
                     "element's JSON becomes the new record's body, for fetch.http or extract.json "
                     "next, on the input's "
                     "document. No array at `items` or an element without its id dead-letters the "
                     "input with the reason; "
                     "an empty array filters it.";
  info.params = {
      required_param("items", ParamType::string,
                     "JSON pointer to the array (\"\" = the body is the array)"),
      param("id", ParamType::string, "\"{id}#{index}\"",
            "new record id: {id} (the input's), {index}, {item} (a string element), {/pointer} (a "
            "value in the element)"),
      param("documents", ParamType::boolean, "false",
            "each element is a document of its own in the index (doc_id = its id), e.g. a book's "
            "sections"),
      param("skip", ParamType::string, "null", "JSON pointer whose truthy value drops an element"),
      param("meta", ParamType::object, "{}", "meta name -> JSON pointer in the element"),
  };
  info.make_node = [](const NodeInit& init) { return std::make_unique<ExpandJson>(init); };
  return info;
}

}  // namespace sluice
