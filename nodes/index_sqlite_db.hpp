// index.sqlite's file: its schema and format marks, and the RAII connection both the sink
// (index_sqlite.cpp) and `sluice search` (index_sqlite_search.cpp) use. Not a public interface.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace sluice::sqlite_index {

constexpr const char* kFormat = "sluice-index";
// 3: chunks_fts may trail the chunks table; `fts_rowid` in sluice_meta is the highest rowid whose
// text it holds (version 2 kept the two in step, so a version-2 file starts at its max rowid).
// `vector_type` says how vectors are stored: f16 (new files by default) or f32 (all of version 2),
// little-endian, `dim` values per BLOB.
constexpr const char* kSchemaVersion = "3";
constexpr int kNewestSchema = 3;
// A full-text catch-up is due at least this often while rows wait for it.
constexpr auto kFtsInterval = std::chrono::seconds(10);

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS sluice_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
  rowid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  doc_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  text TEXT NOT NULL,
  meta TEXT NOT NULL,
  vector BLOB);
CREATE TABLE IF NOT EXISTS docs(doc_id TEXT PRIMARY KEY, meta TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, content='chunks', content_rowid='rowid');
-- The sink keeps chunks_fts in step itself: FTS5 sync triggers made inserts 3.5x slower.
DROP TRIGGER IF EXISTS chunks_ai;
DROP TRIGGER IF EXISTS chunks_ad;
DROP TRIGGER IF EXISTS chunks_au;
)sql";

// SQLITE_BUSY: another connection held a lock past the busy timeout, or SQLite gave up at once
// where waiting could deadlock. Its own type, so that opening can start over on it alone.
struct SqliteBusy : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// RAII for one connection and its statements.
class Db {
 public:
  Db() = default;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db() { close(); }

  void close() {
    for (auto* s : _stmts) sqlite3_finalize(s);
    _stmts.clear();
    if (_db) sqlite3_close_v2(_db);
    _db = nullptr;
  }

  void open(const std::string& path, int flags) {
    if (sqlite3_open_v2(path.c_str(), &_db, flags, nullptr) != SQLITE_OK)
      throw std::runtime_error("cannot open SQLite database \"" + path +
                               "\": " + (_db ? sqlite3_errmsg(_db) : "out of memory"));
    sqlite3_busy_timeout(_db, 10000);
  }
  void exec(const char* sql) {
    char* err = nullptr;
    if (int rc = sqlite3_exec(_db, sql, nullptr, nullptr, &err); rc != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      raise(rc, msg);
    }
  }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (int rc = sqlite3_prepare_v2(_db, sql, -1, &s, nullptr); rc != SQLITE_OK) fail(rc);
    _stmts.push_back(s);
    return s;
  }
  // Steps once: SQLITE_ROW (the row is there to read; the caller resets) or SQLITE_DONE.
  // An error, a lock included, throws rather than reading as "no row".
  int step(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) return rc;
    sqlite3_reset(s);
    fail(rc);
  }
  // A statement that returns nothing worth keeping: stepped once, reset, its bindings cleared.
  void run(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail(rc);
  }
  bool any_row(sqlite3_stmt* s) {
    bool found = step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return found;
  }
  bool has_table(const char* name) {
    sqlite3_stmt* s = prepare("SELECT 1 FROM sqlite_master WHERE name = ?");
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    return any_row(s);
  }
  std::string meta(const char* key) {
    sqlite3_stmt* s = prepare("SELECT value FROM sluice_meta WHERE key = ?");
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    std::string v;
    if (step(s) == SQLITE_ROW) v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    return v;
  }
  void set_meta(const char* key, const std::string& value) {
    sqlite3_stmt* s = prepare("INSERT INTO sluice_meta(key, value) VALUES (?, ?) "
                              "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value.c_str(), -1, SQLITE_TRANSIENT);
    run(s);
  }
  sqlite3* get() { return _db; }
  const char* errmsg() { return sqlite3_errmsg(_db); }

 private:
  [[noreturn]] void fail(int rc) { raise(rc, std::string("SQLite: ") + sqlite3_errmsg(_db)); }
  [[noreturn]] static void raise(int rc, const std::string& msg) {
    if ((rc & 0xff) == SQLITE_BUSY) throw SqliteBusy(msg);
    throw std::runtime_error(msg);
  }

  sqlite3* _db = nullptr;
  std::vector<sqlite3_stmt*> _stmts;
};

// Refuses a database that exists but was not written by sluice, so a typo cannot damage another
// application's data.
inline void check_foreign(Db& db, const std::string& path) {
  if (!db.has_table("sluice_meta")) {
    if (db.any_row(db.prepare("SELECT 1 FROM sqlite_master LIMIT 1")))
      throw std::runtime_error("\"" + path + "\" is an SQLite database but not a sluice index");
    return;
  }
  if (std::string format = db.meta("format"); format != kFormat)
    throw std::runtime_error("\"" + path + "\" is not a sluice index (format is \"" + format +
                             "\")");
}

// A file from a newer sluice may keep its rows in a way this one would break.
inline void check_schema_version(Db& db, const std::string& path) {
  std::string v = db.meta("schema_version");
  if (!v.empty() && std::atoi(v.c_str()) > kNewestSchema)
    throw std::runtime_error("\"" + path + "\" was written by a newer sluice (index schema " + v +
                             "; this one knows up to " + std::to_string(kNewestSchema) +
                             "): upgrade sluice");
}

}  // namespace sluice::sqlite_index
