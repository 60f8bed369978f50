#include "engine/graph/node_params.hpp"

#include <algorithm>
#include <sstream>

namespace sluice {

using json::Kind;
using json::Value;

bool coerce_substituted(Value& v, Kind want) {
  if (v.kind == want) return true;
  if (v.kind != Kind::string || !v.substituted) return false;
  const std::string& s = v.str;
  if (want == Kind::boolean && (s == "true" || s == "false")) {
    v.kind = Kind::boolean;
    v.boolean = s == "true";
    return true;
  }
  if (want == Kind::number && !s.empty()) {
    Value parsed;
    json::ParseError err;
    if (json::parse(s, parsed, err) && parsed.kind == Kind::number) {
      json::Location loc = v.loc;
      v = parsed;
      v.loc = loc;
      return true;
    }
  }
  return false;
}

namespace {

class ParamResolver {
 public:
  explicit ParamResolver(Diagnostics& diag) : _diag(diag) {}

  // A retired param name (ParamSpec::replaced_by): its value moves to the param that replaced
  // it ("retry.max_attempts": a member of the object param `retry`), with a note; giving both
  // names is an error.
  void move_replaced(Value& given, const json::Member& m, const ParamSpec& ps,
                     const std::string& path) {
    const std::string& to = ps.replaced_by;
    const size_t dot = to.find('.');
    const std::string top = to.substr(0, dot);
    auto both_given = [&] {
      _diag.error(m.key_loc, path + "." + m.key,
                  "\"" + m.key + "\" and \"" + to + "\" are both given; keep \"" + to + "\"");
    };
    Value* target = given.find(top);
    if (dot == std::string::npos) {
      if (target) return both_given();
      json::Member moved = m;
      moved.key = to;
      given.members.push_back(std::move(moved));
    } else {
      if (!target || target->is_null()) {
        json::Member obj;
        obj.key = top;
        obj.key_loc = m.key_loc;
        obj.value.kind = Kind::object;
        obj.value.loc = m.value.loc;
        if (target) *target = obj.value;
        else given.members.push_back(std::move(obj));
        target = given.find(top);
      }
      if (target->kind != Kind::object) return;  // its own type error follows
      const std::string member = to.substr(dot + 1);
      if (target->find(member)) return both_given();
      json::Member moved = m;
      moved.key = member;
      target->members.push_back(std::move(moved));
    }
    _diag.warning(m.key_loc, path + "." + m.key,
                  "\"" + m.key + "\" is deprecated: write \"" + to + "\" instead");
  }

  json::Value resolve(Value& given, const NodeTypeInfo& info, const std::string& path) {
    std::vector<std::string> names;
    for (const auto& p : info.params)
      if (p.replaced_by.empty()) names.push_back(p.name);
    // Retired names first, so that the params they moved to are checked like any other.
    for (size_t i = 0; i < given.members.size();) {
      const ParamSpec* ps = nullptr;
      for (const auto& p : info.params)
        if (p.name == given.members[i].key && !p.replaced_by.empty()) ps = &p;
      if (!ps) {
        ++i;
        continue;
      }
      json::Member m = given.members[i];
      given.members.erase(given.members.begin() + static_cast<std::ptrdiff_t>(i));
      if (check_param(m.value, *ps, path + "." + m.key)) move_replaced(given, m, *ps, path);
    }
    Value out;
    out.kind = Kind::object;
    out.loc = given.loc;
    for (auto& m : given.members) {
      const ParamSpec* ps = nullptr;
      for (const auto& p : info.params)
        if (p.name == m.key) ps = &p;
      std::string ppath = path + "." + m.key;
      if (!ps) {
        _diag.error(m.key_loc, ppath,
                    "unknown param \"" + m.key + "\" for " + info.type +
                        did_you_mean(m.key, names) + "; `sluice nodes " + info.type +
                        "` lists its params");
        continue;
      }
      if (check_param(m.value, *ps, ppath)) out.members.push_back(m);
    }
    for (const auto& p : info.params) {
      if (given.find(p.name) || !p.replaced_by.empty()) continue;
      if (p.required) {
        _diag.error(given.loc, path,
                    "missing required param \"" + p.name + "\" (" + param_type_name(p.type) + ": " +
                        p.doc + ")");
        continue;
      }
      json::Member m;
      m.key = p.name;
      json::ParseError err;
      if (!p.default_json.empty() && !json::parse(p.default_json, m.value, err))
        m.value = Value();  // a bad default is a registry bug; caught by the registry test
      m.value.loc = given.loc;
      out.members.push_back(std::move(m));
    }
    return out;
  }

  bool check_param(Value& v, const ParamSpec& ps, const std::string& path) {
    auto type_error = [&] {
      std::string got = json::kind_name(v.kind);
      if (v.kind == Kind::string) got += " \"" + (v.secret ? std::string("***") : v.str) + "\"";
      _diag.error(v.loc, path,
                  std::string("expected ") + param_type_name(ps.type) + ", got " + got);
      return false;
    };
    if (v.is_null() && !ps.required) return true;
    switch (ps.type) {
      case ParamType::string:
        if (v.kind != Kind::string) return type_error();
        if (!ps.choices.empty() &&
            std::find(ps.choices.begin(), ps.choices.end(), v.str) == ps.choices.end()) {
          std::string list;
          for (const auto& c : ps.choices) list += (list.empty() ? "" : ", ") + c;
          _diag.error(v.loc, path,
                      "\"" + v.str + "\" is not one of: " + list + did_you_mean(v.str, ps.choices));
          return false;
        }
        return true;
      case ParamType::integer:
        if (!coerce_substituted(v, Kind::number) || !v.is_integer) return type_error();
        break;
      case ParamType::number:
        if (!coerce_substituted(v, Kind::number)) return type_error();
        break;
      case ParamType::boolean:
        if (!coerce_substituted(v, Kind::boolean)) return type_error();
        return true;
      case ParamType::string_list:
      case ParamType::string_or_list:
        if (ps.type == ParamType::string_or_list && v.kind == Kind::string) return true;
        if (v.kind != Kind::array) return type_error();
        for (size_t i = 0; i < v.items.size(); ++i)
          if (v.items[i].kind != Kind::string) {
            _diag.error(v.items[i].loc, path + "[" + std::to_string(i) + "]",
                        std::string("expected string, got ") + json::kind_name(v.items[i].kind));
            return false;
          }
        return true;
      case ParamType::object:
        if (v.kind != Kind::object) return type_error();
        return true;
      case ParamType::any: return true;
    }
    if (ps.min && v.number < *ps.min) {
      std::ostringstream os;
      os << "must be at least " << *ps.min;
      _diag.error(v.loc, path, os.str());
      return false;
    }
    return true;
  }

 private:
  Diagnostics& _diag;
};

}  // namespace

json::Value resolve_params(json::Value& given, const NodeTypeInfo& info, const std::string& path,
                           Diagnostics& diag) {
  return ParamResolver(diag).resolve(given, info, path);
}

}  // namespace sluice
