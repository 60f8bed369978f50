// Implementation notes: everything works on byte offsets into the caller's string_view; splitters
// never copy text. Hot loops (code point counting, sentence-end scanning) use 8-byte SWAR so they
// stay fast without depending on the target's SIMD flags.
#include "engine/text.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

namespace sluice::text {

int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  const unsigned char l = c | 0x20;
  if (l >= 'a' && l <= 'f') return l - 'a' + 10;
  return -1;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

constexpr uint64_t k_ones = 0x0101010101010101ULL;
constexpr uint64_t k_highs = 0x8080808080808080ULL;

inline bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

inline uint64_t load_le64(const unsigned char* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

inline uint64_t load_le32(const unsigned char* p) {
  uint32_t v = 0;
  std::memcpy(&v, p, 4);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}

// Continuation bytes in [p, e): bit 7 set and bit 6 clear.
size_t count_continuations(const unsigned char* p, const unsigned char* e) {
  size_t total = 0;
  while (e - p >= 8) {
    // Byte-wise counters; flush before any lane could reach 256.
    uint64_t acc = 0;
    int rounds = 0;
    while (e - p >= 8 && rounds < 255) {
      uint64_t w = 0;
      std::memcpy(&w, p, 8);  // lane order is irrelevant for a count
      acc += ((w & ~(w << 1)) & k_highs) >> 7;
      p += 8;
      ++rounds;
    }
    // Lanes hold up to 255: widen to 16-bit lanes before the horizontal sum.
    constexpr uint64_t k_even = 0x00FF00FF00FF00FFULL;
    const uint64_t pairs = (acc & k_even) + ((acc >> 8) & k_even);
    total += (pairs * 0x0001000100010001ULL) >> 48;
  }
  for (; p < e; ++p) total += is_cont(*p);
  return total;
}

// Length of the well-formed sequence at p (ok) or of its maximal invalid subpart (!ok), >= 1.
struct Decoded {
  size_t len;
  bool ok;
};

Decoded decode_at(const unsigned char* p, const unsigned char* e) {
  const unsigned char c = p[0];
  if (c < 0x80) return {1, true};
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    need = 2;
  } else if (c == 0xED) {
    need = 2, hi = 0x9F;  // no surrogates
  } else if (c == 0xF0) {
    need = 3, lo = 0x90;  // no overlongs
  } else if (c >= 0xF1 && c <= 0xF3) {
    need = 3;
  } else if (c == 0xF4) {
    need = 3, hi = 0x8F;  // <= U+10FFFF
  } else {
    return {1, false};
  }
  const size_t avail = static_cast<size_t>(e - p) - 1;
  for (size_t k = 1; k <= need; ++k) {
    if (k > avail) return {k, false};
    const unsigned char b = p[k];
    const unsigned char l = k == 1 ? lo : 0x80;
    const unsigned char h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {k, false};
  }
  return {need + 1, true};
}

inline size_t cps_in(std::string_view s, size_t b, size_t e) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  return (e - b) - count_continuations(p + b, p + e);
}

// Start of the code point n code points before pos, never below floor.
size_t retreat_code_points(std::string_view s, size_t pos, size_t n, size_t floor) {
  size_t i = pos;
  for (size_t k = 0; k < n && i > floor; ++k) {
    --i;
    while (i > floor && is_cont(static_cast<unsigned char>(s[i]))) --i;
  }
  return i;
}

