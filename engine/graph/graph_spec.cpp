#include "engine/graph/graph_spec.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <unordered_set>

#include "engine/graph/graph_edges.hpp"
#include "engine/graph/node_params.hpp"
#include "engine/text/text.hpp"

namespace sluice {

namespace {

namespace fs = std::filesystem;

// "adaptive" without a number: the most requests in flight an I/O node may grow to.
constexpr int64_t kDefaultAdaptiveMax = 256;
using json::Kind;
using json::Value;

struct VarValue {
  std::string value;
  bool secret = false;
  json::Location loc;
  bool unset_env = false;
};

std::vector<std::string> keys_of(const std::map<std::string, VarValue>& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m) out.push_back(k);
  return out;
}

class Builder {
 public:
  Builder(const std::string& file, const Registry& registry,
          const std::map<std::string, std::string>& builtins)
      : _diag(file), _registry(registry), _builtins(builtins) {}

  GraphSpec build(std::string_view text, const std::vector<VarOverride>& overrides) {
    GraphSpec spec;
    spec.file = _diag.file();
    json::Value root;
    json::ParseError perr;
    if (!json::parse(text, root, perr)) {
      _diag.error(perr.loc, "", perr.message);
      throw ConfigError(std::move(_diag));
    }
    if (root.kind != Kind::object) {
      _diag.error(root.loc, "",
                  "a graph config must be a JSON object with \"nodes\" and \"edges\"");
      throw ConfigError(std::move(_diag));
    }
    // "$schema" names the JSON Schema an editor validates the file with (`sluice schema`).
    static const std::vector<std::string> top_keys = {"$schema",  "name",  "description", "vars",
                                                      "settings", "nodes", "edges"};
    for (const auto& m : root.members)
      if (std::find(top_keys.begin(), top_keys.end(), m.key) == top_keys.end())
        _diag.error(m.key_loc, m.key, "unknown top-level key" + did_you_mean(m.key, top_keys));

    spec.name = fs::path(spec.file).stem().string();
    if (const Value* v = root.find("name")) {
      if (expect(*v, Kind::string, "name")) {
        spec.name = v->str;
        // The name becomes a file name (the state dir, bench output, ${graph_name}).
        bool unsafe = spec.name.empty() || spec.name == "." || spec.name == ".." ||
                      std::any_of(spec.name.begin(), spec.name.end(), [](char c) {
                        return c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20;
                      });
        if (unsafe)
          _diag.error(v->loc, "name",
                      "the graph's name becomes a file name (its state dir, ${graph_name}): it "
                      "may not be empty, \".\" or \"..\", or hold '/', '\\' or control "
                      "characters");
      }
    }
    if (const Value* v = root.find("description")) {
      if (expect(*v, Kind::string, "description")) spec.description = v->str;
    }
    read_vars(root.find("vars"), overrides, spec);
    for (const auto& [k, v] : _vars) spec.vars[k] = v.value;

    if (Value* s = root.find("settings")) {
      substitute_tree(*s, "settings");
      read_settings(*s, spec.settings);
    }

    Value* nodes = root.find("nodes");
    if (!nodes) {
      _diag.error(root.loc, "nodes", "missing required key \"nodes\" (an array of nodes)");
    } else if (expect(*nodes, Kind::array, "nodes")) {
      for (size_t i = 0; i < nodes->items.size(); ++i) read_node(nodes->items[i], i, spec);
      if (nodes->items.empty()) _diag.error(nodes->loc, "nodes", "a graph needs at least one node");
    }
    const Value* edges = root.find("edges");
    if (!edges) {
      _diag.error(root.loc, "edges",
                  "missing required key \"edges\" (an array of [from, to] pairs)");
    } else if (expect(*edges, Kind::array, "edges")) {
      read_edges(*edges, spec, _diag);
    }
    if (_diag.empty()) check_topology(spec, nodes ? nodes->loc : root.loc, _diag);
    if (!_diag.empty()) throw ConfigError(std::move(_diag));
    spec.config_hash = hash_of(spec);
    spec.warnings = _diag.format_warnings();
    spec.secrets = _diag.secrets();
    return spec;
  }

