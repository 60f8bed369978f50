// Helpers shared by the tests: temp dirs, running graphs from inline JSON, running the CLI.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "engine/graph/graph_runner.hpp"
#include "engine/graph/graph_spec.hpp"
#include "nodes/builtin_nodes.hpp"

namespace sluice::test {

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return _path; }
  std::string operator/(const std::string& name) const { return (_path / name).string(); }

 private:
  std::filesystem::path _path;
};

std::string source_dir();
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& text);
std::vector<std::string> read_lines(const std::string& path);

GraphSpec spec_from(const std::string& json, const Registry& reg = builtin_registry(),
                    const std::vector<VarOverride>& overrides = {});
RunReport run_json(const std::string& json, int threads = 2,
                   const Registry& reg = builtin_registry());

// Runs `spec` with JSON-lines progress events every 10 ms into `dir`/events.jsonl; returns the
// report and fills `progress` with the progress events' lines, in order.
RunReport run_with_events(const GraphSpec& spec, const TempDir& dir,
                          std::vector<std::string>& progress);

// A small valid PDF: one page per entry of `pages`, each a list of lines set in Helvetica, and
// `title` (if any) in its document info. For extractor tests: no PDF tool is needed to make it.
std::string make_pdf(const std::vector<std::vector<std::string>>& pages,
                     const std::string& title = "");

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// `dir`/ids.txt with the sim's document ids doc-000001 .. doc-N, one a line, then `extra`.
std::string ids_file(const TempDir& dir, int n, const std::vector<std::string>& extra = {});

// Runs the sluice binary with `args` (a shell-quoted string) in `cwd` (default: the source dir).
CommandResult run_sluice(const std::string& args, const std::string& cwd = "");

// Sleeps until just after the start of a wall-clock second, so that a burst fits one of the sim's
// rate windows.
void align_to_second();

// The first column of the first row `sql` gives on the SQLite file `db` (opened read-only), or
// -1 when it gives none.
int64_t sql_int(const std::string& db, const std::string& sql);

// A GET (or HEAD) of `url` on loopback within 5 s: status 0 when nothing answered.
struct Got {
  long status = 0;
  std::string body;
  std::string content_type;
};
Got http_get(const std::string& url, bool head = false);

// A loopback port nothing listens on now (bound and released).
int free_port();

// The value of the first sample in Prometheus text whose line starts with `series` (a name and
// its labels as rendered), or -1 when none does.
double metric_value(const std::string& text, const std::string& series);

// Config errors of `json` as text ("" if valid).
std::string config_errors(const std::string& json, const Registry& reg = builtin_registry(),
                          const std::vector<VarOverride>& overrides = {});

}  // namespace sluice::test
