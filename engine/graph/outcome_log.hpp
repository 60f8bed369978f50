// Where the records' outcomes go besides the counts: the dead-letter file (a JSON line per
// dead-lettered record), `settings.outcomes` (a JSON line per record, whatever its outcome), and
// the tally of dead letters per node and reason that the summary lists. Both files are opened
// O_APPEND and written a whole line per write(), so the processes of a job can share them.
// Every line passes through the config's secrets mask. Thread-safe.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/graph/run_report.hpp"
#include "engine/record.hpp"
#include "engine/secrets.hpp"

namespace sluice {

class OutcomeLog {
 public:
  // Distinct (node, reason) pairs tallied; later ones count under "other reasons".
  static constexpr size_t kMaxReasons = 64;

  explicit OutcomeLog(const Secrets& secrets) : _secrets(secrets) {}
  ~OutcomeLog() { close(); }
  OutcomeLog(const OutcomeLog&) = delete;
  OutcomeLog& operator=(const OutcomeLog&) = delete;

  // Before any record(), from one thread. Either path may be empty (no such file). The outcomes
  // file is opened now, the dead-letter file at the first dead letter (a run without any leaves no
  // empty file behind). Creates parent directories; throws std::runtime_error when a file cannot be
  // written.
  void open(const std::string& dead_letter, const std::string& outcomes);
  // Why a line could not be written (the dead-letter file could not be opened), or "".
  std::string write_error() const {
    std::lock_guard lock(_mu);
    return _write_error;
  }
  void record(std::string_view node, const Record& r, Outcome o, std::string_view reason,
              int attempts, long status);
  void flush();  // writes the buffered outcome lines (the ticker calls it)
  void close();
  // The dead letters per node and reason, the most frequent first.
  std::vector<ReasonCount> reasons() const;

  // What groups dead letters for the tally: the reason up to its first ": " (what follows is
  // detail: a response body, an exception's text), "HTTP 503 after 5 attempts" from
  // "HTTP 503 after 5 attempts: busy".
  static std::string reason_key(std::string_view reason);

 private:
  const Secrets& _secrets;
  mutable std::mutex _mu;
  std::string _dead_path, _write_error;
  int _dead_fd = -1, _outcomes_fd = -1;
  bool _log_all = false;  // an outcomes file: every record is logged (set by open(), before use)
  std::string _buf;       // outcome lines not written yet
  std::map<std::pair<std::string, std::string>, uint64_t> _reasons;
};

}  // namespace sluice