inline bool is_space(unsigned char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

// ---- recursive splitter ------------------------------------------------------------------------

struct Splitter {
  std::string_view text;
  size_t size;
  const std::vector<std::string>& seps;
  std::vector<Span>& out;

  // Greedy code point chunks: what "" as separator means (merging single code points).
  void split_code_points(size_t b, size_t e) {
    while (b < e) {
      size_t next = advance_code_points(text.substr(0, e), b, size);
      out.push_back({b, next});
      b = next;
    }
  }

  void split(size_t b, size_t e, size_t level) {
    // First separator (from `level`) that occurs in the range; "" or exhaustion -> code points.
    size_t first_hit = std::string_view::npos;
    std::string_view sep;
    while (level < seps.size()) {
      sep = seps[level++];
      if (sep.empty()) break;
      first_hit = text.substr(0, e).find(sep, b);
      if (first_hit != std::string_view::npos) break;
    }
    if (first_hit == std::string_view::npos) {
      split_code_points(b, e);
      return;
    }
    const std::string_view range = text.substr(0, e);
    size_t cur_b = b, cur_e = b, cur_cps = 0;  // chunk being merged
    auto flush = [&] {
      if (cur_e > cur_b) out.push_back({cur_b, cur_e});
      cur_b = cur_e;
      cur_cps = 0;
    };
    size_t piece_b = b;
    size_t hit = first_hit;
    while (piece_b < e) {
      const size_t piece_e = hit == std::string_view::npos ? e : hit + sep.size();
      const size_t pc = cps_in(text, piece_b, piece_e);
      if (pc > size) {
        flush();
        split(piece_b, piece_e, level);
        // Reopen the long piece's last chunk so short pieces after it (often a lone separator
        // such as the second '\n' of a blank line) merge into it instead of standing alone.
        const Span tail = out.back();
        out.pop_back();
        cur_b = tail.begin;
        cur_e = tail.end;
        cur_cps = cps_in(text, cur_b, cur_e);
      } else {
        if (cur_cps + pc > size) flush();
        cur_e = piece_e;
        cur_cps += pc;
      }
      piece_b = piece_e;
      if (piece_b < e) hit = range.find(sep, piece_b);
    }
    flush();
  }
};

// Moves each span k > 0 back into span k-1 (see header). `spans` are contiguous zero-overlap spans.
void apply_overlap(std::string_view text, std::vector<Span>& spans, size_t size, size_t overlap) {
  if (overlap == 0 || spans.size() < 2) return;
  // Work from the back so spans[k-1] still holds its base (non-overlapped) begin when k is moved;
  // each span's code point count is computed once and reused as "prev" then "own".
  size_t k = spans.size() - 1;
  size_t own = cps_in(text, spans[k].begin, spans[k].end);
  for (; k > 0; --k) {
    const Span prev = spans[k - 1];
    const size_t prev_cps = cps_in(text, prev.begin, prev.end);
    const size_t b = spans[k].begin;
    if (own < size && prev_cps >= 2) {
      const size_t allowed = std::min({overlap, size - own, prev_cps - 1});
      // Never back to prev.begin (strictly increasing starts); retreat stops at that floor, which
      // may be mid code point, so resnap forward.
      size_t w = retreat_code_points(text, b, allowed, prev.begin + 1);
      while (w < b && is_cont(static_cast<unsigned char>(text[w]))) ++w;
      if (w < b && !is_space(static_cast<unsigned char>(text[w - 1]))) {
        for (size_t i = w; i + 1 < b; ++i) {
          if (is_space(static_cast<unsigned char>(text[i]))) {
            w = i + 1;
            break;
          }
        }
      }
      spans[k].begin = w;
    }
    own = prev_cps;
  }
}

// ---- sentence scanning -------------------------------------------------------------------------

// Offset of the next '.', '!', '?' or '\n' at or after i, or s.size().
size_t find_sentence_mark(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  constexpr uint64_t dot = k_ones * '.', bang = k_ones * '!', q = k_ones * '?', nl = k_ones * '\n';
  while (i + 8 <= n) {
    const uint64_t w = load_le64(p + i);
    auto zero = [](uint64_t x) { return (x - k_ones) & ~x & k_highs; };
    const uint64_t m = zero(w ^ dot) | zero(w ^ bang) | zero(w ^ q) | zero(w ^ nl);
    if (m) {
      // Borrow propagation can only flag bytes above a real match; the lowest flag is exact.
      return i + static_cast<size_t>(__builtin_ctzll(m) >> 3);
    }
    i += 8;
  }
  for (; i < n; ++i) {
    const unsigned char c = p[i];
    if (c == '.' || c == '!' || c == '?' || c == '\n') return i;
  }
  return n;
}

// Length of a closing quote/bracket at i (0 if none).
size_t closer_len(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == '"' || c == '\'' || c == ')' || c == ']' || c == '}') return 1;
  if (c == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80) {
    const unsigned char d = static_cast<unsigned char>(s[i + 2]);
    if (d == 0x9D || d == 0x99) return 3;  // ” ’
  }
  if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xBB) return 2;  // »
  return 0;
}

std::vector<Span> sentence_spans(std::string_view s) {
  std::vector<Span> out;
  const size_t n = s.size();
  size_t start = 0;
  size_t i = 0;
  auto skip_ws = [&](size_t j) {
    while (j < n && is_space(static_cast<unsigned char>(s[j]))) ++j;
    return j;
  };
  while (i < n) {
    i = find_sentence_mark(s, i);
    if (i >= n) break;
    size_t end = 0;  // sentence end if a boundary is found here
    if (s[i] == '\n') {
      size_t j = i + 1;
      while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r')) ++j;
      if (j < n && s[j] == '\n') end = skip_ws(j + 1);
    } else {
      size_t j = i + 1;
      while (j < n) {
        const size_t cl = closer_len(s, j);
        if (cl == 0) break;
        j += cl;
      }
      if (j < n && is_space(static_cast<unsigned char>(s[j]))) end = skip_ws(j + 1);
    }
    if (end > 0) {
      out.push_back({start, end});
      start = i = end;
    } else {
      ++i;
    }
  }
  if (start < n) out.push_back({start, n});
  return out;
}

// ---- entities ----------------------------------------------------------------------------------

