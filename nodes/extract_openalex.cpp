#include "nodes/extract_openalex.hpp"

#include "engine/json/value.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/text/text.hpp"

namespace sluice {

namespace {

std::string rebuild(const rapidjson::Value& index, size_t max_words) {
  if (!index.IsObject()) throw std::runtime_error("abstract_inverted_index is not an object");
  std::vector<std::string_view> words;
  for (auto it = index.MemberBegin(); it != index.MemberEnd(); ++it) {
    if (!it->value.IsArray())
      throw std::runtime_error("abstract_inverted_index positions are not an array");
    std::string_view word(it->name.GetString(), it->name.GetStringLength());
    for (const auto& pos : it->value.GetArray()) {
      if (!pos.IsUint64())
        throw std::runtime_error("abstract_inverted_index position is not a whole number");
      uint64_t p = pos.GetUint64();
      if (p >= max_words)
        throw std::runtime_error("abstract longer than max_words");  // untrusted input
      if (p >= words.size()) words.resize(p + 1);
      words[p] = word;
    }
  }
  std::string out;
  for (auto w : words) {
    if (w.empty()) continue;  // a gap in the positions
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

class OpenAlexAbstract final : public Node {
 public:
  explicit OpenAlexAbstract(const NodeInit& init)
      : _abstract(init.params.str("abstract")),
        _title(init.params.has("title") ? init.params.str("title") : ""),
        _max_words(static_cast<size_t>(init.params.integer("max_words"))) {
    for (const std::string& p : {_abstract, _title})
      if (!p.empty() && !rapidjson::Pointer(p.c_str()).IsValid())
        throw ParamError(&p == &_abstract ? "abstract" : "title",
                         "\"" + p + "\" is not a JSON pointer");
    _meta = MetaPointers(init.params);
  }

  void process(RecordPtr in, Emitter& out) override {
    rapidjson::Document d;
    if (!parse_untrusted(d, in->body) || !d.IsObject())
      return out.drop(Outcome::dead_lettered, "malformed JSON body");
    const rapidjson::Value* idx = rapidjson::Pointer(_abstract.c_str()).Get(d);
    if (!idx || idx->IsNull()) return out.drop(Outcome::filtered, "no abstract");
    std::string abstract;
    try {
      abstract = rebuild(*idx, _max_words);
    } catch (const std::exception& e) {
      return out.drop(Outcome::dead_lettered, e.what());
    }
    RecordPtr r = own(in);
    std::string title;
    if (!_title.empty())
      if (const rapidjson::Value* t = rapidjson::Pointer(_title.c_str()).Get(d); t && t->IsString())
        title = text::html_to_text({t->GetString(), t->GetStringLength()});
    r->text = title.empty() ? abstract : title + "\n\n" + abstract;
    if (!title.empty()) r->meta.set_string("title", title);
    _meta.apply(d, r->meta);
    std::string().swap(r->body);
    out.emit(std::move(r));
  }

 private:
  std::string _abstract, _title;
  size_t _max_words;
  MetaPointers _meta;
};

}  // namespace

std::string abstract_from_inverted_index(std::string_view work_json, const std::string& pointer,
                                         size_t max_words) {
  rapidjson::Document d;
  if (!parse_untrusted(d, work_json)) throw std::runtime_error("malformed JSON");
  const rapidjson::Value* idx = rapidjson::Pointer(pointer.c_str()).Get(d);
  if (!idx || idx->IsNull()) return {};
  return rebuild(*idx, max_words);
}

NodeTypeInfo extract_openalex_abstract_info() {
  NodeTypeInfo info;
  info.type = "extract.openalex_abstract";
  info.role = NodeRole::transform;
  info.description =
      "An OpenAlex work (the record's body) to text: the title (HTML stripped) and the abstract "
      "rebuilt from "
      "abstract_inverted_index. A work without an abstract is filtered, not an error.";
  info.params = {
      param("abstract", ParamType::string, "\"/abstract_inverted_index\"",
            "JSON pointer to the inverted index"),
      param("title", ParamType::string, "\"/title\"", "JSON pointer to the title (null: no title)"),
      param("meta", ParamType::object, "{}",
            "meta name -> JSON pointer (e.g. {\"doi\": \"/doi\"})"),
      with_min(
          param("max_words", ParamType::integer, "100000", "longer abstracts are dead-lettered"),
          1),
  };
  info.make_node = [](const NodeInit& init) { return std::make_unique<OpenAlexAbstract>(init); };
  return info;
}

}  // namespace sluice
