#include "nodes/index_postgres.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "engine/graph/batcher.hpp"
#include "engine/json/json.hpp"
#include "engine/thread_role.hpp"
#include "nodes/replaced_docs.hpp"

namespace sluice {

namespace {

using BatchPtr = std::shared_ptr<std::vector<RecordPtr>>;
using Clock = std::chrono::steady_clock;

// The PostgreSQL limit on parameters in one statement is 65,535; a row takes 7.
constexpr int64_t kMaxBatch = 9000;

// "name" or "schema.name", each an unquoted SQL identifier: [A-Za-z_][A-Za-z0-9_]*, at most 63.
bool valid_table(const std::string& t) {
  auto ident = [](std::string_view s) {
    if (s.empty() || s.size() > 63) return false;
    if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
  };
  size_t dot = t.find('.');
  if (dot == std::string::npos) return ident(t);
  return ident(std::string_view(t).substr(0, dot)) && ident(std::string_view(t).substr(dot + 1));
}

// The table as SQL: each part double-quoted (so the name is taken as written, case included).
std::string quoted_table(const std::string& t) {
  size_t dot = t.find('.');
  if (dot == std::string::npos) return "\"" + t + "\"";
  return "\"" + t.substr(0, dot) + "\".\"" + t.substr(dot + 1) + "\"";
}

// An index name from the table's: "t_doc_id".
std::string index_name(const std::string& t) {
  std::string base = t.substr(t.find('.') == std::string::npos ? 0 : t.find('.') + 1);
  return "\"" + base.substr(0, 50) + "_doc_id\"";
}

// A result, freed when it goes.
struct Result {
  PGresult* r = nullptr;
  explicit Result(PGresult* res) : r(res) {}
  ~Result() { PQclear(r); }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  bool ok() const {
    auto s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
  }
  std::string sqlstate() const {
    const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    return s ? s : "";
  }
  // The server's message; else libpq's own (a connection that broke), trimmed.
  std::string message(PGconn* conn) const {
    const char* m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    std::string text = m ? m : r ? PQresultErrorMessage(r) : "";
    if (text.empty() && conn) text = PQerrorMessage(conn);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text.empty() ? "no answer from the server" : text;
  }
};

struct Connection {
  PGconn* c = nullptr;
  ~Connection() { PQfinish(c); }
  bool ok() const { return c && PQstatus(c) == CONNECTION_OK; }
};

// Worth another try on a fresh connection: the connection broke (class 08, or none left), the
// server is shutting down or out of resources (57P, 53), a serialization failure or deadlock
// (40), a statement that ran past timeout_ms (57014), a server gone read-only in a failover
// (25006).
bool transient(const std::string& state, bool connection_ok) {
  if (!connection_ok || state.empty()) return true;
  return state.rfind("08", 0) == 0 || state.rfind("57P", 0) == 0 || state.rfind("53", 0) == 0 ||
         state.rfind("40", 0) == 0 || state == "57014" || state == "25006";
}

// Refused for what a row holds (classes 22 and 23, 21000): the rows are tried one by one. Any
// other refusal (permissions, a table changed under the run) is the batch's as a whole.
bool data_error(const std::string& state) {
  return state.rfind("22", 0) == 0 || state.rfind("23", 0) == 0 || state == "21000";
}

// Whether a vector can be stored: pgvector refuses NaN and infinity, and real[] would keep a NaN
// that poisons every distance computed with it.
bool finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

enum class VectorType { automatic, vector, halfvec, real_array };

class PostgresIndex final : public Node {
 public:
  explicit PostgresIndex(const NodeInit& init)
      : _dsn(init.params.str("dsn")), _table(init.params.str("table")),
        _batcher(static_cast<size_t>(init.params.integer("batch")),
                 static_cast<int>(init.params.integer("linger_ms"))),
        _connections(std::max(1, init.concurrency)), _create(init.params.boolean("create_table")),
        _replace(init.params.boolean("replace_docs")),
        _max_attempts(static_cast<int>(init.params.integer("max_attempts"))),
        _timeout_ms(init.params.integer("timeout_ms")) {
    // libpq's parse errors quote the dsn, password included: a bad one gets a message of ours.
    char* parse_error = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(_dsn.c_str(), &parse_error);
    PQconninfoFree(parsed);
    PQfreemem(parse_error);
    if (!parsed)
      throw ParamError("dsn",
                       "dsn is not a libpq connection string (\"host=... dbname=... user=...\" "
                       "or postgresql://...; quote a value with spaces as key='a b')");
    if (!valid_table(_table))
      throw ParamError("table",
                       "table must be NAME or SCHEMA.NAME, each of letters, digits and '_' "
                       "(not starting with a digit), at most 63 characters");
    std::string vt = init.params.str("vector_type");
    _vector_type = vt == "vector"    ? VectorType::vector
                   : vt == "halfvec" ? VectorType::halfvec
                   : vt == "real[]"  ? VectorType::real_array
                                     : VectorType::automatic;
    _batcher.set_max_bytes(static_cast<size_t>(init.params.integer("max_batch_bytes")));
    if (_replace) _run = _replaced.mark();
  }

