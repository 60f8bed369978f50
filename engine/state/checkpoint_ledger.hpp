// The checkpoint ledger: one SQLite file (WAL) per shard that lists the documents whose every
// record reached an outcome, so `--resume` can skip them. Local workers of one shard share the
// file (SQLite's busy timeout serializes their commits).
//
// A document enters the ledger only when it is done: every sink acknowledged all its chunks
// (sinks acknowledge after their own commit). `record()` only buffers; `commit()` writes the
// buffer in one transaction and is called at least once a second by the runner, so a kill -9
// forgets at most the documents in flight plus about one second of completions.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "engine/record.hpp"

struct sqlite3_stmt;

namespace sluice {

namespace sqlite {
class Db;
}

struct LedgerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class CheckpointLedger {
 public:
  enum class Mode {
    fresh,   // forget every done document of this shard; store the config hash
    resume,  // keep them; refuse a different config hash unless `force`
    attach,  // a worker joining a ledger its launcher prepared: keep, check the hash
  };

  // Opens or creates `path` (its directory too). Throws LedgerError with a message for the user.
  CheckpointLedger(const std::string& path, const std::string& config_hash, Mode mode, bool force);
  ~CheckpointLedger();
  CheckpointLedger(const CheckpointLedger&) = delete;
  CheckpointLedger& operator=(const CheckpointLedger&) = delete;

  // Documents to skip on resume: those indexed or filtered. Dead-lettered ones are tried again.
  std::unordered_set<std::string> done_ids();
  uint64_t done_count();

  // Any thread; takes a mutex and appends, never touches the disk.
  void record(const std::string& doc_id, Outcome outcome);
  // Writes what `record` buffered in one transaction. One caller at a time (the runner's ticker).
  void commit();

  const std::string& path() const { return _path; }
  // The ledger file of shard i/N under `state_dir`.
  static std::string file_for(const std::string& state_dir, int shard_index, int shard_count);

 private:
  // Runs `fn`; an SQLite error rolls back and becomes a LedgerError.
  template <class F>
  void guarded(F&& fn);
  std::string _path;
  std::unique_ptr<sqlite::Db> _db;
  sqlite3_stmt* _insert = nullptr;  // owned by _db
  std::mutex _mu;
  std::vector<std::pair<std::string, Outcome>> _buffer;
};

}  // namespace sluice
