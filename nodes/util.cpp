#include "nodes/util.hpp"

// GCC 12 reports a false maybe-uninitialized inside libstdc++'s <regex> when built with
// sanitizers at -O1 (the std::function inside _State is moved before GCC can see it set).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <unordered_set>

#include "engine/record_template.hpp"
#include "engine/state/sqlite_db.hpp"
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
      : _field(init.params.str("field")), _min(init.params.integer("min_chars")),
        _max(init.params.has("max_chars") ? init.params.integer("max_chars") : -1),
        _match(compile(init.params, "match")), _exclude(compile(init.params, "exclude")) {
    if (_max >= 0 && _max < _min)
      throw ParamError("max_chars", "max_chars is smaller than min_chars");
    if (_field != "text" && _field != "id" && _field != "doc_id" &&
        !(_field.rfind("meta.", 0) == 0 && _field.size() > 5))
      throw ParamError("field", "field is text, id, doc_id or meta.NAME, not \"" + _field + "\"");
    if (_field.rfind("meta.", 0) == 0) _meta_name = _field.substr(5);
  }

  void process(RecordPtr in, Emitter& out) override {
    std::string meta_value;
    const std::string* value = &in->text;
    if (_field == "id") value = &in->id;
    else if (_field == "doc_id") value = &in->doc_id;
    else if (!_meta_name.empty()) value = &(meta_value = in->meta.get_text(_meta_name));
    const std::string of = _field == "text" ? "" : " (" + _field + ")";
    int64_t n = static_cast<int64_t>(text::count_code_points(*value));
    if (n < _min) return out.drop(Outcome::filtered, "shorter than min_chars" + of);
    if (_max >= 0 && n > _max) return out.drop(Outcome::filtered, "longer than max_chars" + of);
    if (_match && !std::regex_search(*value, *_match))
      return out.drop(Outcome::filtered, "no match" + of);
    if (_exclude && std::regex_search(*value, *_exclude))
      return out.drop(Outcome::filtered, "excluded" + of);
    out.emit(std::move(in));
  }

 private:
  std::string _field, _meta_name;
  int64_t _min, _max;
  std::optional<std::regex> _match, _exclude;
};

// The keys util.dedup claimed, in one SQLite file shared by every process and shard of a job
// (in its state directory): the first record to claim a key owns it, and a record that finds
// its own id there (the same record again, after --resume) keeps it.
class SharedKeys {
 public:
  SharedKeys(const std::string& path, const std::string& definition) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    _db.open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, 60000,
             "util.dedup's keys");
    _db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-2048;"
             "CREATE TABLE IF NOT EXISTS dedup_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);"
             "CREATE TABLE IF NOT EXISTS seen(k BLOB PRIMARY KEY, owner TEXT NOT NULL) "
             "WITHOUT ROWID;");
    // Keys made another way (the `key` param changed) mean nothing now: start over.
    _db.exec("BEGIN IMMEDIATE");
    try {
      sqlite3_stmt* get = _db.prepare("SELECT value FROM dedup_meta WHERE name = 'key'");
      if (_db.text(get) != definition) {
        _db.exec("DELETE FROM seen");
        sqlite3_stmt* put = _db.prepare("INSERT INTO dedup_meta(name, value) VALUES ('key', ?1) "
                                        "ON CONFLICT(name) DO UPDATE SET value = excluded.value");
        sqlite3_bind_text(put, 1, definition.c_str(), -1, SQLITE_TRANSIENT);
        _db.run(put);
      }
      _db.exec("COMMIT");
    } catch (...) {
      _db.rollback();
      throw;
    }
    _insert = _db.prepare("INSERT INTO seen(k, owner) VALUES (?1, ?2) ON CONFLICT(k) DO NOTHING");
    _owner = _db.prepare("SELECT owner FROM seen WHERE k = ?1");
  }

  // True when `owner` is the first record with this key, or was before.
  bool claim(const unsigned char (&key)[16], const std::string& owner) {
    std::lock_guard lock(_mu);
    sqlite3_bind_blob(_insert, 1, key, 16, SQLITE_STATIC);
    sqlite3_bind_text(_insert, 2, owner.data(), static_cast<int>(owner.size()), SQLITE_STATIC);
    _db.run(_insert);
    if (sqlite3_changes(_db.get()) == 1) return true;
    sqlite3_bind_blob(_owner, 1, key, 16, SQLITE_STATIC);
    std::string first = _db.text(_owner);
    sqlite3_clear_bindings(_owner);
    return first == owner;
  }

 private:
  std::mutex _mu;
  sqlite::Db _db;
  sqlite3_stmt* _insert = nullptr;
  sqlite3_stmt* _owner = nullptr;
};

