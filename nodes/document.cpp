#include "nodes/document.hpp"

#include <gumbo.h>
#include <md4c-html.h>
#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "engine/text/text.hpp"

namespace sluice::doc {

namespace {

// ---- sections ----------------------------------------------------------------------------------

constexpr size_t kMaxHeadingBytes = 200;

bool is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

// At most `max` bytes of `s`, cut at a character boundary.
std::string clip_utf8(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && !text::is_boundary(s, n)) --n;
  s.resize(n);
  return s;
}

std::string collapse_spaces(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (is_space(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// Text in, sections out: whitespace collapsed, block breaks as blank lines or newlines, a new
// section at each heading with the heading path of the levels above it.
class SectionBuilder {
 public:
  explicit SectionBuilder(Document& d) : _doc(d) {}

  void text(std::string_view s) {
    for (char c : s) {
      if (is_space(static_cast<unsigned char>(c))) {
        _space = true;
        continue;
      }
      put_pending();
      _text += c;
      _body = true;
    }
  }

  // A code block: fenced, its lines as they are.
  void code(std::string_view lang, std::string_view code) {
    while (!code.empty() && (code.back() == '\n' || code.back() == '\r')) code.remove_suffix(1);
    while (!code.empty() && code.front() == '\n') code.remove_prefix(1);
    if (code.empty()) return;
    block(2);
    put_pending();
    _text += "```";
    _text += lang;
    _text += '\n';
    _text += code;
    _text += "\n```";
    _body = true;
    block(2);
  }

  void block(int newlines) {
    _nl = std::max(_nl, newlines);
    _space = false;
  }

  void heading(int level, std::string text) {
    text = clip_utf8(collapse_spaces(text), kMaxHeadingBytes);
    if (text.empty()) return;
    flush();
    while (!_path.empty() && _path.back().first >= level) _path.pop_back();
    _path.emplace_back(level, text);
    if (_first_heading.empty()) _first_heading = text;
    if (level == 1 && _first_h1.empty()) _first_h1 = text;
    _heading.clear();
    for (const auto& [l, t] : _path) {
      if (!_heading.empty()) _heading += " > ";
      _heading += t;
    }
    _text = text;
    _heading_set = true;
    _body = false;
    _nl = 2;
    _space = false;
  }

  // Ends the document; its title is the first h1 (else the first heading) unless set already.
  void finish() {
    const bool none = _doc.sections.empty();
    flush(none);
    if (_doc.title.empty()) _doc.title = !_first_h1.empty() ? _first_h1 : _first_heading;
  }

 private:
  void put_pending() {
    if (_text.empty()) {
      _nl = 0;
      _space = false;
      return;
    }
    if (_nl > 0) {
      while (!_text.empty() && _text.back() == ' ') _text.pop_back();
      _text.append(static_cast<size_t>(std::min(_nl, 2)), '\n');
    } else if (_space && _text.back() != '\n') {
      _text += ' ';
    }
    _nl = 0;
    _space = false;
  }

  // A section that holds only its heading is left out unless `keep` (nothing else came).
  void flush(bool keep = false) {
    while (!_text.empty() && is_space(static_cast<unsigned char>(_text.back()))) _text.pop_back();
    if (!_text.empty() && (!_heading_set || _body || keep)) {
      Section s;
      s.heading = _heading;
      s.text = std::move(_text);
      _doc.sections.push_back(std::move(s));
    }
    _text.clear();
    _body = false;
    _nl = 0;
    _space = false;
  }

  Document& _doc;
  std::vector<std::pair<int, std::string>> _path;
  std::string _heading, _text, _first_heading, _first_h1;
  bool _heading_set = false;  // the current section began at a heading
  bool _body = false;         // it has text beyond its heading
  int _nl = 0;                // newlines owed before the next text
  bool _space = false;        // a space owed before the next text
};

// ---- HTML --------------------------------------------------------------------------------------

// Gumbo allocates through this arena and frees nothing; the whole tree goes at once. So no
// recursive gumbo_destroy_output runs over a hostile page's nesting.
class Arena {
 public:
  void* allocate(size_t n) {
    n = (n + 15) & ~size_t{15};
    if (n > _left) {
      const size_t size = std::max(n, std::min<size_t>(size_t{1} << 22, _next));
      _next = std::min<size_t>(_next * 2, size_t{1} << 22);
      _blocks.push_back(std::make_unique<unsigned char[]>(size));
      _at = _blocks.back().get();
      _left = size;
    }
    void* p = _at;
    _at += n;
    _left -= n;
    return p;
  }

 private:
  std::vector<std::unique_ptr<unsigned char[]>> _blocks;
  unsigned char* _at = nullptr;
  size_t _left = 0, _next = size_t{1} << 16;
};

void* arena_allocate(void* arena, size_t n) { return static_cast<Arena*>(arena)->allocate(n); }
void arena_free(void*, void*) {}

bool has_attr(const GumboNode* n, const char* name) {
  return gumbo_get_attribute(&n->v.element.attributes, name) != nullptr;
}
std::string_view attr(const GumboNode* n, const char* name) {
  const GumboAttribute* a = gumbo_get_attribute(&n->v.element.attributes, name);
  return a ? std::string_view(a->value) : std::string_view();
}

bool is_element(const GumboNode* n) { return n->type == GUMBO_NODE_ELEMENT; }
GumboTag tag_of(const GumboNode* n) { return is_element(n) ? n->v.element.tag : GUMBO_TAG_UNKNOWN; }

const GumboVector* children_of(const GumboNode* n) {
  if (n->type == GUMBO_NODE_ELEMENT || n->type == GUMBO_NODE_TEMPLATE)
    return &n->v.element.children;
  if (n->type == GUMBO_NODE_DOCUMENT) return &n->v.document.children;
  return nullptr;
}

// Never text: code, styling, embedded objects and form controls.
bool never_text(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_SCRIPT:
    case GUMBO_TAG_STYLE:
    case GUMBO_TAG_NOSCRIPT:
    case GUMBO_TAG_TEMPLATE:
    case GUMBO_TAG_HEAD:
    case GUMBO_TAG_SVG:
    case GUMBO_TAG_MATH:
    case GUMBO_TAG_IFRAME:
    case GUMBO_TAG_OBJECT:
    case GUMBO_TAG_EMBED:
    case GUMBO_TAG_CANVAS:
    case GUMBO_TAG_SELECT:
    case GUMBO_TAG_BUTTON:
    case GUMBO_TAG_INPUT:
    case GUMBO_TAG_TEXTAREA:
    case GUMBO_TAG_IMG:
    case GUMBO_TAG_AUDIO:
    case GUMBO_TAG_VIDEO:
    case GUMBO_TAG_MAP: return true;
    default: return false;
  }
}

// A web page's chrome around its content.
bool is_chrome(const GumboNode* n, bool top_level) {
  switch (tag_of(n)) {
    case GUMBO_TAG_NAV:
    case GUMBO_TAG_ASIDE:
    case GUMBO_TAG_MENU: return true;
    case GUMBO_TAG_HEADER:
    case GUMBO_TAG_FOOTER:
      return top_level;  // inside <main> or an <article> they are the content's own
    default: break;
  }
  std::string_view role = attr(n, "role");
  if (role == "navigation" || role == "banner" || role == "contentinfo" ||
      role == "complementary" || role == "search" || role == "menu" || role == "menubar")
    return true;
  return has_attr(n, "hidden") || attr(n, "aria-hidden") == "true";
}

int heading_level(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_H1: return 1;
    case GUMBO_TAG_H2: return 2;
    case GUMBO_TAG_H3: return 3;
    case GUMBO_TAG_H4: return 4;
    case GUMBO_TAG_H5: return 5;
    case GUMBO_TAG_H6: return 6;
    default: return 0;
  }
}

// Newlines around a block element (0: inline).
int block_newlines(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_P:
    case GUMBO_TAG_BLOCKQUOTE:
    case GUMBO_TAG_UL:
    case GUMBO_TAG_OL:
    case GUMBO_TAG_DL:
    case GUMBO_TAG_TABLE:
    case GUMBO_TAG_FIGURE:
    case GUMBO_TAG_HR:
    case GUMBO_TAG_ADDRESS:
    case GUMBO_TAG_DETAILS:
    case GUMBO_TAG_FIELDSET:
    case GUMBO_TAG_CENTER: return 2;
    case GUMBO_TAG_DIV:
    case GUMBO_TAG_SECTION:
    case GUMBO_TAG_ARTICLE:
    case GUMBO_TAG_MAIN:
    case GUMBO_TAG_LI:
    case GUMBO_TAG_DT:
    case GUMBO_TAG_DD:
    case GUMBO_TAG_TR:
    case GUMBO_TAG_SUMMARY:
    case GUMBO_TAG_FIGCAPTION:
    case GUMBO_TAG_CAPTION:
    case GUMBO_TAG_HEADER:
    case GUMBO_TAG_FOOTER:
    case GUMBO_TAG_BR:
    case GUMBO_TAG_BODY: return 1;
    default: return 0;
  }
}

// The text under `root` in document order (no recursion), skipping what is never text.
std::string inner_text(const GumboNode* root) {
  std::string out;
  std::vector<std::pair<const GumboNode*, unsigned>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [n, i] = stack.back();
    if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_CDATA ||
        n->type == GUMBO_NODE_WHITESPACE) {
      out += n->v.text.text;
      stack.pop_back();
      continue;
    }
    const GumboVector* kids = children_of(n);
    if (!kids || i >= kids->length || never_text(tag_of(n))) {
      if (tag_of(n) == GUMBO_TAG_BR) out += '\n';
      stack.pop_back();
      continue;
    }
    stack.emplace_back(static_cast<const GumboNode*>(kids->data[i++]), 0);
  }
  return out;
}

