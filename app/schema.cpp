#include "app/schema.hpp"

#include <cctype>

#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include "engine/graph/graph_spec.hpp"

namespace sluice {

namespace {

using rapidjson::Value;
using Alloc = rapidjson::Document::AllocatorType;

Value str(const std::string& s, Alloc& a) {
  return Value(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), a);
}

Value object() { return Value(rapidjson::kObjectType); }

void add(Value& o, const char* key, Value v, Alloc& a) {
  o.AddMember(Value(key, a), std::move(v), a);
}

Value type_is(const char* t, Alloc& a) {
  Value o = object();
  add(o, "type", Value(t, a), a);
  return o;
}

// A string that names a var ("${n}"): it may stand for any type until the loader substitutes it.
Value var_string(Alloc& a) {
  Value o = type_is("string", a);
  add(o, "pattern", Value("[$][{]", a), a);
  return o;
}

Value string_list(Alloc& a) {
  Value o = type_is("array", a);
  add(o, "items", type_is("string", a), a);
  return o;
}

// One param's schema: its type (or a var standing for it, or null where the param is optional),
// bounds, choices, default and doc.
Value param_schema(const ParamSpec& p, Alloc& a) {
  Value typed;
  switch (p.type) {
    case ParamType::string: typed = type_is("string", a); break;
    case ParamType::integer: typed = type_is("integer", a); break;
    case ParamType::number: typed = type_is("number", a); break;
    case ParamType::boolean: typed = type_is("boolean", a); break;
    case ParamType::string_list: typed = string_list(a); break;
    case ParamType::string_or_list: {
      typed = object();
      Value any(rapidjson::kArrayType);
      any.PushBack(type_is("string", a), a);
      any.PushBack(string_list(a), a);
      add(typed, "anyOf", std::move(any), a);
      break;
    }
    case ParamType::object: typed = type_is("object", a); break;
    case ParamType::any: typed = object(); break;
  }
  if (p.min) add(typed, "minimum", Value(*p.min), a);
  if (p.max) add(typed, "maximum", Value(*p.max), a);
  if (!p.choices.empty()) {
    Value e(rapidjson::kArrayType);
    for (const auto& c : p.choices) e.PushBack(str(c, a), a);
    add(typed, "enum", std::move(e), a);
  }
  Value out = object();
  std::string doc = p.doc;
  if (!p.replaced_by.empty()) doc = "deprecated: use " + p.replaced_by + ". " + doc;
  add(out, "description", str(doc, a), a);
  if (!p.default_json.empty() && p.default_json != "null") {
    rapidjson::Document d(&a);
    d.Parse(p.default_json.c_str());
    if (!d.HasParseError()) add(out, "default", Value(d, a), a);
  }
  Value any(rapidjson::kArrayType);
  any.PushBack(std::move(typed), a);
  if (p.type != ParamType::string || !p.choices.empty()) any.PushBack(var_string(a), a);
  if (!p.required) any.PushBack(type_is("null", a), a);
  add(out, "anyOf", std::move(any), a);
  return out;
}

// An object of `params`: every one described, no other key (a typo is refused), the required ones
// required unless `partial` (a variant's params, which the node's own complete).
Value params_schema(const std::vector<ParamSpec>& params, bool partial, Alloc& a) {
  Value o = type_is("object", a);
  Value props = object();
  Value required(rapidjson::kArrayType);
  for (const auto& p : params) {
    props.AddMember(str(p.name, a), param_schema(p, a), a);
    if (p.required && !partial) required.PushBack(str(p.name, a), a);
  }
  add(o, "properties", std::move(props), a);
  add(o, "additionalProperties", Value(false), a);
  if (!required.Empty()) add(o, "required", std::move(required), a);
  return o;
}

// A definition's name: letters, digits, '-' and '_' only (a ':' in a "$ref" went unresolved in
// RapidJSON 1.1's validator, which then accepted anything there).
std::string def_name(std::string name) {
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  return name;
}

Value ref(const std::string& to, Alloc& a) {
  Value o = object();
  add(o, "$ref", str("#/definitions/" + def_name(to), a), a);
  return o;
}

Value described(Value v, const char* doc, Alloc& a) {
  add(v, "description", Value(doc, a), a);
  return v;
}

// A node object: `type` and `params` as given, the keys every node has, nothing else; id and
// type required.
Value node_schema(Value type, Value params, Alloc& a) {
  Value props = object();
  add(props, "type", std::move(type), a);
  add(props, "params", std::move(params), a);
  Value id = type_is("string", a);
  add(id, "pattern", Value("^[-A-Za-z0-9_.]+$", a), a);
  add(props, "id",
      described(std::move(id), "unique id: letters, digits, '_', '-' and '.'; edges name it", a),
      a);
  add(props, "description", type_is("string", a), a);
  add(props, "concurrency", ref("concurrency", a), a);
  add(props, "variants", ref("variants", a), a);
  Value node = type_is("object", a);
  add(node, "properties", std::move(props), a);
  Value req(rapidjson::kArrayType);
  req.PushBack("id", a);
  req.PushBack("type", a);
  add(node, "required", std::move(req), a);
  add(node, "additionalProperties", Value(false), a);
  return node;
}

}  // namespace

