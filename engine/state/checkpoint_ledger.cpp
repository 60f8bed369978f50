#include "engine/state/checkpoint_ledger.hpp"

#include <filesystem>

#include "engine/state/sqlite_db.hpp"

namespace sluice {

std::string CheckpointLedger::file_for(const std::string& state_dir, int shard_index,
                                       int shard_count) {
  return (std::filesystem::path(state_dir) /
          ("ledger-" + std::to_string(shard_index) + "-of-" + std::to_string(shard_count) + ".db"))
      .string();
}

CheckpointLedger::CheckpointLedger(const std::string& path, const std::string& config_hash,
                                   Mode mode, bool force)
    : _path(path), _db(std::make_unique<sqlite::Db>()) {
  std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  guarded([&] {
    _db->open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, 30000,
              "the checkpoint ledger");
    // A small page cache: ids arrive mostly in order, so the b-tree's working set is its right
    // edge, and the default 2 MiB cache would make a run's memory grow with its corpus.
    _db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-256;"
              "CREATE TABLE IF NOT EXISTS ledger_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
              "CREATE TABLE IF NOT EXISTS done(doc_id TEXT PRIMARY KEY, outcome TEXT NOT NULL) "
              "WITHOUT ROWID;");
    std::string stored =
        _db->text(_db->prepare("SELECT value FROM ledger_meta WHERE key = 'config_hash'"));
    if (mode != Mode::fresh && !stored.empty() && stored != config_hash && !force)
      throw LedgerError(
          "the checkpoint ledger \"" + path + "\" was written by a different graph config (hash " +
          stored + ", this one is " + config_hash +
          "): resuming could mix two configs' output. Run without --resume to start over, or add "
          "--force to resume anyway");
    if (mode == Mode::fresh || stored != config_hash) {
      _db->exec("BEGIN IMMEDIATE");
      if (mode == Mode::fresh) _db->exec("DELETE FROM done");
      sqlite3_stmt* s =
          _db->prepare("INSERT INTO ledger_meta(key, value) VALUES ('config_hash', ?1) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
      sqlite3_bind_text(s, 1, config_hash.c_str(), -1, SQLITE_TRANSIENT);
      _db->run(s);
      _db->exec("COMMIT");
    }
  });
}

CheckpointLedger::~CheckpointLedger() {
  try {
    commit();
  } catch (...) {
  }
}

template <class F>
void CheckpointLedger::guarded(F&& fn) {
  try {
    fn();
  } catch (const LedgerError&) {
    _db->rollback();
    throw;
  } catch (const sqlite::Error& e) {
    _db->rollback();
    throw LedgerError(e.what());
  }
}

std::unordered_set<std::string> CheckpointLedger::done_ids() {
  std::unordered_set<std::string> ids;
  guarded([&] {
    sqlite3_stmt* s =
        _db->prepare("SELECT doc_id FROM done WHERE outcome IN ('indexed', 'filtered')");
    while (_db->step(s) == SQLITE_ROW) ids.insert(sqlite::column_text(s, 0));
    sqlite3_reset(s);
  });
  return ids;
}

uint64_t CheckpointLedger::done_count() {
  uint64_t n = 0;
  guarded([&] {
    sqlite3_stmt* s = _db->prepare("SELECT count(*) FROM done");
    if (_db->step(s) == SQLITE_ROW) n = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    sqlite3_reset(s);
  });
  return n;
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
  if (batch.empty() || !_db->get()) return;
  try {
    guarded([&] {
      if (!_insert)
        _insert = _db->prepare("INSERT INTO done(doc_id, outcome) VALUES (?1, ?2) "
                               "ON CONFLICT(doc_id) DO UPDATE SET outcome = excluded.outcome");
      _db->exec("BEGIN IMMEDIATE");
      for (const auto& [id, o] : batch) {
        sqlite3_bind_text(_insert, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
        sqlite3_bind_text(_insert, 2, outcome_name(o), -1, SQLITE_STATIC);
        _db->run(_insert);
      }
      _db->exec("COMMIT");
    });
  } catch (...) {
    std::lock_guard lock(_mu);
    _buffer.insert(_buffer.begin(), batch.begin(), batch.end());
    throw;
  }
}

}  // namespace sluice
