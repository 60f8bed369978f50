#include "engine/json/scan.hpp"

#include <cstdint>
#include <cstring>

#include "engine/json/json.hpp"
#include "engine/text/text.hpp"

namespace sluice {

namespace {

struct Cursor {
  const char* p;
  const char* end;

  void ws() {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
  }
  char peek() {
    ws();
    return p < end ? *p : '\0';
  }
  bool eat(char c) {
    if (peek() != c) return false;
    ++p;
    return true;
  }
};

// At the opening quote; moves past the closing one. memchr finds each quote, and a quote after
// an odd run of backslashes is part of the string.
bool skip_string(Cursor& c) {
  const char* s = c.p + 1;
  for (;;) {
    const char* q = static_cast<const char*>(std::memchr(s, '"', static_cast<size_t>(c.end - s)));
    if (!q) return false;
    size_t backslashes = 0;
    for (const char* b = q; b > s && b[-1] == '\\'; --b) ++backslashes;
    if (backslashes % 2 == 0) {
      c.p = q + 1;
      return true;
    }
    s = q + 1;  // the char before s is a quote, so a run of backslashes never spans it
  }
}

bool hex4(Cursor& c, uint32_t& v) {
  if (c.end - c.p < 4) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) {
    int d = text::hex_value(static_cast<unsigned char>(*c.p++));
    if (d < 0) return false;
    v = v << 4 | static_cast<uint32_t>(d);
  }
  return true;
}

// At the opening quote: decodes the string into `out` and moves past it.
bool read_string(Cursor& c, std::string& out) {
  out.clear();
  ++c.p;
  while (c.p < c.end) {
    const char* run = c.p;
    while (c.p < c.end && *c.p != '"' && *c.p != '\\' && static_cast<unsigned char>(*c.p) >= 0x20)
      ++c.p;
    out.append(run, static_cast<size_t>(c.p - run));
    if (c.p >= c.end) return false;
    char ch = *c.p++;
    if (ch == '"') return true;
    if (ch != '\\') return false;  // a raw control character
    if (c.p >= c.end) return false;
    char e = *c.p++;
    if (char plain = json::unescape_char(e)) {
      out += plain;
      continue;
    }
    if (e != 'u') return false;
    uint32_t cp;
    if (!hex4(c, cp)) return false;
    // A low surrogate alone is kept, as RapidJSON keeps it; a high one needs its pair.
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t lo;
      if (c.end - c.p < 2 || c.p[0] != '\\' || c.p[1] != 'u') return false;
      c.p += 2;
      if (!hex4(c, lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    text::append_utf8(out, cp);
  }
  return false;
}

bool scalar_char(char ch) {
  return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || ch == '-' || ch == '+' ||
         ch == '.' || ch == 'E';
}

// Moves past one value. Brackets must pair up and nest at most kMaxUntrustedDepth deep.
bool skip_value(Cursor& c) {
  char open[kMaxUntrustedDepth];
  int depth = 0;
  for (;;) {
    char ch = c.peek();
    if (ch == '"') {
      if (!skip_string(c)) return false;
    } else if (ch == '{' || ch == '[') {
      if (depth == kMaxUntrustedDepth) return false;
      open[depth++] = ch;
      ++c.p;
    } else if (ch == '}' || ch == ']') {
      if (depth == 0 || open[depth - 1] != (ch == '}' ? '{' : '[')) return false;
      --depth;
      ++c.p;
    } else if (ch == ',' || ch == ':') {
      if (depth == 0) return false;
      ++c.p;
    } else {
      const char* s = c.p;
      while (c.p < c.end && scalar_char(*c.p)) ++c.p;
      if (c.p == s) return false;  // the end of the text, or a char no JSON value has
    }
    if (depth == 0) return true;
  }
}

bool array_index(const std::string& tok, size_t& idx) {
  if (tok.empty() || tok.size() > 18 || (tok.size() > 1 && tok[0] == '0')) return false;
  idx = 0;
  for (char ch : tok) {
    if (ch < '0' || ch > '9') return false;
    idx = idx * 10 + static_cast<size_t>(ch - '0');
  }
  return true;
}

using Result = JsonPointerScan::Result;

Result walk(Cursor& c, const std::vector<std::string>& tokens, size_t depth, std::string& out) {
  char ch = c.peek();
  if (ch == '\0') return Result::malformed;
  if (depth == tokens.size()) {
    if (ch == '"') return read_string(c, out) ? Result::found : Result::malformed;
    return skip_value(c) ? Result::absent : Result::malformed;
  }
  const std::string& tok = tokens[depth];
  if (ch == '{') {
    ++c.p;
    if (c.eat('}')) return Result::absent;
    std::string key;
    for (;;) {
      if (c.peek() != '"' || !read_string(c, key) || !c.eat(':')) return Result::malformed;
      if (key == tok) return walk(c, tokens, depth + 1, out);
      if (!skip_value(c)) return Result::malformed;
      if (c.eat(',')) continue;
      return c.eat('}') ? Result::absent : Result::malformed;
    }
  }
  if (ch == '[') {
    size_t idx = 0;
    bool is_index = array_index(tok, idx);
    if (!is_index) return skip_value(c) ? Result::absent : Result::malformed;
    ++c.p;
    if (c.eat(']')) return Result::absent;
    for (size_t i = 0;; ++i) {
      if (i == idx) return walk(c, tokens, depth + 1, out);
      if (!skip_value(c)) return Result::malformed;
      if (c.eat(',')) continue;
      return c.eat(']') ? Result::absent : Result::malformed;
    }
  }
  return skip_value(c) ? Result::absent : Result::malformed;  // a scalar where the path goes on
}

}  // namespace

JsonPointerScan::JsonPointerScan(std::string_view pointer) : _pointer(pointer) {
  size_t i = 0;
  while (i < pointer.size()) {
    ++i;  // the '/'
    std::string tok;
    while (i < pointer.size() && pointer[i] != '/') {
      if (pointer[i] == '~' && i + 1 < pointer.size() &&
          (pointer[i + 1] == '0' || pointer[i + 1] == '1')) {
        tok += pointer[i + 1] == '0' ? '~' : '/';
        i += 2;
      } else {
        tok += pointer[i++];
      }
    }
    _tokens.push_back(std::move(tok));
  }
}

JsonPointerScan::Result JsonPointerScan::find_string(std::string_view doc, std::string& out) const {
  if (doc.starts_with("\xEF\xBB\xBF")) doc.remove_prefix(3);  // a UTF-8 BOM, as RapidJSON skips it
  Cursor c{doc.data(), doc.data() + doc.size()};
  return walk(c, _tokens, 0, out);
}

}  // namespace sluice