 private:
  Diagnostics _diag;
  const Registry& _registry;
  std::unordered_set<std::string> _ids;  // node ids so far: a duplicate check per node, not a scan
  const std::map<std::string, std::string>& _builtins;
  std::map<std::string, VarValue> _vars;
  std::vector<json::Location> _node_locs;

  bool expect(const Value& v, Kind k, const std::string& path) {
    if (v.kind == k) return true;
    _diag.error(v.loc, path,
                std::string("expected ") + json::kind_name(k) + ", got " + json::kind_name(v.kind));
    return false;
  }

  static std::string scalar_text(const Value& v) {
    if (v.kind == Kind::string) return v.str;
    return v.dump(true);
  }

  void read_vars(const Value* vars, const std::vector<VarOverride>& overrides, GraphSpec& spec) {
    fs::path dir = fs::path(spec.file).parent_path();
    _vars["graph_dir"] = {dir.empty() ? "." : dir.string(), false, {}};
    _vars["graph_name"] = {spec.name, false, {}};
    _vars["shard"] = {"0", false, {}};
    for (const auto& [k, v] : _builtins) _vars[k] = {v, false, {}};
    std::set<std::string> declared;
    if (vars && expect(*vars, Kind::object, "vars")) {
      for (const auto& m : vars->members) {
        std::string path = "vars." + m.key;
        if (m.value.kind == Kind::object || m.value.kind == Kind::array) {
          _diag.error(m.value.loc, path, "a var must be a string, number, boolean or null");
          continue;
        }
        VarValue vv{m.value.is_null() ? "" : scalar_text(m.value), false, m.value.loc};
        bool changed = false;
        // Var values may use ${env:NAME} and built-ins, not other vars.
        substitute(vv.value, m.value.loc, path, vv.secret, changed, vv.unset_env,
                   /*env_only=*/true);
        _vars[m.key] = vv;
        declared.insert(m.key);
      }
    }
    for (const auto& o : overrides) {
      if (!declared.count(o.name)) {
        std::vector<std::string> names(declared.begin(), declared.end());
        std::string hint = did_you_mean(o.name, names);
        if (hint.empty() && !names.empty()) {
          hint = " (declared vars: ";
          for (size_t i = 0; i < names.size(); ++i) hint += (i ? ", " : "") + names[i];
          hint += ")";
        } else if (names.empty()) {
          hint = " (this graph declares no vars)";
        }
        _diag.error({}, "--set " + o.name, "unknown var '" + o.name + "'" + hint);
        continue;
      }
      // A --set value is taken as written, except ${shard}: each shard of a job run with one
      // command line (srun, mpirun, an Indexed Job) names its own files with it.
      std::string v = o.value;
      for (size_t at = v.find("${shard}"); at != std::string::npos; at = v.find("${shard}", at))
        v.replace(at, 8, _vars["shard"].value);
      _vars[o.name].value = v;
      _vars[o.name].secret = false;
      _vars[o.name].unset_env = false;
    }
  }

