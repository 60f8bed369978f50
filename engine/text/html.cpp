// HTML to text and character entities.
#include "engine/text/text.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "engine/text/bytes.hpp"

namespace sluice::text {

using namespace detail;

namespace {

// ---- entities ----------------------------------------------------------------------------------

struct NamedEntity {
  std::string_view name;
  uint32_t cp;
};

constexpr std::array<NamedEntity, 48> k_entities{{
    {"amp", '&'},       {"lt", '<'},        {"gt", '>'},        {"quot", '"'},
    {"apos", '\''},     {"nbsp", 0x00A0},   {"thinsp", 0x2009}, {"ensp", 0x2002},
    {"emsp", 0x2003},   {"ndash", 0x2013},  {"mdash", 0x2014},  {"lsquo", 0x2018},
    {"rsquo", 0x2019},  {"ldquo", 0x201C},  {"rdquo", 0x201D},  {"hellip", 0x2026},
    {"copy", 0x00A9},   {"reg", 0x00AE},    {"shy", 0x00AD},    {"zwj", 0x200D},
    {"zwnj", 0x200C},   {"lrm", 0x200E},    {"rlm", 0x200F},    {"AMP", '&'},
    {"LT", '<'},        {"GT", '>'},        {"QUOT", '"'},      {"laquo", 0x00AB},
    {"raquo", 0x00BB},  {"sbquo", 0x201A},  {"bdquo", 0x201E},  {"trade", 0x2122},
    {"bull", 0x2022},   {"middot", 0x00B7}, {"deg", 0x00B0},    {"times", 0x00D7},
    {"divide", 0x00F7}, {"euro", 0x20AC},   {"pound", 0x00A3},  {"yen", 0x00A5},
    {"cent", 0x00A2},   {"sect", 0x00A7},   {"para", 0x00B6},   {"iexcl", 0x00A1},
    {"iquest", 0x00BF}, {"dagger", 0x2020}, {"Dagger", 0x2021}, {"minus", 0x2212},
}};

inline bool is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
inline bool is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }

// Decodes the entity starting at s[amp] == '&'. Returns the bytes consumed (0: not an entity) and
// stores the code point. Looks ahead a bounded number of bytes, so callers stay linear.
size_t parse_entity(std::string_view s, size_t amp, uint32_t& cp) {
  constexpr size_t k_max_name = 32, k_max_digits = 16;
  const size_t n = s.size();
  size_t i = amp + 1;
  if (i < n && s[i] == '#') {
    ++i;
    const bool hex = i < n && (s[i] == 'x' || s[i] == 'X');
    if (hex) ++i;
    const size_t digits_b = i;
    uint64_t v = 0;
    while (i < n && i - digits_b < k_max_digits) {
      const int d = hex ? hex_value(static_cast<unsigned char>(s[i]))
                        : (is_digit(static_cast<unsigned char>(s[i])) ? s[i] - '0' : -1);
      if (d < 0) break;
      v = v * (hex ? 16 : 10) + static_cast<uint64_t>(d);
      if (v > 0x10FFFF) return 0;
      ++i;
    }
    if (i == digits_b || i >= n || s[i] != ';') return 0;
    if (v == 0 || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    cp = static_cast<uint32_t>(v);
    return i + 1 - amp;
  }
  const size_t name_b = i;
  while (i < n && i - name_b <= k_max_name && is_alnum(static_cast<unsigned char>(s[i]))) ++i;
  if (i == name_b || i >= n || s[i] != ';') return 0;
  const std::string_view name = s.substr(name_b, i - name_b);
  for (const auto& e : k_entities) {
    if (e.name == name) {
      cp = e.cp;
      return i + 1 - amp;
    }
  }
  return 0;
}

// ---- HTML --------------------------------------------------------------------------------------

// 1: space-like (collapsed), 2: newline, 0: ordinary byte.
constexpr std::array<unsigned char, 256> k_ws_class = [] {
  std::array<unsigned char, 256> t{};
  t[' '] = t['\t'] = t['\r'] = t['\f'] = t['\v'] = 1;
  t['\n'] = 2;
  return t;
}();

// Whitespace-normalizing output (see html_to_text contract).
class TextBuilder {
 public:
  explicit TextBuilder(size_t reserve) { _out.reserve(reserve); }

  void add(std::string_view run) {
    const char* p = run.data();
    const char* e = p + run.size();
    while (p < e) {
      const unsigned char cls = k_ws_class[static_cast<unsigned char>(*p)];
      if (cls == 1) {
        _space = true;
        ++p;
      } else if (cls == 2) {
        newline();
        ++p;
      } else {
        // Bulk-append the run of ordinary bytes.
        const char* q = p + 1;
        while (q < e && k_ws_class[static_cast<unsigned char>(*q)] == 0) ++q;
        flush_pending();
        _out.append(p, q);
        p = q;
      }
    }
  }
  void space() { _space = true; }
  void newline() {
    ++_newlines;
    _space = false;  // trims spaces before a newline; spaces after it are dropped in flush_pending
  }
  std::string take() { return std::move(_out); }

 private:
  void flush_pending() {
    if (!_out.empty()) {
      if (_newlines > 0) _out.append(std::min<size_t>(_newlines, 2), '\n');
      else if (_space) _out.push_back(' ');
    }
    _newlines = 0;
    _space = false;
  }
  std::string _out;
  size_t _newlines = 0;
  bool _space = false;
};

// Appends s with entities decoded, to any sink with add(string_view).
template <typename Sink>
void decode_into(std::string_view s, Sink& sink) {
  size_t i = 0;
  std::string tmp;
  while (i < s.size()) {
    const size_t amp = s.find('&', i);
    if (amp == std::string_view::npos) {
      sink.add(s.substr(i));
      return;
    }
    uint32_t cp = 0;
    const size_t used = parse_entity(s, amp, cp);
    if (used == 0) {
      sink.add(s.substr(i, amp + 1 - i));
      i = amp + 1;
      continue;
    }
    sink.add(s.substr(i, amp - i));
    tmp.clear();
    append_utf8(tmp, cp);
    sink.add(tmp);
    i = amp + used;
  }
}

struct StringSink {
  std::string& out;
  void add(std::string_view v) { out.append(v); }
};

inline unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(static_cast<unsigned char>(a[i])) != lower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// Finds "</name" (case-insensitive, followed by a non-name byte or end) at or after i; npos if
// none.
size_t find_close_tag(std::string_view h, size_t i, std::string_view name) {
  while (true) {
    const size_t lt = h.find('<', i);
    if (lt == std::string_view::npos) return lt;
    const size_t nb = lt + 2;
    if (nb <= h.size() && lt + 1 < h.size() && h[lt + 1] == '/' && nb + name.size() <= h.size() &&
        iequals(h.substr(nb, name.size()), name) &&
        (nb + name.size() == h.size() ||
         !is_alnum(static_cast<unsigned char>(h[nb + name.size()]))))
      return lt;
    i = lt + 1;
  }
}

// Finds "<body" (case-insensitive, then a non-name byte) at or after i.
size_t find_body_open(std::string_view h, size_t i) {
  while (true) {
    const size_t lt = h.find('<', i);
    if (lt == std::string_view::npos) return lt;
    if (lt + 5 <= h.size() && iequals(h.substr(lt + 1, 4), "body") &&
        (lt + 5 == h.size() || !is_alnum(static_cast<unsigned char>(h[lt + 5]))))
      return lt;
    i = lt + 1;
  }
}

// memchr with memory of failures: once c is known absent from some offset on, later searches past
// that offset answer at once. Keeps repeated failing searches (unclosed quotes) linear overall.
class CachedFind {
 public:
  explicit CachedFind(std::string_view s) : _s(s) { _absent_from.fill(SIZE_MAX); }
  size_t find(char c, size_t from) {
    size_t& absent = _absent_from[static_cast<unsigned char>(c)];
    if (from >= absent) return std::string_view::npos;
    const size_t r = _s.find(c, from);
    if (r == std::string_view::npos) absent = from;
    return r;
  }

 private:
  std::string_view _s;
  std::array<size_t, 256> _absent_from{};
};

struct Tag {
  std::string_view name;   // as written
  std::string_view attrs;  // between the name and '>'
  bool close = false;
  bool self_closing = false;
};

// True when the class attribute in attrs has a token "footnote" or "footnote-marker".
bool has_footnote_class(std::string_view a) {
  size_t i = 0;
  const size_t n = a.size();
  while (i < n) {
    while (i < n && (is_space(static_cast<unsigned char>(a[i])) || a[i] == '/')) ++i;
    const size_t nb = i;
    while (i < n && !is_space(static_cast<unsigned char>(a[i])) && a[i] != '=' && a[i] != '/') ++i;
    const std::string_view name = a.substr(nb, i - nb);
    size_t j = i;
    while (j < n && is_space(static_cast<unsigned char>(a[j]))) ++j;
    std::string_view value;
    if (j < n && a[j] == '=') {
      ++j;
      while (j < n && is_space(static_cast<unsigned char>(a[j]))) ++j;
      if (j < n && (a[j] == '"' || a[j] == '\'')) {
        const char q = a[j];
        const size_t vb = ++j;
        while (j < n && a[j] != q) ++j;
        value = a.substr(vb, j - vb);
        if (j < n) ++j;
      } else {
        const size_t vb = j;
        while (j < n && !is_space(static_cast<unsigned char>(a[j]))) ++j;
        value = a.substr(vb, j - vb);
      }
      i = j;
    }
    if (name.empty() && i == nb) ++i;  // stray byte: guarantee progress
    if (!iequals(name, "class")) continue;
    size_t k = 0;
    while (k < value.size()) {
      while (k < value.size() && is_space(static_cast<unsigned char>(value[k]))) ++k;
      const size_t tb = k;
      while (k < value.size() && !is_space(static_cast<unsigned char>(value[k]))) ++k;
      const std::string_view tok = value.substr(tb, k - tb);
      if (tok == "footnote" || tok == "footnote-marker") return true;
    }
  }
  return false;
}

bool is_newline_close(std::string_view name) {
  if (name.size() == 2 && lower(static_cast<unsigned char>(name[0])) == 'h' && name[1] >= '1' &&
      name[1] <= '6')
    return true;
  return iequals(name, "p") || iequals(name, "div") || iequals(name, "li") || iequals(name, "tr") ||
         iequals(name, "br");
}

}  // namespace

std::string decode_entities(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  StringSink sink{out};
  decode_into(s, sink);
  return out;
}

std::string html_to_text(std::string_view h) {
  TextBuilder out(h.size() / 2 + 16);
  CachedFind finder(h);
  const size_t n = h.size();
  size_t i = 0;
  // Footnote being dropped: its tag name and nesting depth (0 = none).
  std::string_view drop_name;
  size_t drop_depth = 0;

  while (i < n) {
    const size_t lt = finder.find('<', i);
    const size_t text_end = lt == std::string_view::npos ? n : lt;
    if (drop_depth == 0 && text_end > i) decode_into(h.substr(i, text_end - i), out);
    if (lt == std::string_view::npos) break;
    i = lt;

    // Comments, doctypes, processing instructions, CDATA.
    if (i + 1 < n && (h[i + 1] == '!' || h[i + 1] == '?')) {
      if (h.substr(i, 4) == "<!--") {
        const size_t c = h.find("-->", i + 4);
        i = c == std::string_view::npos ? n : c + 3;
      } else if (h.substr(i, 9) == "<![CDATA[") {
        const size_t c = h.find("]]>", i + 9);
        const size_t ce = c == std::string_view::npos ? n : c;
        if (drop_depth == 0) out.add(h.substr(i + 9, ce - (i + 9)));
        i = c == std::string_view::npos ? n : c + 3;
      } else {
        const size_t gt = finder.find('>', i + 2);
        i = gt == std::string_view::npos ? n : gt + 1;
      }
      continue;
    }

    Tag tag;
    size_t j = i + 1;
    if (j < n && h[j] == '/') {
      tag.close = true;
      ++j;
    }
    if (j >= n || !is_alpha(static_cast<unsigned char>(h[j]))) {
      if (drop_depth == 0) out.add("<");  // a lone '<' is text
      i = i + 1;
      continue;
    }
    const size_t name_b = j;
    while (j < n && (is_alnum(static_cast<unsigned char>(h[j])) || h[j] == '-' || h[j] == '_' ||
                     h[j] == ':'))
      ++j;
    tag.name = h.substr(name_b, j - name_b);

    // Tag end: the first '>' outside a quoted attribute value. An unclosed quote falls back to the
    // first '>' at all; no '>' at all means the tag runs to the end (browser behaviour).
    size_t k = j;
    size_t gt = std::string_view::npos;
    bool after_eq = false;
    while (k < n) {
      const char c = h[k];
      if (c == '>') {
        gt = k;
        break;
      }
      if ((c == '"' || c == '\'') && after_eq) {
        const size_t qe = finder.find(c, k + 1);
        if (qe == std::string_view::npos) {
          gt = finder.find('>', j);
          break;
        }
        k = qe + 1;
        after_eq = false;
        continue;
      }
      if (c == '=') after_eq = true;
      else if (!is_space(static_cast<unsigned char>(c))) after_eq = false;
      ++k;
    }
    if (gt == std::string_view::npos) break;  // unclosed tag swallows the rest
    tag.attrs = h.substr(j, gt - j);
    tag.self_closing = gt > j && h[gt - 1] == '/';
    i = gt + 1;

    if (drop_depth > 0) {
      if (iequals(tag.name, drop_name)) {
        if (tag.close) --drop_depth;
        else if (!tag.self_closing) ++drop_depth;
      }
      continue;
    }

    if (tag.close) {
      if (is_newline_close(tag.name)) out.newline();
      else if (iequals(tag.name, "td") || iequals(tag.name, "th")) out.space();
      continue;
    }
    if (iequals(tag.name, "br")) {
      out.newline();
      continue;
    }
    if (tag.self_closing) continue;
    if (iequals(tag.name, "script") || iequals(tag.name, "style")) {
      const size_t c = find_close_tag(h, i, tag.name);
      i = c == std::string_view::npos ? n : c;  // the closing tag itself is parsed normally
      continue;
    }
    if (iequals(tag.name, "head")) {
      const size_t c = std::min(find_close_tag(h, i, "head"), find_body_open(h, i));
      i = c == std::string_view::npos ? n : c;
      continue;
    }
    if (has_footnote_class(tag.attrs)) {
      drop_name = tag.name;
      drop_depth = 1;
    }
  }
  return out.take();
}

}  // namespace sluice::text
