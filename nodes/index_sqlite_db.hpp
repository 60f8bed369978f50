// index.sqlite's file: its schema and format marks, and the meta helpers both the sink
// (index_sqlite.cpp) and `sluice search` (index_sqlite_search.cpp) use. Not a public interface.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/state/sqlite_db.hpp"

namespace sluice::sqlite_index {

constexpr const char* kFormat = "sluice-index";
// 3: chunks_fts may trail the chunks table; `fts_rowid` in sluice_meta is the highest rowid whose
// text it holds (version 2 kept the two in step, so a version-2 file starts at its max rowid).
// `vector_type` says how vectors are stored: f16 (new files by default) or f32 (all of version 2),
// little-endian, `dim` values per BLOB.
// 4: chunks and docs carry `gen`, the run (`run_gen` in sluice_meta, one more per sink opening)
// that last wrote them; a chunk older than its document is stale and goes when a run commits.
constexpr const char* kSchemaVersion = "4";
constexpr int kNewestSchema = 4;
// How long a connection waits for another's lock before SQLITE_BUSY.
constexpr int kBusyTimeoutMs = 10000;
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
  vector BLOB,
  gen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS docs(doc_id TEXT PRIMARY KEY, meta TEXT NOT NULL,
  gen INTEGER NOT NULL DEFAULT 0);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, content='chunks', content_rowid='rowid');
-- The sink keeps chunks_fts in step itself: FTS5 sync triggers made inserts 3.5x slower.
DROP TRIGGER IF EXISTS chunks_ai;
DROP TRIGGER IF EXISTS chunks_ad;
DROP TRIGGER IF EXISTS chunks_au;
)sql";

using sqlite::Busy;
using sqlite::Db;

// sluice_meta's value for `key`, or "" when it has none.
inline std::string meta(Db& db, const char* key) {
  sqlite3_stmt* s = db.prepare("SELECT value FROM sluice_meta WHERE key = ?");
  sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
  return db.text(s);
}
inline void set_meta(Db& db, const char* key, const std::string& value) {
  sqlite3_stmt* s = db.prepare("INSERT INTO sluice_meta(key, value) VALUES (?, ?) "
                               "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, value.c_str(), -1, SQLITE_TRANSIENT);
  db.run(s);
}

// Refuses a database that exists but was not written by sluice, so a typo cannot damage another
// application's data.
inline void check_foreign(Db& db, const std::string& path) {
  if (!db.has_table("sluice_meta")) {
    if (db.any_row(db.prepare("SELECT 1 FROM sqlite_master LIMIT 1")))
      throw std::runtime_error("\"" + path + "\" is an SQLite database but not a sluice index");
    return;
  }
  if (std::string format = meta(db, "format"); format != kFormat)
    throw std::runtime_error("\"" + path + "\" is not a sluice index (format is \"" + format +
                             "\")");
}

// A file from a newer sluice may keep its rows in a way this one would break.
inline void check_schema_version(Db& db, const std::string& path) {
  std::string v = meta(db, "schema_version");
  if (!v.empty() && std::atoi(v.c_str()) > kNewestSchema)
    throw std::runtime_error("\"" + path + "\" was written by a newer sluice (index schema " + v +
                             "; this one knows up to " + std::to_string(kNewestSchema) +
                             "): upgrade sluice");
}

}  // namespace sluice::sqlite_index