  // Expands ${name}, ${env:NAME} and $$ in `s`. Unset env vars expand to "".
  void substitute(std::string& s, json::Location loc, const std::string& path, bool& secret,
                  bool& changed, bool& unset_env, bool env_only = false) {
    if (s.find('$') == std::string::npos) return;
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '$') {
        out += s[i];
        continue;
      }
      if (i + 1 < s.size() && s[i + 1] == '$') {
        out += '$';
        ++i;
        changed = true;
        continue;
      }
      if (i + 1 >= s.size() || s[i + 1] != '{') {
        out += '$';
        continue;
      }
      size_t close = s.find('}', i + 2);
      if (close == std::string::npos) {
        _diag.error(loc, path, "unterminated '${' in \"" + s + "\" (write $$ for a literal $)");
        return;
      }
      std::string name = s.substr(i + 2, close - i - 2);
      changed = true;
      if (name.rfind("env:", 0) == 0) {
        const char* e = std::getenv(name.c_str() + 4);
        out += e ? e : "";
        if (e) _diag.secrets().add(e);
        secret = true;
        unset_env = unset_env || !e || !*e;
      } else if (auto it = _vars.find(name);
                 it != _vars.end() &&
                 (!env_only || name == "graph_dir" || name == "graph_name" || name == "shard")) {
        out += it->second.value;
        secret = secret || it->second.secret;
        unset_env = unset_env || it->second.unset_env;
      } else {
        _diag.error(loc, path,
                    "unknown var '" + name + "'" + did_you_mean(name, keys_of(_vars)) +
                        (env_only ? " (a var's value may use only ${env:NAME}, ${graph_dir}, "
                                    "${graph_name}, ${shard})"
                                  : " (declare it under \"vars\")"));
      }
      i = close;
    }
    s = std::move(out);
  }

  void substitute_tree(Value& v, const std::string& path) {
    if (v.kind == Kind::string) {
      bool secret = false, changed = false, unset = false;
      substitute(v.str, v.loc, path, secret, changed, unset);
      v.substituted = changed;
      v.secret = secret;
      v.unset_env = unset;
    }
    for (size_t i = 0; i < v.items.size(); ++i)
      substitute_tree(v.items[i], path + "[" + std::to_string(i) + "]");
    for (auto& m : v.members) substitute_tree(m.value, path + "." + m.key);
  }

  bool read_int(Value& v, const std::string& path, int64_t min, int64_t& out,
                int64_t max = std::numeric_limits<int64_t>::max()) {
    if (!coerce_substituted(v, Kind::number) || !v.is_integer) {
      _diag.error(v.loc, path,
                  std::string("expected an integer, got ") +
                      (v.kind == Kind::string ? "\"" + v.str + "\"" : json::kind_name(v.kind)));
      return false;
    }
    if (v.integer < min) {
      _diag.error(v.loc, path, "must be at least " + std::to_string(min));
      return false;
    }
    if (v.integer > max) {
      _diag.error(v.loc, path, "must be at most " + std::to_string(max));
      return false;
    }
    out = v.integer;
    return true;
  }

  void read_settings(Value& s, GraphSettings& out) {
    if (!expect(s, Kind::object, "settings")) return;
    static const std::vector<std::string> keys = [] {
      std::vector<std::string> k;
      for (const auto& p : settings_params()) k.push_back(p.name);
      return k;
    }();
    for (auto& m : s.members) {
      std::string path = "settings." + m.key;
      int64_t n = 0;
      if (m.key == "threads") {
        if (read_int(m.value, path, 0, n, kMaxThreads)) out.threads = static_cast<int>(n);
      } else if (m.key == "max_inflight_docs") {
        if (read_int(m.value, path, 1, n, kMaxInflightDocs))
          out.max_inflight_docs = static_cast<int>(n);
      } else if (m.key == "dead_letter") {
        if (expect(m.value, Kind::string, path)) out.dead_letter = m.value.str;
      } else if (m.key == "outcomes") {
        if (expect(m.value, Kind::string, path)) out.outcomes = m.value.str;
      } else if (m.key == "max_dead_letter_ratio") {
        if (!coerce_substituted(m.value, Kind::number) || !(m.value.number >= 0) ||
            m.value.number > 1)
          _diag.error(m.value.loc, path,
                      "expected a number from 0 to 1 (the share of documents that may be "
                      "dead-lettered before the run fails)");
        else out.max_dead_letter_ratio = m.value.number;
      } else if (m.key == "limits_scope") {
        if (!expect(m.value, Kind::string, path)) continue;
        if (m.value.str == "job") out.limits_per_shard = false;
        else if (m.value.str == "shard") out.limits_per_shard = true;
        else
          _diag.error(m.value.loc, path,
                      "expected \"job\" (rate limits and I/O concurrency are totals for every "
                      "shard together) "
                      "or \"shard\" (each shard has its own quota), got \"" +
                          m.value.str + "\"" + did_you_mean(m.value.str, {"job", "shard"}));
      } else if (m.key == "max_host_connections") {
        read_int(m.value, path, 0, out.max_host_connections, kMaxConnections);
      } else if (m.key == "max_connections") {
        read_int(m.value, path, 0, out.max_connections, kMaxConnections);
      } else if (m.key == "max_body_mb") {
        read_int(m.value, path, 0, out.max_body_mb, kMaxBodyMb);
      } else if (m.key == "http_loop") {
        if (!expect(m.value, Kind::string, path)) continue;
        if (m.value.str == "epoll") out.http_loop = http::LoopKind::epoll;
        else if (m.value.str == "poll") out.http_loop = http::LoopKind::poll;
        else
          _diag.error(m.value.loc, path,
                      "expected \"epoll\" (curl_multi_socket_action on an epoll set) or \"poll\" "
                      "(curl_multi_poll), got \"" +
                          m.value.str + "\"" + did_you_mean(m.value.str, {"epoll", "poll"}));
      } else {
        _diag.error(m.key_loc, path, "unknown setting" + did_you_mean(m.key, keys));
      }
    }
  }

  void read_node(Value& n, size_t index, GraphSpec& spec) {
    std::string path = "nodes[" + std::to_string(index) + "]";
    NodeSpec ns;
    ns.loc = n.loc;
    size_t errors_before = _diag.size();
    if (!expect(n, Kind::object, path)) {
      spec.nodes.push_back(ns);  // keep indices aligned for edge messages
      return;
    }
    static const std::vector<std::string> keys = {"id",          "type",        "params",
                                                  "concurrency", "description", "variants"};
    for (const auto& m : n.members)
      if (std::find(keys.begin(), keys.end(), m.key) == keys.end())
        _diag.error(m.key_loc, path + "." + m.key, "unknown node key" + did_you_mean(m.key, keys));
    const Value* id = n.find("id");
    if (!id) {
      _diag.error(n.loc, path, "missing required key \"id\"");
    } else if (expect(*id, Kind::string, path + ".id")) {
      ns.id = id->str;
      if (ns.id.empty() ||
          ns.id.find_first_not_of(
              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
              std::string::npos)
        _diag.error(id->loc, path + ".id",
                    "node id \"" + ns.id +
                        "\" must be non-empty and use only letters, digits, '_', '-' and '.'");
      if (!ns.id.empty() && !_ids.insert(ns.id).second)
        _diag.error(id->loc, path + ".id", "duplicate node id \"" + ns.id + "\"");
    }
    Value* type = n.find("type");
    if (type) substitute_tree(*type, path + ".type");  // "type": "${embedder}" picks a variant
    if (!type) {
      _diag.error(n.loc, path, "missing required key \"type\" (see `sluice nodes`)");
    } else if (expect(*type, Kind::string, path + ".type")) {
      ns.type = type->str;
      ns.info = _registry.find(ns.type);
      if (!ns.info) {
        // A var-fed type ("${embedder}") is meant to be one of the node's variants: suggest and
        // list those, not the whole registry.
        std::vector<std::string> offered;
        if (const Value* v = n.find("variants"); v && v->kind == Kind::object)
          for (const auto& m : v->members) offered.push_back(m.key);
        std::string msg = "unknown node type \"" + ns.type + "\"";
        if (offered.empty()) {
          msg += did_you_mean(ns.type, _registry.types());
          msg += "; `sluice nodes` lists them";
        } else {
          msg += did_you_mean(ns.type, offered);
          msg += "; this node's variants: ";
          for (size_t i = 0; i < offered.size(); ++i) msg += (i ? ", " : "") + offered[i];
        }
        _diag.error(type->loc, path + ".type", msg);
      }
    }
    Value empty_params;
    empty_params.kind = Kind::object;
    empty_params.loc = n.loc;
    Value* params = n.find("params");
    if (params) {
      substitute_tree(*params, path + ".params");
      if (!expect(*params, Kind::object, path + ".params")) params = nullptr;
    }
    Value* concurrency = n.find("concurrency");
    Value merged;  // the node's params with the chosen variant's on top
    if (Value* variants = n.find("variants")) {
      if (Value* chosen = pick_variant(*variants, type, ns.info ? ns.type : "", path); !chosen) {
        ns.info = nullptr;  // reported; the node's own params would only add noise
      } else {
        merged.kind = Kind::object;
        merged.loc = chosen->loc;
        if (params) merged.members = params->members;
        if (Value* vp = chosen->find("params")) {
          substitute_tree(*vp, path + ".variants." + ns.type + ".params");
          if (expect(*vp, Kind::object, path + ".variants." + ns.type + ".params")) {
            for (auto& m : vp->members) {
              auto it = std::find_if(merged.members.begin(), merged.members.end(),
                                     [&](const json::Member& x) { return x.key == m.key; });
              if (it != merged.members.end()) *it = m;
              else merged.members.push_back(m);
            }
          }
        }
        params = &merged;
        if (Value* vc = chosen->find("concurrency")) concurrency = vc;
      }
    }
    if (ns.info) {
      ns.concurrency = ns.info->default_concurrency;
      ns.params = Params(
          resolve_params(params ? *params : empty_params, *ns.info, path + ".params", _diag));
      if (ns.info->adaptive_max > 0) {  // no concurrency given: the node finds its own
        ns.adaptive = true;
        ns.concurrency = ns.info->adaptive_max;
        const json::Value* rpm = ns.params.get("rpm");
        if (ns.info->adaptive_max_rpm > 0 && rpm && rpm->kind == Kind::number && rpm->number > 0)
          ns.concurrency = ns.info->adaptive_max_rpm;
      }
    }
    if (Value* c = concurrency) {
      substitute_tree(*c, path + ".concurrency");
      // "default": as if none were given (a graph's var may choose between a number and it).
      if (!(c->kind == Kind::string && c->str == "default"))
        read_concurrency(*c, path + ".concurrency", ns);
    }
    if (ns.info && _diag.size() == errors_before) try_construct(ns, path, spec.name);
    spec.nodes.push_back(std::move(ns));
  }

  // "variants": {"embed.hash": {"params": {...}}, "embed.openai": {"params": {...}, "concurrency":
  // 4}} lets a var choose a node's type ("type": "${embedder}") with params fitting each choice.
  // Every key must be a node type; the type chosen must have an entry. Only that entry is read,
  // so another's missing keys or env vars cost nothing.
  Value* pick_variant(Value& variants, const Value* type, const std::string& chosen_type,
                      const std::string& path) {
    std::string vpath = path + ".variants";
    if (!expect(variants, Kind::object, vpath)) return nullptr;
    std::vector<std::string> names;
    for (auto& m : variants.members) {
      names.push_back(m.key);
      if (!_registry.find(m.key))
        _diag.error(m.key_loc, vpath + "." + m.key,
                    "unknown node type \"" + m.key + "\"" + did_you_mean(m.key, _registry.types()) +
                        "; variants are keyed by node type");
      else if (expect(m.value, Kind::object, vpath + "." + m.key))
        for (const auto& k : m.value.members)
          if (k.key != "params" && k.key != "concurrency")
            _diag.error(k.key_loc, vpath + "." + m.key + "." + k.key,
                        "unknown variant key" + did_you_mean(k.key, {"params", "concurrency"}) +
                            " (a variant has \"params\" and \"concurrency\")");
    }
    if (chosen_type.empty() || !type) return nullptr;  // the type's own error is already reported
    Value* v = variants.find(chosen_type);
    if (!v) {
      std::string list;
      for (const auto& nm : names) list += (list.empty() ? "" : ", ") + nm;
      _diag.error(type->loc, path + ".type",
                  "type \"" + chosen_type +
                      "\" has no entry under \"variants\" (this node offers: " + list + ")");
      return nullptr;
    }
    return v->kind == Kind::object ? v : nullptr;
  }

  // "serial", "unlimited", N, or for I/O nodes "adaptive" / "adaptive:N" (AIMD up to N). (And
  // "default", handled by the caller.)
  void read_concurrency(Value& c, const std::string& path, NodeSpec& ns) {
    int& out = ns.concurrency;
    ns.adaptive = false;
    if (c.kind == Kind::string && c.str == "serial") {
      out = 1;
    } else if (c.kind == Kind::string && c.str == "unlimited") {
      out = 0;
    } else if (c.kind == Kind::string && c.str.rfind("adaptive", 0) == 0) {
      if (ns.info && !ns.info->io) {
        _diag.error(c.loc, path,
                    "\"adaptive\" concurrency applies to I/O nodes only (" + ns.type +
                        " runs on CPU threads: use \"serial\", \"unlimited\" or a number)");
        return;
      }
      std::string rest = c.str.substr(8);
      int64_t max = kDefaultAdaptiveMax;
      if (!rest.empty()) {
        char* end = nullptr;
        long long v = rest[0] == ':' ? std::strtoll(rest.c_str() + 1, &end, 10) : 0;
        if (rest[0] != ':' || rest.size() < 2 || !end || *end != '\0' || v < 1) {
          _diag.error(c.loc, path,
                      "expected \"adaptive\" or \"adaptive:N\" with N >= 1 (the most requests in "
                      "flight), got \"" +
                          c.str + "\"");
          return;
        }
        max = v;
      }
      out = static_cast<int>(std::min<int64_t>(max, 1 << 20));
      ns.adaptive = true;
    } else if (coerce_substituted(c, Kind::number) && c.is_integer && c.integer >= 1) {
      out = static_cast<int>(std::min<int64_t>(c.integer, 1 << 20));
    } else {
      _diag.error(c.loc, path,
                  ns.info && ns.info->io
                      ? "expected \"default\", \"serial\", \"unlimited\", an integer >= 1 or "
                        "\"adaptive[:N]\""
                      : "expected \"default\", \"serial\", \"unlimited\" or an integer >= 1");
    }
  }

  // Factories check value-level rules (e.g. a valid regex, overlap < size) without I/O.
  void try_construct(const NodeSpec& ns, const std::string& path, const std::string& graph_name) {
    NodeInit init{ns.id,       ns.type, ns.params, graph_name, ns.concurrency, {}, {},
                  ns.adaptive, {},      {},        1};
    try {
      if (ns.info->make_source) ns.info->make_source(init);
      else ns.info->make_node(init);
    } catch (const ParamError& e) {
      _diag.error(ns.params.loc(e.param), path + ".params." + e.param, e.message);
    }
  }

  static std::string hash_of(const GraphSpec& spec) {
    std::string canon = "v1;";
    for (const auto& n : spec.nodes)
      canon += n.id + '|' + n.type + '|' + n.params.value().dump(true) + '|' +
               std::to_string(n.concurrency) + (n.adaptive ? "a;" : ";");
    for (auto [a, b] : spec.edges) canon += std::to_string(a) + '>' + std::to_string(b) + ';';
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx",
                  static_cast<unsigned long long>(text::stable_hash64(canon)));
    return buf;
  }
};

}  // namespace