// The first element under `root` (document order) that `pred` accepts, and how many it accepts.
template <class Pred>
std::pair<const GumboNode*, int> find_elements(const GumboNode* root, Pred pred) {
  const GumboNode* first = nullptr;
  int count = 0;
  std::vector<const GumboNode*> stack{root};
  while (!stack.empty()) {
    const GumboNode* n = stack.back();
    stack.pop_back();
    if (is_element(n) && pred(n)) {
      if (!first) first = n;
      ++count;
      continue;  // not inside a match
    }
    if (const GumboVector* kids = children_of(n))
      for (unsigned i = kids->length; i-- > 0;)
        stack.push_back(static_cast<const GumboNode*>(kids->data[i]));
  }
  return {first, count};
}

// The walk over the content element: enter and leave events from an explicit stack.
void walk(const GumboNode* root, bool main_only, bool top_level, SectionBuilder& out) {
  struct Frame {
    const GumboNode* node;
    unsigned next = 0;
  };
  std::vector<Frame> stack{{root}};
  std::vector<int> lists;                         // -1 for <ul>, else the next number of an <ol>
  std::vector<int> cells;                         // cells so far in each open <tr>
  auto enter = [&](const GumboNode* n) -> bool {  // false: skip its content
    if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_CDATA) {
      out.text(n->v.text.text);
      return false;
    }
    if (n->type == GUMBO_NODE_WHITESPACE) {
      out.text(" ");
      return false;
    }
    if (!is_element(n)) return false;  // comments
    const GumboTag t = tag_of(n);
    if (never_text(t) || (main_only && is_chrome(n, top_level))) return false;
    if (int level = heading_level(t)) {
      out.heading(level, inner_text(n));
      return false;
    }
    if (t == GUMBO_TAG_PRE) {
      std::string lang;
      if (const GumboNode* code = find_elements(n, [](const GumboNode* e) {
                                    return tag_of(e) == GUMBO_TAG_CODE;
                                  }).first) {
        std::string_view cls = attr(code, "class");
        if (size_t at = cls.find("language-"); at != std::string_view::npos) {
          cls.remove_prefix(at + 9);
          lang = std::string(cls.substr(0, std::min<size_t>(cls.find(' '), 32)));
        }
      }
      out.code(lang, inner_text(n));
      return false;
    }
    if (int nl = block_newlines(t)) out.block(nl);
    if (t == GUMBO_TAG_UL) lists.push_back(-1);
    else if (t == GUMBO_TAG_OL) {
      int start = 1;
      std::string_view s = attr(n, "start");
      if (!s.empty() && s.size() < 9 &&
          std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        start = std::stoi(std::string(s));
      lists.push_back(start);
    } else if (t == GUMBO_TAG_LI) {
      if (!lists.empty() && lists.back() >= 0) out.text(std::to_string(lists.back()++) + ". ");
      else out.text("- ");
    } else if (t == GUMBO_TAG_TR) {
      cells.push_back(0);
    } else if (t == GUMBO_TAG_TD || t == GUMBO_TAG_TH) {
      if (!cells.empty() && cells.back()++ > 0) out.text(" | ");
    }
    return true;
  };
  auto leave = [&](const GumboNode* n) {
    const GumboTag t = tag_of(n);
    if (int nl = block_newlines(t)) out.block(nl);
    if ((t == GUMBO_TAG_UL || t == GUMBO_TAG_OL) && !lists.empty()) lists.pop_back();
    if (t == GUMBO_TAG_TR && !cells.empty()) cells.pop_back();
  };
  if (!enter(root)) return;
  while (!stack.empty()) {
    Frame& f = stack.back();
    const GumboVector* kids = children_of(f.node);
    if (!kids || f.next >= kids->length) {
      leave(f.node);
      stack.pop_back();
      continue;
    }
    const GumboNode* child = static_cast<const GumboNode*>(kids->data[f.next++]);
    if (enter(child)) stack.push_back({child});
  }
}