  // Batches still queued (a run that failed) are written before the threads end: their rows are
  // upserts, so a later run writes them again harmlessly.
  ~PostgresIndex() override { stop(); }

  // On the main thread: one connection now (a bad dsn or a missing table is an error before any
  // record flows), the vector type settled, the table made; then the writer threads.
  void open(NodeOutput& out) override {
    Node::open(out);
    auto first = std::make_unique<Connection>();
    std::string why = connect(*first);
    if (!why.empty()) throw std::runtime_error("index.postgres: cannot connect: " + why);
    // Workers and shards open at once: their DDL (IF NOT EXISTS is not safe side by side) takes
    // turns under an advisory lock, held by this session until the DDL is done (or it drops).
    const std::string lock_key = "hashtext('sluice:" + _table + "')";  // _table is checked
    if (_create) Result(PQexec(first->c, ("SELECT pg_advisory_lock(" + lock_key + ")").c_str()));
    settle_vector_type(*first);
    if (_create) {
      create_table(*first);
      Result(PQexec(first->c, ("SELECT pg_advisory_unlock(" + lock_key + ")").c_str()));
    }
    Result exists(PQexecParams(first->c, "SELECT to_regclass($1) IS NOT NULL", 1, nullptr,
                               std::array<const char*, 1>{quoted_table(_table).c_str()}.data(),
                               nullptr, nullptr, 0));
    if (!exists.ok() || PQntuples(exists.r) != 1 || std::string(PQgetvalue(exists.r, 0, 0)) != "t")
      throw std::runtime_error("index.postgres: table " + _table +
                               " does not exist (\"create_table\": true creates it)");
    if (_replace) {
      Result n(
          PQexec(first->c, ("SELECT EXISTS (SELECT 1 FROM " + quoted_table(_table) + ")").c_str()));
      _was_empty = n.ok() && PQntuples(n.r) == 1 && std::string(PQgetvalue(n.r, 0, 0)) == "f";
    }
    std::lock_guard lock(_mu);
    _idle.push_back(std::move(first));
    for (int i = 0; i < _connections; ++i) _threads.emplace_back([this] { writer(); });
  }

  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    // libpq sends text parameters as C strings: a NUL byte would cut the value short unseen.
    for (const std::string* s : {&in->id, &in->doc_id, &in->text})
      if (s->find('\0') != std::string::npos) {
        dead_letter(in, "a NUL byte in its id or text, which PostgreSQL text cannot hold");
        return;
      }
    if (!finite(in->vector)) {
      dead_letter(in, "a vector with NaN or infinity, which no distance can use");
      return;
    }
    size_t bytes = in->text.size() + in->vector.size() * 12 + in->meta.to_json().size() + 128;
    auto full = _batcher.add(std::move(in), bytes);
    if (!full.empty()) send(std::make_shared<std::vector<RecordPtr>>(std::move(full.items)));
  }

