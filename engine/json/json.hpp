// Positioned JSON tree for graph configs: every value and key keeps its line and column so
// config errors can point at `file:line:col`. Accepts // and /* */ comments and trailing commas.
// Records' data on the hot path uses RapidJSON instead; this parser is for configs only.
// Thread-safety: values are plain data; parsing is pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::json {

struct Location {
  int line = 0;  // 1-based; 0 = unknown (e.g. a value synthesized from a default)
  int col = 0;
};

enum class Kind { null, boolean, number, string, array, object };

const char* kind_name(Kind k);

struct Member;

struct Value {
  Kind kind = Kind::null;
  Location loc;
  bool boolean = false;
  double number = 0;
  bool is_integer = false;  // number written without fraction/exponent and fits int64
  int64_t integer = 0;
  std::string str;
  std::vector<Value> items;     // array
  std::vector<Member> members;  // object, in source order
  bool substituted = false;     // string produced by ${var} substitution
  bool secret = false;          // contains an ${env:...} value: never print it
  bool unset_env = false;       // used an ${env:...} that is not set: optional headers are dropped

  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  bool is_null() const { return kind == Kind::null; }
  // Compact JSON text; secrets are replaced by "***" unless reveal is true.
  std::string dump(bool reveal = false) const;

  static Value make_string(std::string s);
  static Value make_int(int64_t v);
  static Value make_bool(bool b);
};

struct Member {
  std::string key;
  Location key_loc;
  Value value;
};

struct ParseError {
  Location loc;
  std::string message;
};

// Parses `text`; on failure returns false and fills `error`. Duplicate keys are an error.
bool parse(std::string_view text, Value& out, ParseError& error);

// What a one-letter escape stands for (\" \\ \/ \b \f \n \r \t after the backslash), or 0.
char unescape_char(char e);

// Appends `s` as a JSON string literal (quoted, escaped) to `out`.
void append_quoted(std::string& out, std::string_view s);
std::string quoted(std::string_view s);

// Appends `v` as a JSON array of floats (7 significant digits, enough for float32).
void append_floats(std::string& out, const std::vector<float>& v);

}  // namespace sluice::json
