#include "nodes/index_sqlite.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include <rapidjson/document.h>

#include "engine/graph/batcher.hpp"
#include "engine/vector/float16.hpp"
#include "nodes/embed_hash.hpp"
#include "nodes/index_sqlite_ann.hpp"
#include "nodes/index_sqlite_bm25.hpp"
#include "nodes/index_sqlite_db.hpp"

namespace sluice {

namespace {

using namespace sqlite_index;

// Copies committed WAL frames into the database file on its own thread and connection, so that
// the disk writes and fsyncs of checkpointing overlap the sink's work instead of all waiting for
// the close. PASSIVE: it never blocks the writer or waits for readers; frames it cannot copy yet
// are left to the next request or to the final checkpoint at close.
class BackgroundCheckpointer {
 public:
  explicit BackgroundCheckpointer(const std::string& path) {
    _db.open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, kBusyTimeoutMs, "the index");
    // A connection knows the file is in WAL mode only once it has read it.
    _db.exec("SELECT 1 FROM sqlite_master LIMIT 1");
    _thread = std::thread([this] { loop(); });
  }
  ~BackgroundCheckpointer() {
    {
      std::lock_guard lock(_mu);
      _stop = true;
    }
    _cv.notify_one();
    _thread.join();
  }
  void request() {
    {
      std::lock_guard lock(_mu);
      _requested = true;
    }
    _cv.notify_one();
  }

