// Config and input mistakes, collected so a user sees every error of a config at once, each as
// `file:line:col: json.path: message`. Pure data; not thread-safe (one per validation).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/json/json.hpp"
#include "engine/secrets.hpp"

namespace sluice {

struct Diagnostic {
  json::Location loc;
  std::string path;  // JSON path, e.g. nodes[2].params.size
  std::string message;
};

class Diagnostics {
 public:
  explicit Diagnostics(std::string file = {}) : _file(std::move(file)) {}
  void error(json::Location loc, std::string path, std::string message);
  // Not a mistake, but worth saying (a deprecated name); kept apart from the errors.
  void warning(json::Location loc, std::string path, std::string message);
  const std::vector<Diagnostic>& warnings() const { return _warnings; }
  bool empty() const { return _items.empty(); }
  size_t size() const { return _items.size(); }
  const std::vector<Diagnostic>& items() const { return _items; }
  const std::string& file() const { return _file; }
  // Env values read into the config: masked as *** in format() and format_warnings().
  Secrets& secrets() { return _secrets; }
  const Secrets& secrets() const { return _secrets; }
  // One line per error, sorted by position; control characters escaped, secrets masked.
  std::string format() const;
  std::string format_warnings() const;  // the same, for the warnings

 private:
  std::string _file;
  std::vector<Diagnostic> _items;
  std::vector<Diagnostic> _warnings;
  Secrets _secrets;
};

// Thrown where a caller cannot go on (e.g. `sluice run` on an invalid config); carries all errors.
struct ConfigError : std::exception {
  explicit ConfigError(Diagnostics d) : diagnostics(std::move(d)), text(diagnostics.format()) {}
  const char* what() const noexcept override { return text.c_str(); }
  Diagnostics diagnostics;
  std::string text;
};

// `text` with control characters written as \\n, \\r, \\t or \\xNN, so an id holding a NUL or
// an escape sequence cannot cut or rewrite a message on a terminal.
std::string escape_controls(std::string_view text);

// " (did you mean 'x'?)" for the closest candidate within a small edit distance, else "".
std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates);
size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace sluice
