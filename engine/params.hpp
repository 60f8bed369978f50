// Typed node parameters. Each node type declares its ParamSpecs (type, default, one-line doc,
// required); `sluice nodes`, validation and the docs all come from these declarations.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/json/json.hpp"

namespace sluice {

enum class ParamType { string, integer, number, boolean, string_list, string_or_list, object, any };
const char* param_type_name(ParamType t);

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::string;
  std::string default_json;  // JSON text of the default; empty = no default
  std::string doc;
  bool required = false;
  std::optional<double> min;         // inclusive lower bound for numbers
  std::optional<double> max;         // inclusive upper bound, where one is documented
  std::vector<std::string> choices;  // allowed values for a string
  // A total for the whole job (a rate limit): split evenly across processes and shards.
  bool job_total = false;
  // A retired name kept as an alias: its value moves to this param ("retry.max_attempts": the
  // member of an object param) and validation notes the new name.
  std::string replaced_by;
};

// Resolved parameter values of one node (defaults filled in). Read-only after validation.
class Params {
 public:
  Params() = default;
  explicit Params(json::Value object) : _v(std::move(object)) {}

  bool has(std::string_view name) const;  // present and not null
  const json::Value* get(std::string_view name) const { return _v.find(name); }
  std::string str(std::string_view name) const;
  int64_t integer(std::string_view name) const;
  double number(std::string_view name) const;
  bool boolean(std::string_view name) const;
  std::vector<std::string> strings(std::string_view name) const;  // string_list or string_or_list
  json::Location loc(std::string_view name) const;
  const json::Value& value() const { return _v; }
  // Replaces a number param's value (scaling a job's limit to one process's share).
  void set_number(std::string_view name, double v) {
    if (json::Value* p = _v.find(name); p && p->kind == json::Kind::number) {
      p->number = v;
      p->is_integer = false;
    }
  }

 private:
  json::Value _v;
};

// A node factory's complaint about one param value (e.g. an invalid regex): reported at that
// param's location by validation.
struct ParamError : std::exception {
  ParamError(std::string param_name, std::string msg)
      : param(std::move(param_name)), message(std::move(msg)) {}
  const char* what() const noexcept override { return message.c_str(); }
  std::string param;
  std::string message;
};

}  // namespace sluice

namespace sluice {
// Declaration helpers for node registrations.
inline ParamSpec param(std::string name, ParamType type, std::string default_json,
                       std::string doc) {
  ParamSpec p;
  p.name = std::move(name);
  p.type = type;
  p.default_json = std::move(default_json);
  p.doc = std::move(doc);
  return p;
}
inline ParamSpec required_param(std::string name, ParamType type, std::string doc) {
  ParamSpec p = param(std::move(name), type, "", std::move(doc));
  p.required = true;
  return p;
}
inline ParamSpec job_total(ParamSpec p) {
  p.job_total = true;
  return p;
}
inline ParamSpec with_min(ParamSpec p, double min) {
  p.min = min;
  return p;
}
inline ParamSpec with_range(ParamSpec p, double min, double max) {
  p.min = min;
  p.max = max;
  return p;
}
inline ParamSpec with_choices(ParamSpec p, std::vector<std::string> choices) {
  p.choices = std::move(choices);
  return p;
}
}  // namespace sluice