 private:
  void loop() {
    std::unique_lock lock(_mu);
    for (;;) {
      _cv.wait(lock, [&] { return _requested || _stop; });
      if (_stop) return;
      _requested = false;
      lock.unlock();
      sqlite3_wal_checkpoint_v2(_db.get(), "main", SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      lock.lock();
    }
  }

  Db _db;
  std::mutex _mu;
  std::condition_variable _cv;
  bool _requested = false;
  bool _stop = false;
  std::thread _thread;
};

AnnPolicy policy(const std::string& v) {
  return v == "always" ? AnnPolicy::always : v == "never" ? AnnPolicy::never : AnnPolicy::automatic;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

class SqliteIndex final : public Node {
 public:
  explicit SqliteIndex(const NodeInit& init)
      : _path(init.params.str("path")),
        _batcher(static_cast<size_t>(init.params.integer("batch")),
                 static_cast<int>(init.params.integer("linger_ms"))),
        _fts_batch(init.params.integer("fts_batch")), _vector_type(init.params.str("vector_type")),
        _ann(policy(init.params.str("ann"))), _bm25(policy(init.params.str("bm25_index"))) {
    if (_path.empty()) throw ParamError("path", "path must not be empty");
  }

  void open(NodeOutput& out) override {
    Node::open(out);
    std::filesystem::path p(_path);
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    // A launcher's workers open one new file at once. Switching it to WAL and creating the
    // schema take locks that SQLite may refuse at once (SQLITE_BUSY, no busy wait, where waiting
    // could deadlock): then start over, for as long as the busy timeout.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      try {
        open_once();
        return;
      } catch (const Busy&) {
        if (std::chrono::steady_clock::now() >= deadline) throw;
      }
      _db.close();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void open_once() {
    _max_rowid = nullptr;  // a retry's connection is new
    _ann_log = nullptr;
    _ann_seq_get = nullptr;
    if (std::filesystem::exists(_path) && std::filesystem::file_size(_path) > 0) {
      // Check read-only first: never create tables in someone else's database.
      Db probe;
      probe.open(_path, SQLITE_OPEN_READONLY, kBusyTimeoutMs, "the index");
      check_foreign(probe, _path);
    }
    _db.open(_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
             kBusyTimeoutMs, "the index");
    // 16 KiB pages (new files only): a quarter of the write syscalls of the 4 KiB default.
    _db.exec("PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
    // The schema and its format mark in one transaction: another process opening the same new
    // file (a launcher's workers share one index) sees nothing or a marked sluice index, never
    // tables without their mark, which it would refuse as foreign.
    in_transaction([&] {
      _db.exec(kSchema);
      if (meta(_db, "format").empty()) {
        set_meta(_db, "format", kFormat);
        set_meta(_db, "schema_version", kSchemaVersion);
        set_meta(_db, "fts_rowid", "0");
        set_meta(_db, "vector_type", _vector_type.empty() ? "f16" : _vector_type);
      }
      check_schema_version(_db, _path);
      if (!has_column("chunks", "gen")) {  // version 3 and older
        _db.exec("ALTER TABLE chunks ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;"
                 "ALTER TABLE docs ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;");
        set_meta(_db, "schema_version", kSchemaVersion);
      }
      // Version 4 gains its tables from kSchema above; the mark keeps older writers out.
      if (std::atoi(meta(_db, "schema_version").c_str()) < kNewestSchema)
        set_meta(_db, "schema_version", kSchemaVersion);
      std::string last = meta(_db, "run_gen");
      _gen = (last.empty() ? 0 : std::atoll(last.c_str())) + 1;
      set_meta(_db, "run_gen", std::to_string(_gen));
      if (meta(_db, "fts_rowid").empty()) {
        // Version 2: every row is in chunks_fts, and vectors are float32.
        set_meta(_db, "fts_rowid", std::to_string(max_rowid()));
        set_meta(_db, "vector_type", "f32");
        set_meta(_db, "schema_version", kSchemaVersion);
      }
    });
    std::string stored = meta(_db, "vector_type");
    if (!_vector_type.empty() && _vector_type != stored)
      throw std::runtime_error(
          "\"" + _path + "\" stores vectors as " + stored + ", not " + _vector_type +
          ": leave vector_type out to follow the file, or write to a new path");
    _half = stored == "f16";
    _embedder = meta(_db, "embedder");
    _select = _db.prepare("SELECT rowid, text, doc_id, seq, meta, vector, gen FROM chunks "
                          "WHERE id = ?1");
    _insert = _db.prepare("INSERT INTO chunks(id, doc_id, seq, text, meta, vector, gen) VALUES "
                          "(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO NOTHING");
    _update = _db.prepare("UPDATE chunks SET doc_id = ?2, seq = ?3, text = ?4, meta = ?5, vector = "
                          "?6, gen = ?7 WHERE rowid = ?1");
    _touch = _db.prepare("UPDATE chunks SET gen = ?2 WHERE rowid = ?1");
    _doc_gen = _db.prepare("SELECT gen FROM docs WHERE doc_id = ?1");
    _fts_insert = _db.prepare("INSERT INTO chunks_fts(rowid, text) VALUES (?1, ?2)");
    _fts_delete =
        _db.prepare("INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', ?1, ?2)");
    _upsert_doc =
        _db.prepare("INSERT INTO docs(doc_id, meta, gen) VALUES (?1, ?2, ?3) ON CONFLICT(doc_id) "
                    "DO UPDATE SET meta = excluded.meta, gen = excluded.gen");
    _fts_rowid_get =
        _db.prepare("SELECT CAST(value AS INTEGER) FROM sluice_meta WHERE key = 'fts_rowid'");
    _fts_rowid_set = _db.prepare("UPDATE sluice_meta SET value = ?1 WHERE key = 'fts_rowid'");
    _fts_catch_up = _db.prepare("SELECT rowid, text FROM chunks WHERE rowid > ?1 AND rowid <= ?2");
    // Rows an earlier run committed but did not live to add to chunks_fts.
    in_transaction([&] { catch_up_text(); });
    _checkpointer = std::make_unique<BackgroundCheckpointer>(_path);
  }

  // Deletes every chunk older than its document: those an earlier run wrote that the run which
  // last replaced the document did not write again (fewer chunks, other ids). In steps of
  // kStaleStep rows, each in one transaction with the full-text catch-up, so the rowid mark stays
  // exact.
  void commit() override {
    std::lock_guard lock(_write_mu);
    _settled = true;
    if (!_db.get() || meta(_db, "stale_check") != "1") return;
    sqlite3_stmt* stale =
        _db.prepare("SELECT c.rowid, c.text FROM chunks c JOIN docs d ON d.doc_id = c.doc_id "
                    "WHERE c.gen < d.gen LIMIT 4096");
    sqlite3_stmt* del = _db.prepare("DELETE FROM chunks WHERE rowid = ?1");
    for (bool more = true; more;) {
      in_transaction([&] {
        catch_up_text();  // every row up to the max is in chunks_fts now
        const bool tracked = ann_tracked();
        std::vector<std::pair<int64_t, std::string>> rows;
        while (_db.step(stale) == SQLITE_ROW)
          rows.emplace_back(sqlite3_column_int64(stale, 0), sqlite::column_text(stale, 1));
        sqlite3_reset(stale);
        for (const auto& [rowid, text] : rows) {
          sqlite3_bind_int64(_fts_delete, 1, rowid);
          sqlite3_bind_text(_fts_delete, 2, text.data(), static_cast<int>(text.size()),
                            SQLITE_STATIC);
          _db.run(_fts_delete);
          sqlite3_bind_int64(del, 1, rowid);
          _db.run(del);
          if (tracked) log_ann(rowid);
        }
        // Rows above the new max were deleted, their terms with them: the mark moves down, so
        // a later row that reuses one of their rowids is still caught up.
        _fts_rowid = max_rowid();
        sqlite3_bind_int64(_fts_rowid_set, 1, _fts_rowid);
        _db.run(_fts_rowid_set);
        more = !rows.empty();
        if (more) bump_content_gen();
        if (!more) set_meta(_db, "stale_check", "0");
      });
    }
  }

  void close() override {
    std::lock_guard lock(_write_mu);
    if (!_db.get()) return;
    // The rows since the last catch-up: searchable by the time the run's report is written.
    if (_checkpointer) _checkpointer->request();
    in_transaction([&] { catch_up_text(); });
    _checkpointer.reset();
    // The nearest-neighbour graph takes in the run's rows, once every document reached its
    // outcome (an interrupted run leaves them logged: search scores them exactly meanwhile, and
    // the next run takes them in). A failure costs speed, not data: said, not fatal.
    if (_settled) {
      try {
        const std::string id = _output->node_id();
        auto say = [&](const std::string& line) {
          std::fprintf(stderr, "sluice: node \"%s\": %s\n", id.c_str(), line.c_str());
        };
        const AnnUpkeep r = keep_ann(_db, _path, _ann, false, say);
        if (r.action == AnnUpkeep::Action::built)
          say("nearest-neighbour graph of " + std::to_string(r.changed) + " vectors (" +
              std::to_string(r.nodes) + " distinct) built in " + seconds_text(r.seconds));
      } catch (const std::exception& e) {
        _output->warn(std::string("the nearest-neighbour graph was not updated (search scans "
                                  "every vector until it is): ") +
                      e.what());
      }
      try {
        keep_bm25(_db, _path, _bm25, false, [&](const std::string& line) {
          std::fprintf(stderr, "sluice: node \"%s\": %s\n", _output->node_id().c_str(),
                       line.c_str());
        });
      } catch (const std::exception& e) {
        _output->warn(std::string("the bm25 postings were not written (FTS5 ranks every match "
                                  "until they are): ") +
                      e.what());
      }
    }
    _db.close();
  }

  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    auto batch = _batcher.add(std::move(in));
    if (!batch.empty()) write(batch.items);
  }

  void flush(bool force) override {
    auto batch = _batcher.take_due(force);
    if (!batch.empty()) write(batch.items);
  }

  bool has_pending() const override { return _batcher.pending(); }

 private:
  // `fn` in one write transaction, rolled back if it throws.
  template <class Fn>
  void in_transaction(Fn&& fn) {
    _db.exec("BEGIN IMMEDIATE");
    try {
      fn();
      _db.exec("COMMIT");
    } catch (...) {
      _db.rollback();
      throw;
    }
  }

  bool has_column(const char* table, const char* column) {
    sqlite3_stmt* s = _db.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2");
    sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, column, -1, SQLITE_STATIC);
    bool found = _db.step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return found;
  }

  int64_t max_rowid() {
    if (!_max_rowid) _max_rowid = _db.prepare("SELECT coalesce(max(rowid), 0) FROM chunks");
    _db.step(_max_rowid);
    int64_t v = sqlite3_column_int64(_max_rowid, 0);
    sqlite3_reset(_max_rowid);
    return v;
  }

  int64_t read_fts_rowid() {
    if (_db.step(_fts_rowid_get) != SQLITE_ROW) {
      sqlite3_reset(_fts_rowid_get);
      throw std::runtime_error("the index has lost its fts_rowid mark in sluice_meta");
    }
    int64_t v = sqlite3_column_int64(_fts_rowid_get, 0);
    sqlite3_reset(_fts_rowid_get);
    return v;
  }

  // Adds the text of every row above the mark to chunks_fts and moves the mark, inside the
  // caller's write transaction. FTS5 writes a segment per transaction that touches it: thousands
  // of rows at once make one segment where per-batch inserts made one per batch, and merging
  // those was most of the sink's time. Another process's rows are caught up too; the
  // write lock makes each row's text go in exactly once.
  void catch_up_text() {
    int64_t from = read_fts_rowid();
    int64_t to = max_rowid();
    if (to > from) {
      // Row by row from a cursor: INSERT ... SELECT into the virtual table would first copy every
      // text into a temporary table.
      sqlite3_bind_int64(_fts_catch_up, 1, from);
      sqlite3_bind_int64(_fts_catch_up, 2, to);
      try {
        while (_db.step(_fts_catch_up) == SQLITE_ROW) {
          sqlite3_bind_int64(_fts_insert, 1, sqlite3_column_int64(_fts_catch_up, 0));
          sqlite3_bind_text(_fts_insert, 2,
                            static_cast<const char*>(sqlite3_column_blob(_fts_catch_up, 1)),
                            sqlite3_column_bytes(_fts_catch_up, 1), SQLITE_STATIC);
          _db.run(_fts_insert);
        }
      } catch (...) {
        sqlite3_reset(_fts_catch_up);
        throw;
      }
      sqlite3_reset(_fts_catch_up);
      sqlite3_bind_int64(_fts_rowid_set, 1, to);
      _db.run(_fts_rowid_set);
    }
    _fts_rowid = to;
    _rows_since_catch_up = 0;
    _last_catch_up = std::chrono::steady_clock::now();
  }

  void write(std::vector<RecordPtr>& batch) {
    std::lock_guard lock(_write_mu);
    std::string error;
    try {
      check_embedder(batch);
      in_transaction([&] { write_rows(batch); });
      _checkpointer->request();
    } catch (const std::exception& e) {
      error = e.what();
    }
    // Acknowledge only after the commit: a record is indexed when it is durable in the file.
    for (const auto& r : batch) {
      if (error.empty()) _output->finish(r, Outcome::indexed);
      else _output->finish(r, Outcome::dead_lettered, error);
    }
    if (!error.empty()) _output->fail_run("writing \"" + _path + "\" failed: " + error);
  }

  void write_rows(const std::vector<RecordPtr>& batch) {
    _fts_rowid = read_fts_rowid();
    _ann_tracked = ann_tracked();
    _rows_changed = false;
    std::unordered_set<std::string_view> docs_seen;
    for (const auto& r : batch) {
      std::string meta = r->meta.to_json();
      upsert(*r, meta);
      if (docs_seen.insert(r->doc_id).second) {
        // A document an earlier run wrote is being replaced: its chunks this run does not write
        // again are stale, to be deleted when the run commits (the mark survives a failed run).
        sqlite3_bind_text(_doc_gen, 1, r->doc_id.data(), static_cast<int>(r->doc_id.size()),
                          SQLITE_STATIC);
        bool replaced =
            _db.step(_doc_gen) == SQLITE_ROW && sqlite3_column_int64(_doc_gen, 0) < _gen;
        sqlite3_reset(_doc_gen);
        if (replaced && !_stale_marked) {
          set_meta(_db, "stale_check", "1");
          _stale_marked = true;
        }
        sqlite3_bind_text(_upsert_doc, 1, r->doc_id.data(), static_cast<int>(r->doc_id.size()),
                          SQLITE_STATIC);
        sqlite3_bind_text(_upsert_doc, 2, meta.data(), static_cast<int>(meta.size()),
                          SQLITE_TRANSIENT);
        sqlite3_bind_int64(_upsert_doc, 3, _gen);
        _db.run(_upsert_doc);
      }
    }
    if (_rows_changed) bump_content_gen();
    if (_rows_since_catch_up >= _fts_batch ||
        (_rows_since_catch_up > 0 &&
         std::chrono::steady_clock::now() - _last_catch_up >= kFtsInterval))
      catch_up_text();
  }

  static bool same_text(sqlite3_stmt* st, int col, std::string_view v) {
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return false;
    const char* p = reinterpret_cast<const char*>(sqlite3_column_text(st, col));
    return static_cast<size_t>(sqlite3_column_bytes(st, col)) == v.size() &&
           std::memcmp(p, v.data(), v.size()) == 0;
  }

  // Insert, or update only what changed; an unchanged row (a re-run) costs one lookup.
  void upsert(const Record& r, const std::string& meta) {
    std::string_view vec = stored_vector(r.vector);
    auto bind_row = [&](sqlite3_stmt* st) {
      sqlite3_bind_text(st, 2, r.doc_id.data(), static_cast<int>(r.doc_id.size()), SQLITE_STATIC);
      sqlite3_bind_int64(st, 3, r.seq);
      sqlite3_bind_text(st, 4, r.text.data(), static_cast<int>(r.text.size()), SQLITE_STATIC);
      sqlite3_bind_text(st, 5, meta.data(), static_cast<int>(meta.size()), SQLITE_STATIC);
      if (r.vector.empty()) sqlite3_bind_null(st, 6);
      else sqlite3_bind_blob(st, 6, vec.data(), static_cast<int>(vec.size()), SQLITE_STATIC);
      sqlite3_bind_int64(st, 7, _gen);
    };
    // A new chunk (the common case) costs one insert; only an existing id is read back.
    sqlite3_bind_text(_insert, 1, r.id.data(), static_cast<int>(r.id.size()), SQLITE_STATIC);
    bind_row(_insert);
    _db.run(_insert);
    if (sqlite3_changes(_db.get()) == 1) {
      // Its text goes into chunks_fts with the next catch-up.
      ++_rows_since_catch_up;
      _rows_changed = true;
      if (_ann_tracked && !r.vector.empty()) log_ann(sqlite3_last_insert_rowid(_db.get()));
      return;
    }
    sqlite3_bind_text(_select, 1, r.id.data(), static_cast<int>(r.id.size()), SQLITE_STATIC);
    int rc = sqlite3_step(_select);
    if (rc != SQLITE_ROW) {
      sqlite3_reset(_select);
      std::string msg = "SQLite: ";
      msg += rc == SQLITE_DONE ? "chunk \"" + r.id + "\" was neither inserted nor found"
                               : _db.errmsg();
      throw std::runtime_error(msg);
    }
    int64_t rowid = sqlite3_column_int64(_select, 0);
    bool text_same = same_text(_select, 1, r.text);
    bool vec_same =
        r.vector.empty()
            ? sqlite3_column_type(_select, 5) == SQLITE_NULL
            : sqlite3_column_bytes(_select, 5) == static_cast<int>(vec.size()) &&
                  std::memcmp(sqlite3_column_blob(_select, 5), vec.data(), vec.size()) == 0;
    bool rest_same = same_text(_select, 2, r.doc_id) && sqlite3_column_int64(_select, 3) == r.seq &&
                     same_text(_select, 4, meta);
    if (text_same && vec_same && rest_same) {
      bool gen_same = sqlite3_column_int64(_select, 6) == _gen;
      sqlite3_reset(_select);
      if (!gen_same) {  // written again by this run: not stale
        sqlite3_bind_int64(_touch, 1, rowid);
        sqlite3_bind_int64(_touch, 2, _gen);
        _db.run(_touch);
      }
      return;
    }
    if (!text_same && rowid <= _fts_rowid) {
      // FTS5 external content: the old text must be given back to remove its terms. (A row above
      // the mark is not in chunks_fts yet; the catch-up will read its new text.)
      std::string old(reinterpret_cast<const char*>(sqlite3_column_text(_select, 1)),
                      static_cast<size_t>(sqlite3_column_bytes(_select, 1)));
      sqlite3_reset(_select);
      sqlite3_bind_int64(_fts_delete, 1, rowid);
      sqlite3_bind_text(_fts_delete, 2, old.data(), static_cast<int>(old.size()), SQLITE_STATIC);
      _db.run(_fts_delete);
      sqlite3_bind_int64(_fts_insert, 1, rowid);
      sqlite3_bind_text(_fts_insert, 2, r.text.data(), static_cast<int>(r.text.size()),
                        SQLITE_STATIC);
      _db.run(_fts_insert);
    } else {
      sqlite3_reset(_select);
    }
    sqlite3_bind_int64(_update, 1, rowid);
    bind_row(_update);
    _db.run(_update);
    _rows_changed = true;
    if (_ann_tracked && !vec_same) log_ann(rowid);
  }

  // One more in `content_gen`: the chunks changed in this transaction (bm25 postings written
  // from an earlier generation are no longer used).
  void bump_content_gen() {
    _db.exec("INSERT INTO sluice_meta(key, value) VALUES ('content_gen', '1') ON CONFLICT(key) "
             "DO UPDATE SET value = CAST(value AS INTEGER) + 1");
  }

  // Whether the index keeps a nearest-neighbour graph, whose log this transaction's changes join.
  bool ann_tracked() {
    if (!_ann_seq_get)
      _ann_seq_get = _db.prepare("SELECT 1 FROM sluice_meta WHERE key = 'ann_seq'");
    return _db.any_row(_ann_seq_get);
  }
  void log_ann(int64_t rowid) {
    if (!_ann_log) _ann_log = _db.prepare("INSERT INTO ann_log(rowid) VALUES (?1)");
    sqlite3_bind_int64(_ann_log, 1, rowid);
    _db.run(_ann_log);
  }

  // The bytes the file stores for `v`: its floats as they are, or as halves in a buffer that lives
  // until the next call.
  std::string_view stored_vector(const std::vector<float>& v) {
    if (!_half) return {reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)};
    _half_buf.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) _half_buf[i] = float_to_half(v[i]);
    return {reinterpret_cast<const char*>(_half_buf.data()), _half_buf.size() * sizeof(uint16_t)};
  }

