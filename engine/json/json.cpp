#include "engine/json/json.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "engine/text/text.hpp"

namespace sluice::json {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::null: return "null";
    case Kind::boolean: return "boolean";
    case Kind::number: return "number";
    case Kind::string: return "string";
    case Kind::array: return "array";
    case Kind::object: return "object";
  }
  return "?";
}

const Value* Value::find(std::string_view key) const {
  for (const auto& m : members)
    if (m.key == key) return &m.value;
  return nullptr;
}

Value* Value::find(std::string_view key) {
  for (auto& m : members)
    if (m.key == key) return &m.value;
  return nullptr;
}

Value Value::make_string(std::string s) {
  Value v;
  v.kind = Kind::string;
  v.str = std::move(s);
  return v;
}

Value Value::make_int(int64_t i) {
  Value v;
  v.kind = Kind::number;
  v.is_integer = true;
  v.integer = i;
  v.number = static_cast<double>(i);
  return v;
}

Value Value::make_bool(bool b) {
  Value v;
  v.kind = Kind::boolean;
  v.boolean = b;
  return v;
}

char unescape_char(char e) {
  switch (e) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return '/';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return 0;
  }
}

namespace {

// True when one of the 8 bytes of `w` needs escaping: a control character, '"' or '\\'. Bit
// tricks on a word (bytes < n: (w - n*ones) & ~w & highs), so plain text is scanned 8 bytes a
// step: the byte-at-a-time scan was the sim's top symbol (12% of its CPU) and ran on every text
// sluice sends to an embedder or a _bulk request.
bool word_needs_escape(uint64_t w) {
  constexpr uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  auto has_zero = [&](uint64_t x) { return ((x - ones) & ~x & highs) != 0; };
  return ((w - 0x20 * ones) & ~w & highs) != 0 || has_zero(w ^ ('"' * ones)) ||
         has_zero(w ^ ('\\' * ones));
}

void append_quoted_valid(std::string& out, std::string_view s);

}  // namespace

// Every JSON sluice writes (JSONL, reports, dead letters) is valid UTF-8: an invalid sequence
// (an id from a binary file name, a torn body) becomes U+FFFD rather than raw bytes.
void append_quoted(std::string& out, std::string_view s) {
  if (text::is_valid_utf8(s)) append_quoted_valid(out, s);
  else append_quoted_valid(out, text::sanitize_utf8(s));
}

namespace {

void append_quoted_valid(std::string& out, std::string_view s) {
  out += '"';
  // Plain bytes are copied in runs; only quotes, backslashes and control characters stop a run.
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i % 8 == 0) {
      while (i + 8 <= s.size()) {  // whole plain words at once
        uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        if (word_needs_escape(w)) break;
        i += 8;
      }
      if (i >= s.size()) break;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

}  // namespace

// The shortest text that reads back as the same float (std::to_chars), without printf's
// format parsing and locale (printf("%.7g") was 2.6% of sluice's CPU writing vectors to _bulk).
void append_floats(std::string& out, const std::vector<float>& v) {
  out += '[';
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    if (!std::isfinite(v[i])) {
      out += "null";  // JSON has no NaN or infinity
      continue;
    }
    auto r = std::to_chars(buf, buf + sizeof buf, v[i]);
    out.append(buf, r.ptr);
  }
  out += ']';
}

std::string quoted(std::string_view s) {
  std::string out;
  append_quoted(out, s);
  return out;
}

namespace {

void dump_into(const Value& v, std::string& out, bool reveal) {
  if (v.secret && !reveal) {
    out += "\"***\"";
    return;
  }
  switch (v.kind) {
    case Kind::null: out += "null"; break;
    case Kind::boolean: out += v.boolean ? "true" : "false"; break;
    case Kind::number:
      if (v.is_integer) {
        out += std::to_string(v.integer);
      } else {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", v.number);
        out += buf;
      }
      break;
    case Kind::string: append_quoted(out, v.str); break;
    case Kind::array:
      out += '[';
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ',';
        dump_into(v.items[i], out, reveal);
      }
      out += ']';
      break;
    case Kind::object:
      out += '{';
      for (size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += ',';
        append_quoted(out, v.members[i].key);
        out += ':';
        dump_into(v.members[i].value, out, reveal);
      }
      out += '}';
      break;
  }
}

