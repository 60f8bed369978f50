#include "nodes/text_template.hpp"

#include <stdexcept>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace sluice {

namespace {

void append_value(const rapidjson::Value& v, std::string& out) {
  if (v.IsString()) {
    out.append(v.GetString(), v.GetStringLength());
  } else if (v.IsArray()) {
    bool first = true;
    for (const auto& e : v.GetArray()) {
      if (e.IsNull()) continue;
      if (!first) out += '\n';
      append_value(e, out);
      first = false;
    }
  } else if (!v.IsNull()) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    v.Accept(w);
    out.append(sb.GetString(), sb.GetSize());
  }
}

// Trimmed, at most one blank line in a row, lines without spaces at either end (what a missing
// field leaves behind).
std::string tidy(const std::string& s) {
  std::string out;
  int newlines = 0;
  bool line_start = true;
  for (char c : s) {
    if (c == '\n') {
      while (!out.empty() && (out.back() == ' ' || out.back() == '\t' || out.back() == '\r'))
        out.pop_back();
      ++newlines;
      line_start = true;
      continue;
    }
    if (line_start && (c == ' ' || c == '\t' || c == '\r')) continue;
    if (newlines > 0 && !out.empty()) out.append(static_cast<size_t>(std::min(newlines, 2)), '\n');
    newlines = 0;
    line_start = false;
    out += c;
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '\t' || out.back() == '\r'))
    out.pop_back();
  return out;
}

}  // namespace

TextTemplate::TextTemplate(std::string_view t) {
  std::string lit;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '{' && i + 1 < t.size() && t[i + 1] == '{') {
      lit += '{';
      ++i;
      continue;
    }
    if (t[i] == '}' && i + 1 < t.size() && t[i + 1] == '}') {
      lit += '}';
      ++i;
      continue;
    }
    if (t[i] == '}') throw std::invalid_argument("a '}' with no '{' (write }} for a brace)");
    if (t[i] != '{') {
      lit += t[i];
      continue;
    }
    size_t close = t.find('}', i + 1);
    if (close == std::string_view::npos)
      throw std::invalid_argument("unclosed '{' (write {{ for a brace)");
    std::string name(t.substr(i + 1, close - i - 1));
    if (name.empty()) throw std::invalid_argument("an empty {} placeholder");
    if (!lit.empty()) _parts.push_back({Part::literal, std::move(lit), std::nullopt});
    lit.clear();
    if (name[0] == '/') {
      rapidjson::Pointer p(name.c_str());
      if (!p.IsValid()) throw std::invalid_argument("{" + name + "} is not a valid JSON pointer");
      _parts.push_back({Part::pointer, name, std::move(p)});
    } else if (name.rfind("meta.", 0) == 0 && name.size() > 5) {
      _parts.push_back({Part::meta, name.substr(5), std::nullopt});
    } else {
      _parts.push_back({Part::field, name, std::nullopt});
    }
    i = close;
  }
  if (!lit.empty()) _parts.push_back({Part::literal, std::move(lit), std::nullopt});
  bool any = false;
  for (const auto& p : _parts) any = any || p.kind != Part::literal;
  if (!any) throw std::invalid_argument("no {field} in the template");
}

std::string TextTemplate::render(const rapidjson::Value& object, const Meta& meta) const {
  std::string out;
  bool found = false;
  for (const auto& p : _parts) {
    switch (p.kind) {
      case Part::literal: out += p.text; break;
      case Part::field:
        if (object.IsObject()) {
          auto it = object.FindMember(
              rapidjson::Value(p.text.data(), static_cast<rapidjson::SizeType>(p.text.size())));
          if (it != object.MemberEnd() && !it->value.IsNull()) {
            found = true;
            append_value(it->value, out);
          }
        }
        break;
      case Part::pointer:
        if (const rapidjson::Value* v = p.ptr->Get(object); v && !v->IsNull()) {
          found = true;
          append_value(*v, out);
        }
        break;
      case Part::meta:
        if (meta.get_json(p.text)) {
          found = true;
          out += meta.get_text(p.text);
        }
        break;
    }
  }
  return found ? tidy(out) : std::string();
}

std::string TextTemplate::fields() const {
  std::string out;
  for (const auto& p : _parts) {
    if (p.kind == Part::literal) continue;
    out += (out.empty() ? "{" : ", {") + std::string(p.kind == Part::meta ? "meta." : "") + p.text +
           "}";
  }
  return out;
}

std::optional<TextTemplate> text_template_param(const Params& p) {
  if (!p.has("text_template")) return std::nullopt;
  try {
    return TextTemplate(p.str("text_template"));
  } catch (const std::invalid_argument& e) {
    throw ParamError("text_template", e.what());
  }
}

std::string text_template_doc() {
  return "the text composed from fields, e.g. \"{title}\\n\\n{body}\": {name} a top-level field, "
         "{/a/0} a JSON pointer, {meta.NAME} a meta value ({{ }} for braces); missing fields "
         "leave nothing";
}

}  // namespace sluice