  void flush(bool force) override {
    auto due = _batcher.take_due(force);
    if (!due.empty()) send(std::make_shared<std::vector<RecordPtr>>(std::move(due.items)));
  }

  bool has_pending() const override { return _batcher.pending(); }

  // After a run that settled: the rows of this run's documents that an earlier run wrote and
  // this one did not go, 500 documents a statement.
  void commit() override {
    stop();
    if (!_replace || _was_empty) return;
    auto groups = _replaced.to_clean();
    if (groups.empty()) return;
    Connection conn;
    std::string why = connect(conn);
    if (!why.empty()) throw std::runtime_error("index.postgres: cannot connect: " + why);
    const std::string sql = "DELETE FROM " + quoted_table(_table) +
                            " WHERE doc_id = ANY($1::text[]) AND sluice_run IS DISTINCT FROM $2";
    for (const auto& group : groups) {
      std::string array = "{";
      for (const auto& doc : group) {
        if (array.size() > 1) array += ',';
        append_array_element(array, doc);
      }
      array += '}';
      const char* params[2] = {array.c_str(), _run.c_str()};
      Result r(PQexecParams(conn.c, sql.c_str(), 2, nullptr, params, nullptr, nullptr, 0));
      if (!r.ok())
        throw std::runtime_error("index.postgres: removing the rows its documents no longer have "
                                 "from " +
                                 _table + " failed: " + r.message(conn.c) +
                                 " (\"replace_docs\": false leaves them and sends no delete)");
    }
  }

  Load load() const override {
    std::lock_guard lock(_mu);
    return {_queued_records, static_cast<size_t>(_busy), 0, 0};
  }

 private:
  // "" when connected; else libpq's reason (never the dsn: it may hold a password). Timeouts
  // the dsn does not set are sluice's: a dead host or a lost path is a failed attempt, not a
  // writer blocked for good.
  std::string connect(Connection& conn) {
    PQfinish(conn.c);
    conn.c = nullptr;
    const char* keys[] = {"connect_timeout",  "keepalives_idle", "keepalives_interval",
                          "tcp_user_timeout", "dbname",          nullptr};
    const std::string user_timeout = std::to_string(_timeout_ms);
    const char* values[] = {"10", "30", "10", user_timeout.c_str(), _dsn.c_str(), nullptr};
    conn.c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (conn.ok()) {
      const std::string timeout = "SET statement_timeout = " + std::to_string(_timeout_ms);
      Result set(PQexec(conn.c, timeout.c_str()));
      PQsetClientEncoding(conn.c, "UTF8");
      // The server's notices ("relation already exists, skipping") are not the user's business.
      PQsetNoticeProcessor(
          conn.c, [](void*, const char*) {}, nullptr);
      return "";
    }
    std::string why = conn.c ? PQerrorMessage(conn.c) : "out of memory";
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return why;
  }

  // auto: pgvector's vector where the extension is (or can be) installed, else real[].
  void settle_vector_type(Connection& conn) {
    if (_vector_type == VectorType::real_array) return;
    Result have(PQexec(conn.c, "SELECT 1 FROM pg_extension WHERE extname = 'vector'"));
    bool installed = have.ok() && PQntuples(have.r) == 1;
    if (!installed && _create) {
      Result made(PQexec(conn.c, "CREATE EXTENSION IF NOT EXISTS vector"));
      installed = made.ok();
    }
    if (installed) {
      if (_vector_type == VectorType::automatic) _vector_type = VectorType::vector;
      return;
    }
    if (_vector_type != VectorType::automatic)
      throw std::runtime_error(
          "index.postgres: vector_type needs the pgvector extension, which this server does not "
          "have (\"vector_type\": \"auto\" falls back to real[])");
    _vector_type = VectorType::real_array;
  }