class Parser {
 public:
  explicit Parser(std::string_view text) : _s(text) {}

  bool run(Value& out, ParseError& err) {
    if (!skip_ws() || !value(out, 0) || !skip_ws()) {
      err = _err;
      return false;
    }
    if (_pos != _s.size()) {
      fail("unexpected text after the end of the document");
      err = _err;
      return false;
    }
    return true;
  }

 private:
  std::string_view _s;
  size_t _pos = 0;
  int _line = 1;
  size_t _line_start = 0;
  mutable size_t _col_line_start = 0, _col_at = 0;  // here(): column _col at _col_at
  mutable int _col = 1;
  ParseError _err;

  Location here() const {
    // Columns count code points, as editors show them. Counted on from the last call on this
    // line, not from the line's start: a config on one long line (generated) stays linear.
    if (_col_line_start != _line_start || _col_at > _pos) {
      _col_line_start = _line_start;
      _col_at = _line_start;
      _col = 1;
    }
    for (; _col_at < _pos && _col_at < _s.size(); ++_col_at)
      if ((static_cast<unsigned char>(_s[_col_at]) & 0xC0) != 0x80) ++_col;
    return {_line, _col};
  }

  bool fail(std::string msg) {
    _err = {here(), std::move(msg)};
    return false;
  }

  void advance() {
    if (_s[_pos] == '\n') {
      ++_line;
      _line_start = _pos + 1;
    }
    ++_pos;
  }