std::string graph_schema(const Registry& registry) {
  rapidjson::Document doc(rapidjson::kObjectType);
  Alloc& a = doc.GetAllocator();
  add(doc, "$schema", Value("http://json-schema.org/draft-07/schema#", a), a);
  add(doc, "title", Value("sluice graph config", a), a);
  add(doc, "description",
      Value("Generated by `sluice schema` from the node registry; `sluice nodes TYPE` and "
            "`sluice validate GRAPH` say the same.",
            a),
      a);
  add(doc, "type", Value("object", a), a);
  Value required(rapidjson::kArrayType);
  required.PushBack("nodes", a);
  required.PushBack("edges", a);
  add(doc, "required", std::move(required), a);
  add(doc, "additionalProperties", Value(false), a);

  Value props = object();
  add(props, "$schema", described(type_is("string", a), "this schema, for editors", a), a);
  add(props, "name", described(type_is("string", a), "default: the file's stem", a), a);
  add(props, "description", type_is("string", a), a);
  {
    Value vars = type_is("object", a);
    Value scalar = object();
    Value types(rapidjson::kArrayType);
    for (const char* t : {"string", "number", "boolean", "null"}) types.PushBack(Value(t, a), a);
    add(scalar, "type", std::move(types), a);
    add(vars, "additionalProperties", std::move(scalar), a);
    add(props, "vars",
        described(std::move(vars),
                  "values for ${name} in settings and params; --set name=value overrides one", a),
        a);
  }
  add(props, "settings", params_schema(settings_params(), false, a), a);
  {
    Value nodes = type_is("array", a);
    add(nodes, "minItems", Value(1), a);
    add(nodes, "items", ref("node", a), a);
    add(props, "nodes", std::move(nodes), a);
    Value pair = type_is("array", a);
    add(pair, "items", type_is("string", a), a);
    add(pair, "minItems", Value(2), a);
    add(pair, "maxItems", Value(2), a);
    Value edges = type_is("array", a);
    add(edges, "items", described(std::move(pair), "[\"from id\", \"to id\"]", a), a);
    add(props, "edges", std::move(edges), a);
  }
  add(doc, "properties", std::move(props), a);

  Value defs = object();
  Value one_of(rapidjson::kArrayType);
  Value variant_props = object();
  for (const std::string& type : registry.types()) {
    const NodeTypeInfo& info = *registry.find(type);
    // The node with this type: its params, completely.
    Value t = object();
    Value e(rapidjson::kArrayType);
    e.PushBack(str(type, a), a);
    add(t, "enum", std::move(e), a);
    defs.AddMember(str(def_name("node-" + type), a),
                   node_schema(described(std::move(t), info.description.c_str(), a),
                               params_schema(info.params, false, a), a),
                   a);
    one_of.PushBack(ref("node-" + type, a), a);
    // A variant for this type: params on top of the node's own.
    Value variant = type_is("object", a);
    Value vp = object();
    add(vp, "params", params_schema(info.params, true, a), a);
    add(vp, "concurrency", ref("concurrency", a), a);
    add(variant, "properties", std::move(vp), a);
    add(variant, "additionalProperties", Value(false), a);
    variant_props.AddMember(str(type, a), std::move(variant), a);
  }
  {
    // A node whose type a var chooses ("type": "${embedder}"): its params are checked when the
    // var is known (`sluice validate`); its variants are checked here.
    defs.AddMember(
        "node-var-type",
        node_schema(described(var_string(a),
                              "a var naming one of the node's variants, e.g. \"${embedder}\"", a),
                    type_is("object", a), a),
        a);
    one_of.PushBack(ref("node-var-type", a), a);
  }
  Value node = object();
  add(node, "oneOf", std::move(one_of), a);
  defs.AddMember("node", std::move(node), a);
  {
    Value variants = type_is("object", a);
    add(variants, "properties", std::move(variant_props), a);
    add(variants, "additionalProperties", Value(false), a);
    defs.AddMember("variants",
                   described(std::move(variants),
                             "params (and concurrency) per node type, for a type a var chooses", a),
                   a);
  }
  {
    Value any(rapidjson::kArrayType);
    Value n = type_is("integer", a);
    add(n, "minimum", Value(0), a);
    any.PushBack(described(std::move(n), "at most this many at once; 0 = unlimited", a), a);
    Value words(rapidjson::kArrayType);
    for (const char* w : {"serial", "unlimited", "adaptive", "default"})
      words.PushBack(Value(w, a), a);
    Value e = object();
    add(e, "enum", std::move(words), a);
    any.PushBack(std::move(e), a);
    Value adaptive = type_is("string", a);
    add(adaptive, "pattern", Value("^adaptive:[1-9][0-9]*$", a), a);
    any.PushBack(described(std::move(adaptive), "adaptive, at most N in flight", a), a);
    any.PushBack(var_string(a), a);
    Value c = object();
    add(c, "anyOf", std::move(any), a);
    defs.AddMember("concurrency", std::move(c), a);
  }
  add(doc, "definitions", std::move(defs), a);

  rapidjson::StringBuffer buf;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
  w.SetIndent(' ', 2);
  doc.Accept(w);
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

}  // namespace sluice