// How deep `html` nests elements, counted by a linear scan of its tags, stopping past `limit`.
// Gumbo's tree builder walks the stack of open elements for most tags, so its time grows with
// tags x depth (20,000 nested <div>s took 7.7 s, 40,000 took 35 s): a page nested deeper than
// any real one is read by the linear html_to_text instead. Elements whose end tag is optional
// (p, li, td, ...) and void ones do not nest here, as they do not in the parser; raw text
// (script, style, textarea, title) and comments are skipped.
size_t nesting_depth(std::string_view html, size_t limit) {
  auto lower_name = [&](size_t& i) {
    std::string name;
    while (i < html.size() && name.size() < 16 &&
           (std::isalnum(static_cast<unsigned char>(html[i])) || html[i] == '-'))
      name += static_cast<char>(std::tolower(static_cast<unsigned char>(html[i++])));
    return name;
  };
  static const char* const kFlat[] = {
      "area",    "base",     "br",      "col",    "embed",    "hr",    "img",   "input", "link",
      "meta",    "param",    "source",  "track",  "wbr",      "p",     "li",    "td",    "th",
      "tr",      "dt",       "dd",      "option", "optgroup", "thead", "tbody", "tfoot", "colgroup",
      "caption", "rb",       "rt",      "rtc",    "rp",       "html",  "head",  "body",  "frame",
      "keygen",  "basefont", "bgsound", "image",  "menuitem"};
  auto flat = [](const std::string& n) {
    for (const char* f : kFlat)
      if (n == f) return true;
    return false;
  };
  auto find_ci = [&](size_t from, std::string_view needle) {
    for (size_t i = from; i + needle.size() <= html.size(); ++i) {
      size_t k = 0;
      while (k < needle.size() &&
             std::tolower(static_cast<unsigned char>(html[i + k])) == needle[k])
        ++k;
      if (k == needle.size()) return i;
    }
    return html.size();
  };
  size_t depth = 0, deepest = 0, i = 0;
  while ((i = html.find('<', i)) != std::string_view::npos && deepest <= limit) {
    ++i;
    if (html.substr(i, 3) == "!--") {
      size_t end = html.find("-->", i + 3);
      i = end == std::string_view::npos ? html.size() : end + 3;
      continue;
    }
    const bool closing = i < html.size() && html[i] == '/';
    if (closing) ++i;
    std::string name = lower_name(i);
    if (name.empty()) continue;
    const size_t gt = html.find('>', i);
    if (gt == std::string_view::npos) break;
    if (closing) {
      if (!flat(name) && depth > 0) --depth;
    } else if (name == "script" || name == "style" || name == "textarea" || name == "title" ||
               name == "xmp" || name == "plaintext") {
      i = find_ci(gt, "</" + name);
      continue;
    } else if (!flat(name) && html[gt - 1] != '/') {
      deepest = std::max(deepest, ++depth);
    }
    i = gt + 1;
  }
  return deepest;
}

