// index.sqlite's file: its schema and format marks, and the meta helpers both the sink
// (index_sqlite.cpp) and `sluice search` (index_sqlite_search.cpp) use. Not a public interface.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "engine/state/sqlite_db.hpp"
#include "engine/vector/float16.hpp"

namespace sluice::sqlite_index {

constexpr const char* kFormat = "sluice-index";
// 3: chunks_fts may trail the chunks table; `fts_rowid` in sluice_meta is the highest rowid whose
// text it holds (version 2 kept the two in step, so a version-2 file starts at its max rowid).
// `vector_type` says how vectors are stored: f16 (new files by default) or f32 (all of version 2),
// little-endian, `dim` values per BLOB.
// 4: chunks and docs carry `gen`, the run (`run_gen` in sluice_meta, one more per sink opening)
// that last wrote them; a chunk older than its document is stale and goes when a run commits.
// 5: tables ann_log and ann_key, and `content_gen` in sluice_meta, which every writer must keep
// (the nearest-neighbour graph and the bm25 postings trust them): a sluice that knows only 4
// must not write to the file.
constexpr const char* kSchemaVersion = "5";
constexpr int kNewestSchema = 5;
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
-- Rows whose vector changed since the nearest-neighbour graph (`<db>.hnsw`) last took them in:
-- written only while the index has a graph (`ann_seq` in sluice_meta; nodes/index_sqlite_ann.hpp).
CREATE TABLE IF NOT EXISTS ann_log(seq INTEGER PRIMARY KEY AUTOINCREMENT, rowid INTEGER NOT NULL);
-- Each row's vector's key: the graph holds each distinct vector once, labelled by its key.
CREATE TABLE IF NOT EXISTS ann_key(rowid INTEGER PRIMARY KEY, key INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ann_key_by_key ON ann_key(key);
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

// The most dimensions an index may record.
constexpr int kMaxIndexDim = 65536;

// The embedder an index records: its JSON, type, dim and (embed.fasttext) model.
struct IndexEmbedder {
  std::string spec, type, model;
  int dim = 0;
};

inline IndexEmbedder index_embedder(Db& db) {
  IndexEmbedder e;
  e.spec = meta(db, "embedder");
  if (e.spec.empty())
    throw std::runtime_error(
        "the index has no vectors (its graph has no embed node); use --mode bm25");
  rapidjson::Document d;
  d.Parse(e.spec.c_str());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("type") || !d["type"].IsString() ||
      !d.HasMember("dim") || !d["dim"].IsInt())
    throw std::runtime_error("the index records an unreadable embedder: " + e.spec);
  e.type = d["type"].GetString();
  e.dim = d["dim"].GetInt();
  if (e.dim < 1 || e.dim > kMaxIndexDim)
    throw std::runtime_error("the index is damaged: its embedder's dim is " +
                             std::to_string(e.dim) + " (1 to " + std::to_string(kMaxIndexDim) +
                             ")");
  if (e.type == "embed.fasttext") {
    if (!d.HasMember("model") || !d["model"].IsString())
      throw std::runtime_error("the index records an unreadable embedder: " + e.spec);
    e.model = d["model"].GetString();
  }
  return e;
}

// Reads column `col` of `s` as a vector of `dim` values stored as halves (`half`) or floats
// into `out`; false for a NULL or a BLOB of another size (a damaged row is skipped, never read
// past its end).
inline bool column_vector(sqlite3_stmt* s, int col, int dim, bool half, std::vector<float>& out) {
  const int width = half ? 2 : 4;
  const void* blob = sqlite3_column_blob(s, col);
  if (!blob || sqlite3_column_bytes(s, col) != dim * width) return false;
  out.resize(static_cast<size_t>(dim));
  if (half) {
    const auto* v = static_cast<const unsigned char*>(blob);
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, v + 2 * i, 2);
      out[i] = half_to_float(h);
    }
  } else {
    std::memcpy(out.data(), blob, out.size() * sizeof(float));
  }
  return true;
}

// Whether the index stores halves: its `vector_type` (f16 or f32; a version-2 file has f32).
inline bool stores_halves(Db& db) {
  std::string type_name = meta(db, "vector_type");
  if (!type_name.empty() && type_name != "f16" && type_name != "f32")
    throw std::runtime_error("the index stores vectors as \"" + type_name +
                             "\", which this sluice cannot read");
  return type_name == "f16";
}

}  // namespace sluice::sqlite_index