  // The embedding column's type, without a dimension (see create_table).
  const char* column_type() const {
    switch (_vector_type) {
      case VectorType::vector: return "vector";
      case VectorType::halfvec: return "halfvec";
      default: return "real[]";
    }
  }
  const char* cast() const {
    switch (_vector_type) {
      case VectorType::vector: return "::vector";
      case VectorType::halfvec: return "::halfvec";
      default: return "::real[]";
    }
  }

  // The table, with an unsized vector column: pgvector stores any dimension, and the first
  // vectors written fix nothing an embedder change would later break (an index on the column,
  // which needs one dimension, is the user's to add).
  void create_table(Connection& conn) {
    std::string sql = "CREATE TABLE IF NOT EXISTS " + quoted_table(_table) +
                      " (id text PRIMARY KEY, doc_id text NOT NULL, seq integer NOT NULL, "
                      "text text NOT NULL, meta jsonb NOT NULL DEFAULT '{}', embedding " +
                      column_type() +
                      ", sluice_run text, updated_at timestamptz NOT NULL DEFAULT now()); "
                      "CREATE INDEX IF NOT EXISTS " +
                      index_name(_table) + " ON " + quoted_table(_table) + " (doc_id)";
    Result r(PQexec(conn.c, sql.c_str()));
    if (!r.ok())
      throw std::runtime_error("index.postgres: creating table " + _table +
                               " failed: " + r.message(conn.c));
  }

  // A text[] literal's element: double-quoted, with '"' and '\' escaped.
  static void append_array_element(std::string& out, const std::string& s) {
    out += '"';
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }

  // A sent batch holds the graph until its records settle.
  void send(BatchPtr batch) {
    for (size_t i = 0; i < batch->size(); ++i) _output->hold();
    {
      std::lock_guard lock(_mu);
      _queued_records += batch->size();
      _queue.push_back(std::move(batch));
    }
    _cv.notify_one();
  }

  void stop() {
    {
      std::lock_guard lock(_mu);
      _stopping = true;
    }
    _cv.notify_all();
    for (auto& t : _threads) t.join();
    _threads.clear();
  }

  // A writer thread: batches from the queue, each one statement on this thread's connection.
  void writer() {
    // Documents this thread completes are posted into the arena, as the HTTP loop's are.
    t_outside_arena = true;
    std::unique_ptr<Connection> conn;
    {
      std::lock_guard lock(_mu);
      if (!_idle.empty()) {
        conn = std::move(_idle.back());
        _idle.pop_back();
      }
    }
    if (!conn) conn = std::make_unique<Connection>();
    std::mt19937_64 rng(std::random_device{}());
    for (;;) {
      BatchPtr batch;
      {
        std::unique_lock lock(_mu);
        _cv.wait(lock, [&] { return _stopping || !_queue.empty(); });
        if (_queue.empty()) return;  // stopping, and nothing left
        batch = std::move(_queue.front());
        _queue.pop_front();
        _queued_records -= batch->size();
        ++_busy;
      }
      write(*conn, batch, rng);
      {
        std::lock_guard lock(_mu);
        --_busy;
      }
    }
  }

  // Writes records [from, to) in one statement, retrying on a fresh connection while the
  // failure is transient: "" when written, else why (and the SQLSTATE in `state`).
  std::string write_rows(Connection& conn, const std::vector<RecordPtr>& batch, size_t from,
                         size_t to, std::mt19937_64& rng, std::string& state) {
    std::string why;
    for (int attempt = 1;; ++attempt) {
      state.clear();
      if (!conn.ok()) why = connect(conn);
      if (conn.ok()) {
        Result r = upsert(conn, batch, from, to);
        if (r.ok()) return "";
        why = r.message(conn.c);
        state = r.sqlstate();
      }
      if (attempt >= _max_attempts || !transient(state, conn.ok())) return why;
      backoff(attempt, rng);
    }
  }