constexpr size_t kMaxNesting = 512;

// ---- PDF ---------------------------------------------------------------------------------------

// Page text as poppler lays it out: spaces collapsed, lines trimmed, a word hyphenated across a
// line break joined, at most one blank line in a row.
std::string tidy_page(std::string_view s) {
  std::string out;
  size_t blank = 0;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t nl = s.find('\n', pos);
    if (nl == std::string_view::npos) nl = s.size();
    std::string line = collapse_spaces(s.substr(pos, nl - pos));
    pos = nl + 1;
    if (line.empty()) {
      ++blank;
      continue;
    }
    if (!out.empty()) {
      const bool hyphen = out.size() >= 2 && out.back() == '-' &&
                          std::islower(static_cast<unsigned char>(out[out.size() - 2])) &&
                          std::islower(static_cast<unsigned char>(line[0]));
      if (hyphen) out.pop_back();
      else out += blank > 0 ? "\n\n" : "\n";
    }
    blank = 0;
    out += line;
  }
  return out;
}

std::string utf8_of(const poppler::ustring& u) {
  poppler::byte_array b = u.to_utf8();
  std::string s(b.begin(), b.end());
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return text::is_valid_utf8(s) ? s : text::sanitize_utf8(s);
}

void quiet(const std::string&, void*) {}