struct NamedEntity {
  std::string_view name;
  uint32_t cp;
};

constexpr std::array<NamedEntity, 48> k_entities{{
    {"amp", '&'},        {"lt", '<'},          {"gt", '>'},          {"quot", '"'},
    {"apos", '\''},      {"nbsp", 0x00A0},     {"thinsp", 0x2009},   {"ensp", 0x2002},
    {"emsp", 0x2003},    {"ndash", 0x2013},    {"mdash", 0x2014},    {"lsquo", 0x2018},
    {"rsquo", 0x2019},   {"ldquo", 0x201C},    {"rdquo", 0x201D},    {"hellip", 0x2026},
    {"copy", 0x00A9},    {"reg", 0x00AE},      {"shy", 0x00AD},      {"zwj", 0x200D},
    {"zwnj", 0x200C},    {"lrm", 0x200E},      {"rlm", 0x200F},      {"AMP", '&'},
    {"LT", '<'},         {"GT", '>'},          {"QUOT", '"'},        {"laquo", 0x00AB},
    {"raquo", 0x00BB},   {"sbquo", 0x201A},    {"bdquo", 0x201E},    {"trade", 0x2122},
    {"bull", 0x2022},    {"middot", 0x00B7},   {"deg", 0x00B0},      {"times", 0x00D7},
    {"divide", 0x00F7},  {"euro", 0x20AC},     {"pound", 0x00A3},    {"yen", 0x00A5},
    {"cent", 0x00A2},    {"sect", 0x00A7},     {"para", 0x00B6},     {"iexcl", 0x00A1},
    {"iquest", 0x00BF},  {"dagger", 0x2020},   {"Dagger", 0x2021},   {"minus", 0x2212},
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
      if (_newlines > 0)
        _out.append(std::min<size_t>(_newlines, 2), '\n');
      else if (_space)
        _out.push_back(' ');
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

// Finds "</name" (case-insensitive, followed by a non-name byte or end) at or after i; npos if none.
size_t find_close_tag(std::string_view h, size_t i, std::string_view name) {
  while (true) {
    const size_t lt = h.find('<', i);
    if (lt == std::string_view::npos) return lt;
    const size_t nb = lt + 2;
    if (nb <= h.size() && lt + 1 < h.size() && h[lt + 1] == '/' && nb + name.size() <= h.size() &&
        iequals(h.substr(nb, name.size()), name) &&
        (nb + name.size() == h.size() || !is_alnum(static_cast<unsigned char>(h[nb + name.size()]))))
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

// ---- UTF-8 -------------------------------------------------------------------------------------

size_t count_code_points(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  return s.size() - count_continuations(p, p + s.size());
}

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* e = p + s.size();
  while (p < e) {
    if (e - p >= 8) {
      uint64_t w = 0;
      std::memcpy(&w, p, 8);
      if ((w & k_highs) == 0) {
        p += 8;
        continue;
      }
    }
    if (*p < 0x80) {
      ++p;
      continue;
    }
    const Decoded d = decode_at(p, e);
    if (!d.ok) return false;
    p += d.len;
  }
  return true;
}

std::string sanitize_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 16);
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const auto* p = b;
  const auto* e = b + s.size();
  while (p < e) {
    const Decoded d = decode_at(p, e);
    if (d.ok)
      out.append(reinterpret_cast<const char*>(p), d.len);
    else
      out.append("\xEF\xBF\xBD");
    p += d.len;
  }
  return out;
}

size_t advance_code_points(std::string_view s, size_t pos, size_t n) {
  const size_t size = s.size();
  size_t i = std::min(pos, size);
  for (size_t k = 0; k < n && i < size; ++k) {
    ++i;
    while (i < size && is_cont(static_cast<unsigned char>(s[i]))) ++i;
  }
  return i;
}

bool is_boundary(std::string_view s, size_t pos) {
  if (pos == s.size()) return true;
  return pos < s.size() && !is_cont(static_cast<unsigned char>(s[pos]));
}

// ---- Splitters ---------------------------------------------------------------------------------

const std::vector<std::string>& default_separators() {
  static const std::vector<std::string> seps{"\n\n", "\n", ". ", " ", ""};
  return seps;
}

std::vector<Span> split_recursive(std::string_view text, size_t size, size_t overlap,
                                  const std::vector<std::string>& separators) {
  std::vector<Span> out;
  if (text.empty()) return out;
  size = std::max<size_t>(size, 1);
  overlap = std::min(overlap, size - 1);
  out.reserve(text.size() / std::max<size_t>(size, 16) + 4);
  Splitter sp{text, size, separators, out};
  sp.split(0, text.size(), 0);
  apply_overlap(text, out, size, overlap);
  return out;
}

std::vector<Span> split_sentences(std::string_view text, size_t size, size_t overlap) {
  std::vector<Span> out;
  if (text.empty()) return out;
  size = std::max<size_t>(size, 1);
  overlap = std::min(overlap, size - 1);
  const std::vector<Span> sents = sentence_spans(text);
  std::vector<size_t> cps(sents.size());
  for (size_t i = 0; i < sents.size(); ++i) cps[i] = cps_in(text, sents[i].begin, sents[i].end);

  size_t first = 0, last = 0, cur = 0;  // current chunk = sentences [first, last), cur code points
  auto emit = [&] {
    if (last > first) out.push_back({sents[first].begin, sents[last - 1].end});
  };
  for (size_t i = 0; i < sents.size(); ++i) {
    if (cps[i] > size) {
      emit();
      first = last = i + 1;
      cur = 0;
      const Span s = sents[i];
      for (Span piece : split_recursive(text.substr(s.begin, s.end - s.begin), size, 0)) {
        out.push_back({piece.begin + s.begin, piece.end + s.begin});
      }
      continue;
    }
    if (last > first && cur + cps[i] > size) {
      emit();
      // Overlap tail: trailing whole sentences, never the whole chunk, fitting with sentence i.
      size_t t = last, tail = 0;
      while (overlap > 0 && t - 1 > first && tail + cps[t - 1] <= overlap &&
             tail + cps[t - 1] + cps[i] <= size) {
        --t;
        tail += cps[t];
      }
      first = t;
      cur = tail;
    }
    if (last == first) first = i;  // empty chunk starts here
    last = i + 1;
    cur += cps[i];
  }
  emit();
  return out;
}

// ---- HTML --------------------------------------------------------------------------------------

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
      if (c == '=')
        after_eq = true;
      else if (!is_space(static_cast<unsigned char>(c)))
        after_eq = false;
      ++k;
    }
    if (gt == std::string_view::npos) break;  // unclosed tag swallows the rest
    tag.attrs = h.substr(j, gt - j);
    tag.self_closing = gt > j && h[gt - 1] == '/';
    i = gt + 1;

    if (drop_depth > 0) {
      if (iequals(tag.name, drop_name)) {
        if (tag.close)
          --drop_depth;
        else if (!tag.self_closing)
          ++drop_depth;
      }
      continue;
    }

    if (tag.close) {
      if (is_newline_close(tag.name))
        out.newline();
      else if (iequals(tag.name, "td") || iequals(tag.name, "th"))
        out.space();
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

// ---- Hashing -----------------------------------------------------------------------------------

namespace {

inline void mum(uint64_t& a, uint64_t& b) {
  const __uint128_t r = static_cast<__uint128_t>(a) * b;
  a = static_cast<uint64_t>(r);
  b = static_cast<uint64_t>(r >> 64);
}

inline uint64_t mix(uint64_t a, uint64_t b) {
  mum(a, b);
  return a ^ b;
}

constexpr uint64_t k_p0 = 0xa0761d6478bd642fULL;
constexpr uint64_t k_p1 = 0xe7037ed1a0b428dbULL;
constexpr uint64_t k_p2 = 0x8ebc6af09c88c6e3ULL;
constexpr uint64_t k_p3 = 0x589965cc75374cc3ULL;

}  // namespace

uint64_t stable_hash64(std::string_view s, uint64_t seed) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t len = s.size();
  seed ^= mix(seed ^ k_p0, k_p1);
  uint64_t a = 0, b = 0;
  if (len <= 16) {
    if (len >= 4) {
      const size_t off = (len >> 3) << 2;
      a = (load_le32(p) << 32) | load_le32(p + off);
      b = (load_le32(p + len - 4) << 32) | load_le32(p + len - 4 - off);
    } else if (len > 0) {
      a = (static_cast<uint64_t>(p[0]) << 16) | (static_cast<uint64_t>(p[len >> 1]) << 8) |
          p[len - 1];
    }
  } else {
    size_t i = len;
    if (i > 48) {
      uint64_t s1 = seed, s2 = seed;
      do {
        seed = mix(load_le64(p) ^ k_p1, load_le64(p + 8) ^ seed);
        s1 = mix(load_le64(p + 16) ^ k_p2, load_le64(p + 24) ^ s1);
        s2 = mix(load_le64(p + 32) ^ k_p3, load_le64(p + 40) ^ s2);
        p += 48;
        i -= 48;
      } while (i > 48);
      seed ^= s1 ^ s2;
    }
    while (i > 16) {
      seed = mix(load_le64(p) ^ k_p1, load_le64(p + 8) ^ seed);
      i -= 16;
      p += 16;
    }
    a = load_le64(p + i - 16);
    b = load_le64(p + i - 8);
  }
  a ^= k_p1;
  b ^= seed;
  mum(a, b);
  return mix(a ^ k_p0 ^ len, b ^ k_p1);
}

}  // namespace sluice::text
