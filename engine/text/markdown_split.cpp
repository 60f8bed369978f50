// The structure-aware splitter (split_markdown in text.hpp): blocks first, then chunks of blocks.
#include <algorithm>

#include "engine/text/measure.hpp"

namespace sluice::text {

namespace {

enum class Kind { paragraph, heading, code, table };

struct Block {
  Kind kind = Kind::paragraph;
  size_t begin = 0, end = 0;  // bytes; end excludes the line break after the block
  size_t cps = 0;             // size in the Measure's units
  int level = 0;              // heading level
  std::string title;          // heading text
};

bool blank_byte(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

struct Line {
  size_t begin, end;  // without the '\n'
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// "```" or "~~~" (three or more) after at most three spaces: the fence's char and length.
bool fence_of(std::string_view line, char& ch, size_t& len) {
  size_t i = 0;
  while (i < 3 && i < line.size() && line[i] == ' ') ++i;
  if (i >= line.size() || (line[i] != '`' && line[i] != '~')) return false;
  const char c = line[i];
  size_t n = 0;
  while (i + n < line.size() && line[i + n] == c) ++n;
  if (n < 3) return false;
  ch = c;
  len = n;
  return true;
}

// "# Title" .. "###### Title": the level (0 when the line is no ATX heading) and the title.
int heading_of(std::string_view line, std::string& title) {
  size_t i = 0;
  while (i < 3 && i < line.size() && line[i] == ' ') ++i;
  size_t n = 0;
  while (i + n < line.size() && line[i + n] == '#') ++n;
  if (n == 0 || n > 6) return 0;
  if (i + n < line.size() && line[i + n] != ' ' && line[i + n] != '\t') return 0;
  std::string_view t = trim(line.substr(i + n));
  while (!t.empty() && t.back() == '#') t.remove_suffix(1);  // closing sequence
  title = std::string(trim(t));
  return static_cast<int>(n);
}

std::vector<Block> blocks_of(std::string_view text, const Measure& m) {
  std::vector<Line> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back({pos, nl});
    pos = nl + 1;
  }
  auto view = [&](const Line& l) { return text.substr(l.begin, l.end - l.begin); };
  auto blank = [&](const Line& l) { return trim(view(l)).empty(); };
  auto has_pipe = [&](const Line& l) { return view(l).find('|') != std::string_view::npos; };
  std::vector<Block> out;
  for (size_t i = 0; i < lines.size();) {
    if (blank(lines[i])) {
      ++i;
      continue;
    }
    Block b;
    b.begin = lines[i].begin;
    char ch = 0;
    size_t len = 0;
    std::string title;
    if (fence_of(view(lines[i]), ch, len)) {
      b.kind = Kind::code;
      size_t j = i + 1;
      for (; j < lines.size(); ++j) {
        char c2 = 0;
        size_t l2 = 0;
        if (fence_of(view(lines[j]), c2, l2) && c2 == ch && l2 >= len &&
            trim(view(lines[j])).find_first_not_of(ch) == std::string_view::npos)
          break;
      }
      const size_t last = std::min(j, lines.size() - 1);  // an unclosed fence runs to the end
      b.end = lines[last].end;
      i = last + 1;
    } else if (int level = heading_of(view(lines[i]), title)) {
      b.kind = Kind::heading;
      b.level = level;
      b.title = std::move(title);
      b.end = lines[i].end;
      ++i;
    } else if (i + 1 < lines.size() && has_pipe(lines[i]) && has_pipe(lines[i + 1]) &&
               !blank(lines[i + 1])) {
      b.kind = Kind::table;
      size_t j = i;
      while (j < lines.size() && !blank(lines[j]) && has_pipe(lines[j])) ++j;
      b.end = lines[j - 1].end;
      i = j;
    } else {
      // A paragraph (a list too): lines up to a blank line, a fence or a heading.
      size_t j = i + 1;
      while (j < lines.size() && !blank(lines[j]) && !fence_of(view(lines[j]), ch, len) &&
             !heading_of(view(lines[j]), title))
        ++j;
      b.end = lines[j - 1].end;
      i = j;
    }
    while (b.begin < b.end && blank_byte(text[b.begin])) ++b.begin;
    while (b.end > b.begin && blank_byte(text[b.end - 1])) --b.end;
    b.cps = m.count(b.begin, b.end);
    out.push_back(std::move(b));
  }
  return out;
}

// Where an overlap into [begin, end) of `text` may start: up to `overlap` units before `end`, at
// the start of a word (just after whitespace), never at `begin` itself.
size_t overlap_start(std::string_view text, size_t begin, size_t end, size_t overlap,
                     const Measure& m) {
  size_t at = m.retreat(end, overlap, begin + 1);
  while (at < end && !is_boundary(text, at)) ++at;
  while (at < end && !(text[at - 1] == ' ' || text[at - 1] == '\n' || text[at - 1] == '\t')) ++at;
  while (at < end && (text[at] == ' ' || text[at] == '\n' || text[at] == '\t' || text[at] == '\r'))
    ++at;
  return at;
}

}  // namespace

std::vector<MarkdownSpan> split_markdown(std::string_view text, size_t size, size_t overlap) {
  return split_markdown(text, size, overlap, CodePointMeasure(text));
}

std::vector<MarkdownSpan> split_markdown(std::string_view text, size_t size, size_t overlap,
                                         const Measure& m) {
  size = std::max<size_t>(size, 1);
  if (overlap >= size) overlap = size - 1;
  std::vector<MarkdownSpan> out;
  std::vector<std::pair<int, std::string>> path;
  std::string heading;
  // The chunk being filled: blocks [first, last] of the current section.
  bool open = false;
  size_t c_begin = 0, c_end = 0, c_cps = 0;
  bool c_prose_tail = false;  // its last block is prose (overlap may come from it)
  auto flush = [&] {
    if (open) out.push_back({{c_begin, c_end}, heading});
    open = false;
  };
  auto start = [&](const Block& b, bool with_overlap) {
    size_t begin = b.begin;
    if (with_overlap && overlap > 0 && !out.empty() && c_prose_tail) {
      const Span& prev = out.back().span;
      const size_t at = overlap_start(text, prev.begin, prev.end, overlap, m);
      if (at < prev.end && m.count(at, b.end) <= size) begin = at;
    }
    c_begin = begin;
    c_end = b.end;
    c_cps = m.count(c_begin, c_end);
    c_prose_tail = b.kind == Kind::paragraph;
    open = true;
  };
  for (const Block& b : blocks_of(text, m)) {
    if (b.kind == Kind::heading) {
      flush();
      while (!path.empty() && path.back().first >= b.level) path.pop_back();
      path.emplace_back(b.level, b.title);
      heading.clear();
      for (const auto& [level, t] : path) heading += (heading.empty() ? "" : " > ") + t;
      if (b.cps <= size) {
        start(b, false);  // a section's first chunk starts at its heading
        c_prose_tail = false;
        continue;
      }
    }
    const size_t gap = open ? m.count(c_end, b.begin) : 0;
    if (open && c_cps + gap + b.cps <= size) {
      c_end = b.end;
      c_cps += gap + b.cps;
      c_prose_tail = b.kind == Kind::paragraph;
      continue;
    }
    const bool had_chunk = open;
    flush();
    if (b.cps <= size) {
      start(b, had_chunk);
      continue;
    }
    // A block longer than a chunk: code and tables split between lines first, prose as the
    // recursive splitter does; each piece a chunk of its own.
    static const std::vector<std::string> kLines = {"\n", " ", ""};
    for (const Span& s :
         split_range(text, b.begin, b.end, size,
                     b.kind == Kind::paragraph ? default_separators() : kLines, m)) {
      size_t sb = s.begin, se = s.end;
      while (se > sb && blank_byte(text[se - 1])) --se;
      while (sb < se && blank_byte(text[sb])) ++sb;
      if (se > sb) out.push_back({{sb, se}, heading});
    }
    c_prose_tail = false;
  }
  flush();
  // A chunk that is only a heading (its section had nothing before the next heading) goes.
  if (out.size() > 1)
    out.erase(
        std::remove_if(out.begin(), out.end(),
                       [&](const MarkdownSpan& s) {
                         std::string title;
                         std::string_view t = text.substr(s.span.begin, s.span.end - s.span.begin);
                         return t.find('\n') == std::string_view::npos && heading_of(t, title) > 0;
                       }),
        out.end());
  return out;
}

}  // namespace sluice::text
