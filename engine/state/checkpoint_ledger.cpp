#include "engine/state/checkpoint_ledger.hpp"

#include <sqlite3.h>

#include <filesystem>

namespace sluice {

namespace {

struct Stmt {
  sqlite3_stmt* s = nullptr;
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
      throw LedgerError(std::string("checkpoint ledger: ") + sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(s); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
};

}  // namespace

std::string CheckpointLedger::file_for(const std::string& state_dir, int shard_index,
                                       int shard_count) {
  return (std::filesystem::path(state_dir) /
          ("ledger-" + std::to_string(shard_index) + "-of-" + std::to_string(shard_count) + ".db"))
      .string();
}

CheckpointLedger::CheckpointLedger(const std::string& path, const std::string& config_hash,
                                   Mode mode, bool force)
    : _path(path) {
  std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  if (sqlite3_open_v2(path.c_str(), &_db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = _db ? sqlite3_errmsg(_db) : "out of memory";
    sqlite3_close_v2(_db);
    _db = nullptr;
    throw LedgerError("cannot open the checkpoint ledger \"" + path + "\": " + msg);
  }
  sqlite3_busy_timeout(_db, 30000);
  try {
    // A small page cache: ids arrive mostly in order, so the b-tree's working set is its right
    // edge, and the default 2 MiB cache would make a run's memory grow with its corpus.
    exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-256;"
         "CREATE TABLE IF NOT EXISTS ledger_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
         "CREATE TABLE IF NOT EXISTS done(doc_id TEXT PRIMARY KEY, outcome TEXT NOT NULL) WITHOUT "
         "ROWID;");
    std::string stored;
    {
      Stmt s(_db, "SELECT value FROM ledger_meta WHERE key = 'config_hash'");
      if (sqlite3_step(s.s) == SQLITE_ROW)
        stored = reinterpret_cast<const char*>(sqlite3_column_text(s.s, 0));
    }
    if (mode != Mode::fresh && !stored.empty() && stored != config_hash && !force)
      throw LedgerError(
          "the checkpoint ledger \"" + path + "\" was written by a different graph config (hash " +
          stored + ", this one is " + config_hash +
          "): resuming could mix two configs' output. Run without --resume to start over, or add "
          "--force to resume anyway");
    if (mode == Mode::fresh || stored != config_hash) {
      exec("BEGIN IMMEDIATE");
      if (mode == Mode::fresh) exec("DELETE FROM done");
      Stmt s(_db, "INSERT INTO ledger_meta(key, value) VALUES ('config_hash', ?1) "
                  "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
      sqlite3_bind_text(s.s, 1, config_hash.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(s.s) != SQLITE_DONE)
        throw LedgerError(std::string("checkpoint ledger: ") + sqlite3_errmsg(_db));
      exec("COMMIT");
    }
  } catch (...) {
    sqlite3_exec(_db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close_v2(_db);
    _db = nullptr;
    throw;
  }
}

CheckpointLedger::~CheckpointLedger() {
  try {
    commit();
  } catch (...) {
  }
  sqlite3_close_v2(_db);
}

void CheckpointLedger::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(_db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(_db);
    sqlite3_free(err);
    throw LedgerError("checkpoint ledger \"" + _path + "\": " + msg);
  }
}

std::unordered_set<std::string> CheckpointLedger::done_ids() {
  std::unordered_set<std::string> ids;
  Stmt s(_db, "SELECT doc_id FROM done WHERE outcome IN ('indexed', 'filtered')");
  while (sqlite3_step(s.s) == SQLITE_ROW)
    ids.emplace(reinterpret_cast<const char*>(sqlite3_column_text(s.s, 0)),
                static_cast<size_t>(sqlite3_column_bytes(s.s, 0)));
  return ids;
}

uint64_t CheckpointLedger::done_count() {
  Stmt s(_db, "SELECT count(*) FROM done");
  return sqlite3_step(s.s) == SQLITE_ROW ? static_cast<uint64_t>(sqlite3_column_int64(s.s, 0)) : 0;
}

void CheckpointLedger::record(const std::string& doc_id, Outcome outcome) {
  std::lock_guard lock(_mu);
  _buffer.emplace_back(doc_id, outcome);
}

void CheckpointLedger::commit() {
  std::vector<std::pair<std::string, Outcome>> batch;
  {
    std::lock_guard lock(_mu);
    batch.swap(_buffer);
  }
  if (batch.empty() || !_db) return;
  exec("BEGIN IMMEDIATE");
  try {
    Stmt s(_db, "INSERT INTO done(doc_id, outcome) VALUES (?1, ?2) "
                "ON CONFLICT(doc_id) DO UPDATE SET outcome = excluded.outcome");
    for (const auto& [id, o] : batch) {
      sqlite3_bind_text(s.s, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
      sqlite3_bind_text(s.s, 2, outcome_name(o), -1, SQLITE_STATIC);
      if (sqlite3_step(s.s) != SQLITE_DONE)
        throw LedgerError(std::string("checkpoint ledger: ") + sqlite3_errmsg(_db));
      sqlite3_reset(s.s);
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(_db, "ROLLBACK", nullptr, nullptr, nullptr);
    std::lock_guard lock(_mu);
    _buffer.insert(_buffer.begin(), batch.begin(), batch.end());
    throw;
  }
}

}  // namespace sluice
