#include "nodes/util.hpp"

// GCC 12 reports a false maybe-uninitialized inside libstdc++'s <regex> when built with
// sanitizers at -O1 (the std::function inside _State is moved before GCC can see it set).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <mutex>
#include <regex>
#include <unordered_set>

#include "engine/text/text.hpp"

namespace sluice {

namespace {

std::optional<std::regex> compile(const Params& p, const char* name) {
  if (!p.has(name)) return std::nullopt;
  try {
    return std::regex(p.str(name), std::regex::ECMAScript | std::regex::optimize);
  } catch (const std::regex_error& e) {
    throw ParamError(name, std::string("invalid regular expression: ") + e.what());
  }
}

class FilterNode final : public Node {
 public:
  explicit FilterNode(const NodeInit& init)
      : _min(init.params.integer("min_chars")),
        _max(init.params.has("max_chars") ? init.params.integer("max_chars") : -1),
        _match(compile(init.params, "match")), _exclude(compile(init.params, "exclude")) {
    if (_max >= 0 && _max < _min)
      throw ParamError("max_chars", "max_chars is smaller than min_chars");
  }

  void process(RecordPtr in, Emitter& out) override {
    int64_t n = static_cast<int64_t>(text::count_code_points(in->text));
    if (n < _min) return out.drop(Outcome::filtered, "shorter than min_chars");
    if (_max >= 0 && n > _max) return out.drop(Outcome::filtered, "longer than max_chars");
    if (_match && !std::regex_search(in->text, *_match))
      return out.drop(Outcome::filtered, "no match");
    if (_exclude && std::regex_search(in->text, *_exclude))
      return out.drop(Outcome::filtered, "excluded");
    out.emit(std::move(in));
  }

 private:
  int64_t _min, _max;
  std::optional<std::regex> _match, _exclude;
};

class DedupNode final : public Node {
 public:
  explicit DedupNode(const NodeInit&) {}
  void process(RecordPtr in, Emitter& out) override {
    // 128 bits from two seeds: a false "duplicate" would silently drop text.
    Key k{text::stable_hash64(in->text, 1), text::stable_hash64(in->text, 2)};
    bool first;
    {
      std::lock_guard lock(_mu);
      first = _seen.insert(k).second;
    }
    if (first) out.emit(std::move(in));
    else out.drop(Outcome::filtered, "duplicate text");
  }

 private:
  struct Key {
    uint64_t a, b;
    bool operator==(const Key& o) const { return a == o.a && b == o.b; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return static_cast<size_t>(k.a); }
  };
  std::mutex _mu;
  std::unordered_set<Key, KeyHash> _seen;
};

class PassNode final : public Node {
 public:
  explicit PassNode(const NodeInit&) {}
  void process(RecordPtr in, Emitter& out) override { out.emit(std::move(in)); }
};

}  // namespace

NodeTypeInfo util_filter_info() {
  NodeTypeInfo info;
  info.type = "util.filter";
  info.role = NodeRole::transform;
  info.description =
      "Drops records (outcome: filtered) by text length or regular expression (ECMAScript).";
  info.params = {
      with_min(param("min_chars", ParamType::integer, "0",
                     "keep records with at least this many characters"),
               0),
      with_min(param("max_chars", ParamType::integer, "null",
                     "keep records with at most this many characters"),
               0),
      param("match", ParamType::string, "null", "keep only records whose text matches this regex"),
      param("exclude", ParamType::string, "null", "drop records whose text matches this regex"),
  };
  info.make_node = [](const NodeInit& init) { return std::make_unique<FilterNode>(init); };
  return info;
}

NodeTypeInfo util_dedup_info() {
  NodeTypeInfo info;
  info.type = "util.dedup";
  info.role = NodeRole::transform;
  info.description = "Drops records whose exact text was already seen in this run (128-bit content "
                     "hash; outcome: filtered).";
  info.make_node = [](const NodeInit& init) { return std::make_unique<DedupNode>(init); };
  return info;
}

NodeTypeInfo util_pass_info() {
  NodeTypeInfo info;
  info.type = "util.pass";
  info.role = NodeRole::transform;
  info.description =
      "Forwards records unchanged (wiring, and measuring the engine's per-hop cost).";
  info.make_node = [](const NodeInit& init) { return std::make_unique<PassNode>(init); };
  return info;
}

}  // namespace sluice