class DedupNode final : public Node {
 public:
  explicit DedupNode(const NodeInit& init) : _key(init.params.str("key")) {
    if (_key != "text") {
      if (_key.rfind("meta.", 0) == 0 && _key.size() > 5 && _key.find('{') == std::string::npos)
        _key = "{" + _key + "}";
      if (_key.find('{') == std::string::npos)
        throw ParamError("key", "key is text, meta.NAME or a template such as \"{meta.title}|"
                                "{meta.year}\", not \"" +
                                    _key + "\"");
      try {
        _template.emplace(_key);
      } catch (const std::invalid_argument& e) {
        throw ParamError("key", e.what());
      }
    }
    const bool job = init.params.str("scope") == "job";
    if (job && !init.state_dir.empty())
      _shared = std::make_unique<SharedKeys>(init.state_dir + "/dedup." + init.id + ".db", _key);
  }

  void process(RecordPtr in, Emitter& out) override {
    const std::string value = _template ? _template->expand(*in, false) : std::string();
    const std::string& k = _template ? value : in->text;
    // 128 bits from two seeds: a false "duplicate" would silently drop text.
    const uint64_t a = text::stable_hash64(k, 1), b = text::stable_hash64(k, 2);
    bool first;
    if (_shared) {
      unsigned char key[16];
      for (int i = 0; i < 8; ++i) {
        key[i] = static_cast<unsigned char>(a >> (8 * i));
        key[8 + i] = static_cast<unsigned char>(b >> (8 * i));
      }
      first = _shared->claim(key, in->id);
    } else {
      std::lock_guard lock(_mu);
      first = _seen.insert(Key{a, b}).second;
    }
    if (first) out.emit(std::move(in));
    else out.drop(Outcome::filtered, _template ? "duplicate key" : "duplicate text");
  }

 private:
  struct Key {
    uint64_t a, b;
    bool operator==(const Key& o) const { return a == o.a && b == o.b; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return static_cast<size_t>(k.a); }
  };
  std::string _key;
  std::optional<RecordTemplate> _template;
  std::unique_ptr<SharedKeys> _shared;  // scope "job" in a run with a state directory
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
      "Drops records (outcome: filtered) by the length of their text (or of a meta field) or a "
      "regular expression (ECMAScript).";
  info.params = {
      param("field", ParamType::string, "\"text\"",
            "what the tests look at: text, id, doc_id or meta.NAME (a missing meta field is \"\")"),
      with_min(param("min_chars", ParamType::integer, "0",
                     "keep records with at least this many characters in field"),
               0),
      with_min(param("max_chars", ParamType::integer, "null",
                     "keep records with at most this many characters"),
               0),
      param("match", ParamType::string, "null", "keep only records whose field matches this regex"),
      param("exclude", ParamType::string, "null", "drop records whose field matches this regex"),
  };
  info.make_node = [](const NodeInit& init) { return std::make_unique<FilterNode>(init); };
  return info;
}

NodeTypeInfo util_dedup_info() {
  NodeTypeInfo info;
  info.type = "util.dedup";
  info.role = NodeRole::transform;
  info.description =
      "Drops a record whose key (its exact text, a meta field or a template; 128-bit hash) an "
      "earlier record had, once across every process and shard of a job (outcome: filtered).";
  info.params = {
      param("key", ParamType::string, "\"text\"",
            "what makes two records the same: text, meta.NAME, or a template of {id}, {doc_id} "
            "and {meta.NAME} (e.g. \"{meta.doi}\")"),
      with_choices(param("scope", ParamType::string, "\"job\"",
                         "job: keys shared by every process and shard through the state "
                         "directory (dedup.<node id>.db), kept across --resume; process: this "
                         "process's run only"),
                   {"job", "process"}),
  };
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
