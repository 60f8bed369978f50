// One RAII type for an SQLite connection and its prepared statements, used by the checkpoint
// ledger (engine/state/checkpoint_ledger.cpp) and the index.sqlite sink and `sluice search`
// (nodes/index_sqlite*.cpp). Errors throw: a failed step never reads as "no row".
#pragma once

#include <sqlite3.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sluice::sqlite {

// Any SQLite failure; the message names the database's file.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// SQLITE_BUSY: another connection held a lock past the busy timeout, or SQLite gave up at once
// where waiting could deadlock. Its own type, so that a caller can start over on it alone.
struct Busy : Error {
  using Error::Error;
};

// Column `i` of the row `s` stands on, as text: "" for NULL (a damaged or foreign row must not
// crash a reader).
inline std::string column_text(sqlite3_stmt* s, int i) {
  const unsigned char* t = sqlite3_column_text(s, i);
  return t ? std::string(reinterpret_cast<const char*>(t),
                         static_cast<size_t>(sqlite3_column_bytes(s, i)))
           : std::string();
}

class Db {
 public:
  Db() = default;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db() { close(); }

  // Statements first: sqlite3_close_v2 would otherwise keep the file open until they are gone.
  void close() {
    for (auto* s : _stmts) sqlite3_finalize(s);
    _stmts.clear();
    if (_db) sqlite3_close_v2(_db);
    _db = nullptr;
  }

  // `what` names the file in every message ("the checkpoint ledger", "SQLite database").
  void open(const std::string& path, int flags, int busy_timeout_ms, std::string what = "SQLite") {
    close();
    _label = std::move(what) + " \"" + path + "\"";
    if (sqlite3_open_v2(path.c_str(), &_db, flags, nullptr) != SQLITE_OK) {
      std::string msg = _db ? sqlite3_errmsg(_db) : "out of memory";
      close();
      throw Error("cannot open " + _label + ": " + msg);
    }
    sqlite3_busy_timeout(_db, busy_timeout_ms);
  }
  void exec(const char* sql) {
    char* err = nullptr;
    if (int rc = sqlite3_exec(_db, sql, nullptr, nullptr, &err); rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errmsg(_db);
      sqlite3_free(err);
      raise(rc, msg);
    }
  }
  // Rolls back an open transaction, if any; never throws (for catch blocks and destructors).
  void rollback() noexcept {
    if (_db && !sqlite3_get_autocommit(_db))
      sqlite3_exec(_db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  // Prepared once and finalized with the connection.
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
  // The first column of the first row of `s` as text ("" when there is no row); resets `s`.
  std::string text(sqlite3_stmt* s) {
    std::string v;
    if (step(s) == SQLITE_ROW) v = column_text(s, 0);
    sqlite3_reset(s);
    return v;
  }
  sqlite3* get() { return _db; }
  const char* errmsg() { return sqlite3_errmsg(_db); }

 private:
  [[noreturn]] void fail(int rc) { raise(rc, sqlite3_errmsg(_db)); }
  [[noreturn]] void raise(int rc, const std::string& msg) {
    std::string full = _label + ": " + msg;
    if ((rc & 0xff) == SQLITE_BUSY) throw Busy(full);
    throw Error(full);
  }

  sqlite3* _db = nullptr;
  std::vector<sqlite3_stmt*> _stmts;
  std::string _label = "SQLite";
};

}  // namespace sluice::sqlite