  // Writes a batch; one the server refuses for its data is written row by row, so that only the
  // rows at fault are dead-lettered. Settles every record of the batch, here on this thread of
  // the node's own (finish and release are thread-safe).
  void write(Connection& conn, const BatchPtr& batch, std::mt19937_64& rng) {
    const size_t n = batch->size();
    std::vector<std::string> why(n);  // per record: "" = written
    std::string state;
    std::string all = write_rows(conn, *batch, 0, n, rng, state);
    if (!all.empty() && data_error(state) && n > 1) {
      for (size_t i = 0; i < n; ++i) why[i] = write_rows(conn, *batch, i, i + 1, rng, state);
    } else {
      std::fill(why.begin(), why.end(), all);
    }
    for (size_t i = 0; i < n; ++i) {
      const RecordPtr& r = (*batch)[i];
      if (!why[i].empty()) {
        dead_letter(r, "PostgreSQL: " + why[i]);
        continue;
      }
      if (_replace && !_was_empty) _replaced.written(r->doc_id);
      _output->finish(r, Outcome::indexed);
    }
    for (size_t i = 0; i < n; ++i) _output->release();
  }

  // A record refused: its document keeps what an earlier run wrote, so no delete may take it.
  void dead_letter(const RecordPtr& r, const std::string& why) {
    _replaced.refused(r->doc_id);
    _output->finish(r, Outcome::dead_lettered, why);
  }

  void backoff(int attempt, std::mt19937_64& rng) {
    double base = std::min(5.0, 0.1 * static_cast<double>(1 << std::min(attempt, 10)));
    double s = std::uniform_real_distribution<double>(base / 2, base)(rng);
    std::this_thread::sleep_for(std::chrono::duration<double>(s));
  }

  // One INSERT ... ON CONFLICT for records [from, to) of the batch.
  Result upsert(Connection& conn, const std::vector<RecordPtr>& batch, size_t from, size_t to) {
    std::string sql = "INSERT INTO " + quoted_table(_table) +
                      " (id, doc_id, seq, text, meta, embedding, sluice_run) VALUES ";
    std::vector<std::string> values;
    values.reserve((to - from) * 7);
    for (size_t i = from; i < to; ++i) {
      const Record& r = *batch[i];
      size_t p = values.size();
      if (i > from) sql += ',';
      sql += "($" + std::to_string(p + 1) + ",$" + std::to_string(p + 2) + ",$" +
             std::to_string(p + 3) + "::integer,$" + std::to_string(p + 4) + ",$" +
             std::to_string(p + 5) + "::jsonb,$" + std::to_string(p + 6) + cast() + ",$" +
             std::to_string(p + 7) + ")";
      values.push_back(r.id);
      values.push_back(r.doc_id);
      values.push_back(std::to_string(r.seq));
      values.push_back(r.text);
      values.push_back(r.meta.to_json());
      values.push_back(vector_literal(r.vector));
      values.push_back(_run);
    }
    sql += " ON CONFLICT (id) DO UPDATE SET doc_id = EXCLUDED.doc_id, seq = EXCLUDED.seq, "
           "text = EXCLUDED.text, meta = EXCLUDED.meta, embedding = EXCLUDED.embedding, "
           "sluice_run = EXCLUDED.sluice_run, updated_at = now()";
    std::vector<const char*> params;
    params.reserve(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      // A record without a vector leaves the column NULL; without a run mark, so does sluice_run.
      bool null =
          (i % 7 == 5 && batch[from + i / 7]->vector.empty()) || (i % 7 == 6 && _run.empty());
      params.push_back(null ? nullptr : values[i].c_str());
    }
    return Result(PQexecParams(conn.c, sql.c_str(), static_cast<int>(params.size()), nullptr,
                               params.data(), nullptr, nullptr, 0));
  }