// Poppler builds some process-wide state lazily and unguarded on first use: do that once, alone.
std::once_flag g_poppler_once;

}  // namespace

// ---- public ------------------------------------------------------------------------------------

Document from_html(std::string_view html, bool main_only) {
  if (nesting_depth(html, kMaxNesting) > kMaxNesting) {
    Document flat;
    std::string text = text::html_to_text(html);
    if (!text.empty()) flat.sections.push_back(Section{"", std::move(text), 0});
    return flat;
  }
  Arena arena;
  GumboOptions options = kGumboDefaultOptions;
  options.allocator = arena_allocate;
  options.deallocator = arena_free;
  options.userdata = &arena;
  options.max_errors = 0;
  GumboOutput* parsed = gumbo_parse_with_options(&options, html.data(), html.size());
  Document d;
  if (!parsed) return d;
  const GumboNode* title = find_elements(parsed->root, [](const GumboNode* e) {
                             return tag_of(e) == GUMBO_TAG_TITLE;
                           }).first;
  if (title) d.title = clip_utf8(collapse_spaces(inner_text(title)), kMaxHeadingBytes);
  const GumboNode* root = nullptr;
  bool top_level = true;
  if (main_only) {
    auto [main, n_main] = find_elements(parsed->root, [](const GumboNode* e) {
      return tag_of(e) == GUMBO_TAG_MAIN || attr(e, "role") == "main";
    });
    auto [article, n_articles] = find_elements(
        parsed->root, [](const GumboNode* e) { return tag_of(e) == GUMBO_TAG_ARTICLE; });
    root = main ? main : n_articles == 1 ? article : nullptr;
    top_level = root == nullptr;
  }
  if (!root)
    root = find_elements(parsed->root, [](const GumboNode* e) {
             return tag_of(e) == GUMBO_TAG_BODY;
           }).first;
  if (!root) root = parsed->root;
  SectionBuilder out(d);
  walk(root, main_only, top_level, out);
  out.finish();
  for (auto& s : d.sections)
    if (!text::is_valid_utf8(s.text)) s.text = text::sanitize_utf8(s.text);
  return d;
}

Document from_markdown(std::string_view md) {
  Document d;
  // Front matter: "---" alone on the first line, up to a line "---" or "..." within 64 KiB.
  if (md.starts_with("---\n") || md.starts_with("---\r\n")) {
    size_t pos = md.find('\n') + 1, end = std::string_view::npos;
    std::string key;
    while (pos < md.size() && pos < 65536) {
      size_t nl = md.find('\n', pos);
      if (nl == std::string_view::npos) break;
      std::string_view line = md.substr(pos, nl - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      pos = nl + 1;
      if (line == "---" || line == "...") {
        end = pos;
        break;
      }
      auto unquote = [](std::string v) {
        v = collapse_spaces(v);
        if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front())
          v = v.substr(1, v.size() - 2);
        return v;
      };
      std::string_view t = line;
      while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
      if (t.starts_with("- ") && !key.empty() && !d.front_matter.empty() &&
          d.front_matter.back().first == key) {
        std::string& v = d.front_matter.back().second;
        v += (v.empty() ? "" : ", ") + unquote(std::string(t.substr(2)));
        continue;
      }
      size_t colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0 || line[0] == ' ' || line[0] == '#')
        continue;
      key = collapse_spaces(line.substr(0, colon));
      if (key.size() > 64 || key.find(' ') != std::string::npos) {
        key.clear();
        continue;
      }
      d.front_matter.emplace_back(key, unquote(std::string(line.substr(colon + 1))));
      if (d.front_matter.back().second == "[]") d.front_matter.back().second.clear();
    }
    if (end != std::string_view::npos) md.remove_prefix(end);
    else d.front_matter.clear();  // not front matter after all: a thematic break
  }
  std::string html;
  html.reserve(md.size() + md.size() / 4);
  md_html(
      md.data(), static_cast<MD_SIZE>(std::min<size_t>(md.size(), 0xFFFFFFFFu)),
      [](const MD_CHAR* s, MD_SIZE n, void* out) { static_cast<std::string*>(out)->append(s, n); },
      &html, MD_DIALECT_GITHUB, MD_HTML_FLAG_SKIP_UTF8_BOM);
  Document body = from_html(html, false);
  d.sections = std::move(body.sections);
  for (const auto& [k, v] : d.front_matter)
    if (k == "title" && !v.empty()) d.title = clip_utf8(v, kMaxHeadingBytes);
  if (d.title.empty()) d.title = std::move(body.title);
  return d;
}