  bool skip_ws() {
    while (_pos < _s.size()) {
      char c = _s[_pos];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        advance();
      } else if (c == '/' && _pos + 1 < _s.size() && _s[_pos + 1] == '/') {
        while (_pos < _s.size() && _s[_pos] != '\n') advance();
      } else if (c == '/' && _pos + 1 < _s.size() && _s[_pos + 1] == '*') {
        Location start = here();
        advance();
        advance();
        while (_pos + 1 < _s.size() && !(_s[_pos] == '*' && _s[_pos + 1] == '/')) advance();
        if (_pos + 1 >= _s.size()) {
          _err = {start, "unterminated /* comment"};
          return false;
        }
        advance();
        advance();
      } else {
        break;
      }
    }
    return true;
  }

  bool value(Value& v, int depth) {
    if (depth > 64) return fail("nesting deeper than 64 levels");
    if (_pos >= _s.size()) return fail("unexpected end of input, expected a value");
    v.loc = here();
    char c = _s[_pos];
    if (c == '{') return object(v, depth);
    if (c == '[') return array(v, depth);
    if (c == '"') {
      v.kind = Kind::string;
      return string(v.str);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return number(v);
    if (literal("true")) {
      v.kind = Kind::boolean;
      v.boolean = true;
      return true;
    }
    if (literal("false")) {
      v.kind = Kind::boolean;
      return true;
    }
    if (literal("null")) return true;
    if (c == '\'') return fail("strings must use double quotes");
    return fail(std::string("unexpected character '") + c + "', expected a value");
  }

  bool literal(std::string_view word) {
    if (_s.substr(_pos, word.size()) != word) return false;
    _pos += word.size();
    return true;
  }

  bool object(Value& v, int depth) {
    v.kind = Kind::object;
    advance();  // {
    for (;;) {
      if (!skip_ws()) return false;
      if (_pos >= _s.size()) return fail("unexpected end of input inside an object, expected '}'");
      if (_s[_pos] == '}') {
        advance();
        return true;
      }
      if (_s[_pos] != '"') return fail("expected a quoted key or '}'");
      Member m;
      m.key_loc = here();
      if (!string(m.key)) return false;
      for (const auto& other : v.members)
        if (other.key == m.key) {
          _err = {m.key_loc, "duplicate key \"" + m.key + "\""};
          return false;
        }
      if (!skip_ws()) return false;
      if (_pos >= _s.size() || _s[_pos] != ':')
        return fail("expected ':' after key \"" + m.key + "\"");
      advance();
      if (!skip_ws() || !value(m.value, depth + 1)) return false;
      v.members.push_back(std::move(m));
      if (!skip_ws()) return false;
      if (_pos < _s.size() && _s[_pos] == ',') {
        advance();
        continue;
      }
      if (_pos < _s.size() && _s[_pos] == '}') {
        advance();
        return true;
      }
      return fail("expected ',' or '}' after a member");
    }
  }

  bool array(Value& v, int depth) {
    v.kind = Kind::array;
    advance();  // [
    for (;;) {
      if (!skip_ws()) return false;
      if (_pos >= _s.size()) return fail("unexpected end of input inside an array, expected ']'");
      if (_s[_pos] == ']') {
        advance();
        return true;
      }
      Value item;
      if (!value(item, depth + 1)) return false;
      v.items.push_back(std::move(item));
      if (!skip_ws()) return false;
      if (_pos < _s.size() && _s[_pos] == ',') {
        advance();
        continue;
      }
      if (_pos < _s.size() && _s[_pos] == ']') {
        advance();
        return true;
      }
      return fail("expected ',' or ']' after an array item");
    }
  }

  bool hex4(uint32_t& cp) {
    if (_pos + 4 > _s.size()) return fail("truncated \\u escape");
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      int d = text::hex_value(static_cast<unsigned char>(_s[_pos++]));
      if (d < 0) return fail("bad hex digit in \\u escape");
      cp = cp << 4 | static_cast<uint32_t>(d);
    }
    return true;
  }

  bool string(std::string& out) {
    advance();  // opening quote
    for (;;) {
      if (_pos >= _s.size()) return fail("unterminated string");
      char c = _s[_pos];
      if (c == '"') {
        advance();
        return true;
      }
      if (c == '\n') return fail("unterminated string (newline inside a string)");
      if (c == '\\') {
        ++_pos;
        if (_pos >= _s.size()) return fail("unterminated string");
        char e = _s[_pos++];
        if (char plain = unescape_char(e)) {
          out += plain;
          continue;
        }
        if (e != 'u') return fail(std::string("unknown escape \\") + e);
        uint32_t cp;
        if (!hex4(cp)) return false;
        if (cp >= 0xD800 && cp < 0xDC00 && _s.substr(_pos, 2) == "\\u") {
          _pos += 2;
          uint32_t lo;
          if (!hex4(lo)) return false;
          if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        text::append_utf8(out, cp);
        continue;
      }
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character inside a string");
      out += c;
      ++_pos;
    }
  }

  bool number(Value& v) {
    size_t start = _pos;
    if (_s[_pos] == '-') ++_pos;
    bool integral = true;
    while (_pos < _s.size()) {
      char c = _s[_pos];
      if (c >= '0' && c <= '9') {
        ++_pos;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        integral = false;
        ++_pos;
      } else {
        break;
      }
    }
    std::string tok(_s.substr(start, _pos - start));
    char* end = nullptr;
    double d = std::strtod(tok.c_str(), &end);
    if (end != tok.c_str() + tok.size() || tok == "-") {
      _pos = start;
      return fail("malformed number '" + tok + "'");
    }
    v.kind = Kind::number;
    v.number = d;
    if (integral) {
      errno = 0;
      long long i = std::strtoll(tok.c_str(), nullptr, 10);
      if (errno == 0) {
        v.is_integer = true;
        v.integer = i;
      }
    }
    return true;
  }
};

}  // namespace

std::string Value::dump(bool reveal) const {
  std::string out;
  dump_into(*this, out, reveal);
  return out;
}

bool parse(std::string_view text, Value& out, ParseError& error) {
  out = Value();
  Parser p(text);
  return p.run(out, error);
}

}  // namespace sluice::json
