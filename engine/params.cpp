#include "engine/params.hpp"

namespace sluice {

const char* param_type_name(ParamType t) {
  switch (t) {
    case ParamType::string: return "string";
    case ParamType::integer: return "integer";
    case ParamType::number: return "number";
    case ParamType::boolean: return "boolean";
    case ParamType::string_list: return "string list";
    case ParamType::string_or_list: return "string or string list";
    case ParamType::object: return "object";
    case ParamType::any: return "any";
  }
  return "?";
}

bool Params::has(std::string_view name) const {
  const json::Value* v = _v.find(name);
  return v && !v->is_null();
}

std::string Params::str(std::string_view name) const {
  const json::Value* v = _v.find(name);
  return v && v->kind == json::Kind::string ? v->str : std::string();
}

int64_t Params::integer(std::string_view name) const {
  const json::Value* v = _v.find(name);
  if (!v || v->kind != json::Kind::number) return 0;
  return v->is_integer ? v->integer : static_cast<int64_t>(v->number);
}

double Params::number(std::string_view name) const {
  const json::Value* v = _v.find(name);
  return v && v->kind == json::Kind::number ? v->number : 0.0;
}

bool Params::boolean(std::string_view name) const {
  const json::Value* v = _v.find(name);
  return v && v->kind == json::Kind::boolean && v->boolean;
}

std::vector<std::string> Params::strings(std::string_view name) const {
  std::vector<std::string> out;
  const json::Value* v = _v.find(name);
  if (!v) return out;
  if (v->kind == json::Kind::string) out.push_back(v->str);
  for (const auto& item : v->items)
    if (item.kind == json::Kind::string) out.push_back(item.str);
  return out;
}

json::Location Params::loc(std::string_view name) const {
  const json::Value* v = _v.find(name);
  return v ? v->loc : _v.loc;
}

}  // namespace sluice
