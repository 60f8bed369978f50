// A document's text composed from its JSON fields (`text_template` of source.jsonl, source.files'
// JSON files and extract.json): "{title}\n\n{body}". {name} is the object's top-level field,
// {/a/0/b} a JSON pointer into it, {meta.NAME} one of the record's meta values; "{{" and "}}" are
// literal braces. Strings go in as they are, numbers and booleans as JSON, arrays one element a
// line, objects as JSON; null or missing, nothing. Each line of the result is trimmed and a line a
// missing field left empty collapses with its neighbours (never more than one blank line in a
// row).
// Immutable after construction; render is thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>

#include "engine/params.hpp"
#include "engine/record.hpp"

namespace sluice {

class TextTemplate {
 public:
  // Throws std::invalid_argument for an unclosed or empty placeholder, or a bad pointer.
  explicit TextTemplate(std::string_view text);
  // "" when no placeholder found a value.
  std::string render(const rapidjson::Value& object, const Meta& meta) const;
  // The placeholders, for messages: "{title}, {body}".
  std::string fields() const;

 private:
  struct Part {
    enum Kind { literal, field, pointer, meta } kind;
    std::string text;                       // literal text, field or meta name
    std::optional<rapidjson::Pointer> ptr;  // kind == pointer
  };
  std::vector<Part> _parts;
};

// The `text_template` param: its doc, and its value read (nullopt when not set; ParamError for a
// bad template).
std::string text_template_doc();
std::optional<TextTemplate> text_template_param(const Params& p);

}  // namespace sluice