void split_job_limits(GraphSpec& spec, int parts) {
  if (parts <= 1) return;
  for (auto& n : spec.nodes) {
    if (n.info->io && n.concurrency > 0)
      n.concurrency = std::max(1, (n.concurrency + parts - 1) / parts);
    for (const auto& p : n.info->params) {
      if (!p.job_total) continue;
      if (const json::Value* v = n.params.get(p.name); v && v->kind == json::Kind::number)
        n.params.set_number(p.name, v->number / parts);
    }
  }
}

size_t GraphSpec::index_of(std::string_view id) const {
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].id == id) return i;
  return std::string::npos;
}

const std::vector<ParamSpec>& settings_params() {
  static const std::vector<ParamSpec> all = [] {
    auto bounded = [](ParamSpec p, double min, double max) {
      return with_range(std::move(p), min, max);
    };
    return std::vector<ParamSpec>{
        bounded(param("threads", ParamType::integer, "0",
                      "oneTBB worker threads per process; 0 = every core (--threads overrides)"),
                0, kMaxThreads),
        bounded(param("max_inflight_docs", ParamType::integer, "256",
                      "documents admitted and not yet done, per process"),
                1, kMaxInflightDocs),
        param("dead_letter", ParamType::string, "null",
              "JSONL file of dead-lettered records; default: <graph>.dead-letter.jsonl beside "
              "the first output"),
        param("outcomes", ParamType::string, "null",
              "JSONL file with every record's outcome (id, doc_id, outcome, node, reason); "
              "default: none"),
        bounded(param("max_dead_letter_ratio", ParamType::number, "0.1",
                      "share of documents that may be dead-lettered before the run fails"),
                0, 1),
        with_choices(param("limits_scope", ParamType::string, "\"job\"",
                           "job: rate limits and I/O concurrency are totals for every process of "
                           "every shard; shard: each shard has its own"),
                     {"job", "shard"}),
        with_choices(param("http_loop", ParamType::string, "\"epoll\"",
                           "how the HTTP loop waits on its sockets"),
                     {"epoll", "poll"}),
        bounded(param("max_host_connections", ParamType::integer, "0",
                      "open connections per host, per process; 0 = no cap"),
                0, static_cast<double>(kMaxConnections)),
        bounded(param("max_connections", ParamType::integer, "0",
                      "open connections in all, per process; 0 = no cap"),
                0, static_cast<double>(kMaxConnections)),
        bounded(param("max_body_mb", ParamType::integer, "256",
                      "response-body MiB one process receives at once; 0 = no bound"),
                0, static_cast<double>(kMaxBodyMb)),
    };
  }();
  return all;
}