Document from_pdf(std::string_view bytes) {
  if (bytes.size() > 0x7FFFFFFF) throw std::runtime_error("PDF larger than 2 GiB");
  if (bytes.find("%PDF-") > 1024) throw std::runtime_error("not a PDF (no %PDF- header)");
  auto extract = [&] {
    std::unique_ptr<poppler::document> pdf(
        poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
    if (!pdf) throw std::runtime_error("PDF could not be read (damaged or not a PDF)");
    if (pdf->is_locked()) throw std::runtime_error("PDF is encrypted: it needs a password");
    Document d;
    d.title = clip_utf8(collapse_spaces(utf8_of(pdf->get_title())), kMaxHeadingBytes);
    const int pages = pdf->pages();
    for (int i = 0; i < pages; ++i) {
      std::unique_ptr<poppler::page> page(pdf->create_page(i));
      if (!page) continue;
      std::string text = tidy_page(
          utf8_of(page->text(poppler::rectf(), poppler::page::non_raw_non_physical_layout)));
      if (text.empty()) continue;
      Section s;
      s.text = std::move(text);
      s.page = i + 1;
      d.sections.push_back(std::move(s));
    }
    return d;
  };
  // The first document is read alone: the others wait in call_once until it is done (a throw
  // leaves the flag unset, and the next document is the first).
  std::optional<Document> first;
  std::call_once(g_poppler_once, [&] {
    poppler::set_debug_error_function(quiet, nullptr);
    first = extract();
  });
  if (first) return std::move(*first);
  return extract();
}

const char* format_name(Format f) {
  switch (f) {
    case Format::text: return "text";
    case Format::markdown: return "markdown";
    case Format::html: return "html";
    case Format::pdf: return "pdf";
    case Format::binary: return "binary";
  }
  return "text";
}

std::string extension_of(std::string_view name) {
  name = name.substr(0, std::min(name.find('?'), name.find('#')));
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || name.find('/', dot) != std::string_view::npos) return "";
  std::string ext(name.substr(dot));
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext;
}

Format detect(std::string_view name, std::string_view content_type, std::string_view content) {
  std::string_view head = content.substr(0, 8192);
  if (head.substr(0, 1024).find("%PDF-") != std::string_view::npos) return Format::pdf;
  std::string_view lead = head;
  if (lead.starts_with("\xEF\xBB\xBF")) lead.remove_prefix(3);
  while (!lead.empty() && is_space(static_cast<unsigned char>(lead.front()))) lead.remove_prefix(1);
  std::string start(lead.substr(0, 15));
  std::transform(start.begin(), start.end(), start.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (start.starts_with("<!doctype html") || start.starts_with("<html")) return Format::html;
  if (head.find('\0') != std::string_view::npos) return Format::binary;
  // A head cut inside a character is still text.
  size_t valid = head.size();
  if (content.size() > head.size())
    for (size_t k = 0;
         k < 3 && valid > 0 && (static_cast<unsigned char>(head[valid - 1]) & 0xC0) == 0x80; ++k)
      --valid;
  if (valid > 0 && content.size() > head.size() &&
      (static_cast<unsigned char>(head[valid - 1]) & 0xC0) == 0xC0)
    --valid;
  if (!text::is_valid_utf8(head.substr(0, valid))) return Format::binary;
  const std::string ext = extension_of(name);
  std::string type(content_type.substr(0, content_type.find(';')));
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext == ".md" || ext == ".markdown" || ext == ".mdx" || type == "text/markdown")
    return Format::markdown;
  if (ext == ".html" || ext == ".htm" || ext == ".xhtml" || type == "text/html" ||
      type == "application/xhtml+xml")
    return Format::html;
  if (ext == ".pdf" || type == "application/pdf") return Format::pdf;
  return Format::text;
}

}  // namespace sluice::doc