  void check_embedder(const std::vector<RecordPtr>& batch) {
    for (const auto& r : batch) {
      if (!r->embedder) continue;
      if (_embedder.empty()) {
        _embedder = *r->embedder;
        set_meta(_db, "embedder", _embedder);
      } else if (_embedder != *r->embedder) {
        throw std::runtime_error("the index holds vectors from " + _embedder +
                                 " but this graph's are from " + *r->embedder +
                                 "; write to a new path (or delete the old index)");
      }
    }
  }

  std::string _path;
  Batcher _batcher;
  std::mutex _write_mu;
  Db _db;
  sqlite3_stmt* _select = nullptr;
  sqlite3_stmt* _insert = nullptr;
  sqlite3_stmt* _touch = nullptr;
  sqlite3_stmt* _doc_gen = nullptr;
  int64_t _gen = 0;            // this run's generation
  bool _stale_marked = false;  // stale_check set in this run
  sqlite3_stmt* _update = nullptr;
  sqlite3_stmt* _fts_insert = nullptr;
  sqlite3_stmt* _fts_delete = nullptr;
  sqlite3_stmt* _upsert_doc = nullptr;
  std::string _embedder;
  sqlite3_stmt* _fts_rowid_get = nullptr;
  sqlite3_stmt* _fts_rowid_set = nullptr;
  sqlite3_stmt* _fts_catch_up = nullptr;
  sqlite3_stmt* _max_rowid = nullptr;
  int64_t _fts_rowid = 0;  // as of the current write transaction
  int64_t _fts_batch;
  std::string _vector_type;  // as asked; empty: the file's own (f16 for a new file)
  bool _half = false;        // the file stores float16
  std::vector<uint16_t> _half_buf;
  std::unique_ptr<BackgroundCheckpointer> _checkpointer;
  AnnPolicy _ann;
  bool _settled = false;      // commit() ran: every document reached its outcome
  bool _ann_tracked = false;  // as of the current write transaction
  AnnPolicy _bm25;
  bool _rows_changed = false;  // in the current write transaction
  sqlite3_stmt* _ann_log = nullptr;
  sqlite3_stmt* _ann_seq_get = nullptr;
  int64_t _rows_since_catch_up = 0;
  std::chrono::steady_clock::time_point _last_catch_up = std::chrono::steady_clock::now();
};

}  // namespace