bool parse_override(std::string_view text, VarOverride& out) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) return false;
  out.name = std::string(text.substr(0, eq));
  out.value = std::string(text.substr(eq + 1));
  return true;
}

GraphSpec parse_graph(std::string_view text, const std::string& file,
                      const std::vector<VarOverride>& overrides, const Registry& registry,
                      const std::map<std::string, std::string>& builtins) {
  Builder b(file, registry, builtins);
  return b.build(text, overrides);
}

GraphSpec load_graph(const std::string& path, const std::vector<VarOverride>& overrides,
                     const Registry& registry, const std::map<std::string, std::string>& builtins) {
  auto refuse = [&](const std::string& why) {
    Diagnostics d(path);
    d.error({}, "", "cannot read graph config: " + why);
    throw ConfigError(std::move(d));
  };
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) refuse("it is a directory, not a file");
  // A config is small; a larger file is a mistake (a corpus passed as the graph), not read.
  constexpr uintmax_t kMaxConfigBytes = uintmax_t{16} << 20;
  if (auto size = std::filesystem::file_size(path, ec); !ec && size > kMaxConfigBytes)
    refuse("it is larger than 16 MiB; is it the graph config?");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    refuse(std::filesystem::exists(path) ? "permission denied or not a file" : "no such file");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) refuse("a read error");
  return parse_graph(ss.str(), path, overrides, registry, builtins);
}

}  // namespace sluice