  // '[1,2,3]' for pgvector's types, '{1,2,3}' for real[] (every value finite: see process()).
  std::string vector_literal(const std::vector<float>& v) const {
    std::string s;
    json::append_floats(s, v);
    if (_vector_type == VectorType::real_array) {
      s.front() = '{';
      s.back() = '}';
    }
    return s;
  }

  std::string _dsn, _table;
  Batcher _batcher;
  int _connections;
  bool _create, _replace;
  int _max_attempts;
  int64_t _timeout_ms;
  VectorType _vector_type = VectorType::automatic;
  std::string _run;  // this process's run mark, in every row it writes (replace_docs)
  bool _was_empty = false;

  mutable std::mutex _mu;
  std::condition_variable _cv;
  std::deque<BatchPtr> _queue;                     // under _mu
  std::vector<std::unique_ptr<Connection>> _idle;  // the connection open() made, for a writer
  int _busy = 0;                                   // under _mu
  size_t _queued_records = 0;                      // under _mu
  bool _stopping = false;                          // under _mu
  std::vector<std::thread> _threads;
  ReplacedDocs _replaced;
};

}  // namespace

NodeTypeInfo index_postgres_info() {
  NodeTypeInfo info;
  info.type = "index.postgres";
  info.role = NodeRole::sink;
  info.io = true;
  info.description =
      "A PostgreSQL table over libpq: multi-row upserts by chunk id (INSERT ON CONFLICT DO "
      "UPDATE) of doc_id, seq, text, meta (jsonb) and the vector (pgvector's vector or halfvec, "
      "else real[]). Each of `concurrency` connections writes on a "
      "thread of its own. After a run that settled, the rows an earlier run left for the same "
      "documents are deleted (replace_docs).";
  info.params = {
      required_param("dsn", ParamType::string,
                     "libpq connection string or URI, e.g. \"host=db dbname=rag user=sluice "
                     "password=${env:PGPASSWORD}\" (or leave the password to PGPASSWORD)"),
      param("table", ParamType::string, "\"sluice_chunks\"", "table, NAME or SCHEMA.NAME"),
      param("create_table", ParamType::boolean, "true",
            "create the table (and its doc_id index, and the vector extension where allowed) "
            "when missing; false: it must exist"),
      with_choices(param("vector_type", ParamType::string, "\"auto\"",
                         "the embedding column: auto (vector where pgvector is installed, else "
                         "real[]), vector, halfvec or real[]"),
                   {"auto", "vector", "halfvec", "real[]"}),
      with_range(param("batch", ParamType::integer, "500", "rows per INSERT statement"), 1,
                 kMaxBatch),
      with_min(param("max_batch_bytes", ParamType::integer, "8000000",
                     "approximate bytes per INSERT statement"),
               1),
      with_min(
          param("linger_ms", ParamType::integer, "200", "send a partial batch after this long"), 0),
      with_range(param("timeout_ms", ParamType::integer, "60000",
                       "statement_timeout of each INSERT, and tcp_user_timeout of the connection "
                       "(unless the dsn sets it): a stuck statement fails its attempt"),
                 1000, 86400000),
      with_range(param("max_attempts", ParamType::integer, "5",
                       "tries of a batch whose connection broke or that the server could not "
                       "take for now (08, 40, 53, 57P, 57014, 25006 errors)"),
                 1, 100),
      param("replace_docs", ParamType::boolean, "true",
            "mark each row with its run (sluice_run) and, after a run that settled, delete the "
            "rows of its documents that an earlier run wrote and this one did not; false: plain "
            "upserts, no delete"),
  };
  info.default_concurrency = 2;
  info.make_node = [](const NodeInit& init) { return std::make_unique<PostgresIndex>(init); };
  info.cost = batched_sink_cost;
  return info;
}

}  // namespace sluice