NodeTypeInfo index_sqlite_info() {
  NodeTypeInfo info;
  info.type = "index.sqlite";
  info.role = NodeRole::sink;
  info.description = "Embedded index: FTS5 (BM25) over chunk text, vectors as float16 (or float32) "
                     "BLOBs, document meta. Upserts by "
                     "chunk id in batched WAL transactions, so a re-run updates rather than "
                     "duplicates; the full-text index "
                     "takes in the new rows' text in larger steps and at the end of the run. Query "
                     "it with `sluice search`.";
  info.params = {
      required_param("path", ParamType::string, "SQLite file to create or update"),
      with_min(param("batch", ParamType::integer, "512", "records per transaction"), 1),
      with_min(
          param("linger_ms", ParamType::integer, "50", "write a partial batch after this long"), 0),
      param("vector_type", ParamType::string, "null",
            "how vectors are stored: f16 (half the bytes, about 3 significant digits) or f32; "
            "default: "
            "the file's own, f16 for a new file"),
      with_choices(param("ann", ParamType::string, "\"auto\"",
                         "nearest-neighbour graph for vector search, built at the end of a run "
                         "and kept in step after (a file beside the index: PATH.hnsw): auto "
                         "builds one from 100000 vectors (below, search scans every vector in "
                         "milliseconds), always whatever the size, never none"),
                   {"auto", "always", "never"}),
      with_choices(param("bm25_index", ParamType::string, "\"auto\"",
                         "bm25 postings for fast full-text search, written at the end of a run "
                         "that changed the index (a file beside it: PATH.bm25): auto from 100000 "
                         "chunks (below, FTS5 ranks every match in milliseconds), always whatever "
                         "the size, never none"),
                   {"auto", "always", "never"}),
      with_min(param("fts_batch", ParamType::integer, "8192",
                     "rows whose text enters the full-text index in one step (also every 10 s and "
                     "at the end "
                     "of the run): larger builds faster, searches later"),
               1),
  };
  for (auto& p : info.params)
    if (p.name == "vector_type") p.choices = {"f16", "f32"};
  info.default_concurrency = 1;
  info.make_node = [](const NodeInit& init) { return std::make_unique<SqliteIndex>(init); };
  info.output_file = [](const Params& p) { return p.str("path"); };
  return info;
}

}  // namespace sluice
