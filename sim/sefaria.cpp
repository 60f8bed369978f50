// The Sefaria-shaped API (index, v3 texts, shape) over a small fixed library with every shape
// the real one has, plus synthetic books.
#include "sim/server_impl.hpp"

namespace sluice::sim {

const std::vector<SefBook>& sef_books() {
  static const std::vector<SefBook> books = {
      {"Genesis", "בראשית", {"Tanakh", "Torah"}, SefKind::simple, {4, 3, 5}, {}, {}},
      {"Exodus", "שמות", {"Tanakh", "Torah"}, SefKind::simple, {3, 4}, {}, {}},
      {"Psalms", "תהילים", {"Tanakh", "Writings"}, SefKind::simple, {2, 6, 3}, {}, {}},
      {"Berakhot",
       "ברכות",
       {"Talmud", "Bavli", "Seder Zeraim"},
       SefKind::talmud,
       {0, 0, 3, 4, 2},
       {},
       {}},
      {"Rashi on Genesis",
       "רש\"י על בראשית",
       {"Tanakh", "Commentary", "Rashi", "Torah"},
       SefKind::depth3,
       {},
       {{2, 1, 0}, {0, 0}, {1, 3}},
       {}},
      {"Pesach Haggadah",
       "הגדה של פסח",
       {"Liturgy", "Haggadah"},
       SefKind::complex,
       {},
       {},
       {{"Kadesh", "קדש", 2}, {"Urchatz", "ורחץ", 1}, {"Maggid", "מגיד", 4}}},
  };
  return books;
}

constexpr std::string_view kHebrewWords[] = {"בראשית", "ברא",  "אלהים", "את",   "השמים",
                                             "ואת",    "הארץ", "והארץ", "היתה", "תהו",
                                             "ובהו",   "וחשך", "על",    "פני",  "תהום"};

// One segment of text with the markup the real library carries (English) or plain Hebrew.
// text_only drops footnotes as a unit and all tags, leaving entities encoded (as Sefaria does).
// Footnotes dropped alone keep the other tags (return_format=strip_only_footnotes).
void sef_segment(std::string& out, uint64_t state, bool english, bool drop_tags,
                 bool drop_footnotes) {
  int words = 6 + int(splitmix64(state) % 14);
  for (int i = 0; i < words; ++i) {
    if (i) out.append(splitmix64(state) % 9 == 0 ? "&nbsp;" : " ");
    if (!english) {
      out.append(kHebrewWords[splitmix64(state) % std::size(kHebrewWords)]);
      continue;
    }
    std::string_view w = kWords[splitmix64(state) % kWordCount];
    uint64_t roll = splitmix64(state) % 16;
    if (roll == 0 && !drop_tags) out.append("<b>").append(w).append("</b>");
    else if (roll == 1 && !drop_tags) out.append("<i>").append(w).append("</i>");
    else out.append(w);
    if (roll == 2 && !drop_footnotes)
      out.append("<sup class=\"footnote-marker\">a</sup><i class=\"footnote\">Lit. <i>")
          .append(w)
          .append("</i>, see the note&thinsp;above.</i>");
    if (roll == 3 && !drop_tags)
      out.append("<i data-commentator=\"Rashi\" data-order=\"1.1\"></i>");
    if (roll == 4 && !drop_tags) out.append("<br>");
  }
  out.push_back(english ? '.' : ':');
}

const char* SimServer::Impl::he_category(std::string_view en) {
  static const std::pair<std::string_view, const char*> names[] = {
      {"Tanakh", "תנ״ך"},       {"Torah", "תורה"}, {"Writings", "כתובים"},
      {"Talmud", "תלמוד"},      {"Bavli", "בבלי"}, {"Seder Zeraim", "סדר זרעים"},
      {"Commentary", "מפרשים"}, {"Rashi", "רש״י"}, {"Liturgy", "תפילה"},
      {"Haggadah", "הגדה"}};
  for (auto& [e, h] : names)
    if (e == en) return h;
  return "";
}

void SimServer::Impl::emit_category(std::string& out, const CatNode& n) {
  out.append("{\"category\":");
  json::append_quoted(out, n.name);
  out.append(",\"heCategory\":");
  json::append_quoted(out, he_category(n.name));
  out.append(",\"contents\":[");
  bool first = true;
  for (const SefBook* b : n.books) {
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"title\":");
    json::append_quoted(out, b->title);
    out.append(",\"heTitle\":");
    json::append_quoted(out, b->he_title);
    out.append(",\"categories\":[");
    for (size_t i = 0; i < b->categories.size(); ++i) {
      if (i) out.push_back(',');
      json::append_quoted(out, b->categories[i]);
    }
    out.append("],\"primary_category\":");
    json::append_quoted(out, b->categories[0]);
    out.append(",\"enShortDesc\":\"A simulated text.\"}");
  }
  if (n.collection) {
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"title\":\"Siddur Collection\",\"heTitle\":\"סידור\",\"isCollection\":true,"
               "\"nodeType\":\"TocCollectionNode\",\"enShortDesc\":\"Not a text: skip it.\"}");
  }
  for (const CatNode& c : n.cats) {
    if (!first) out.push_back(',');
    first = false;
    emit_category(out, c);
  }
  out.append("]}");
}

int SimServer::Impl::sefaria_index() {
  if (sef_index_body.empty()) {
    CatNode root;
    for (const SefBook& b : sef_library) {
      CatNode* n = &root;
      for (const char* cat : b.categories) {
        auto it = std::find_if(n->cats.begin(), n->cats.end(),
                               [&](const CatNode& c) { return c.name == cat; });
        if (it == n->cats.end()) {
          n->cats.push_back(CatNode{cat, {}, {}, false});
          it = n->cats.end() - 1;
        }
        n = &*it;
      }
      n->books.push_back(&b);
      if (b.categories[0] == std::string_view("Liturgy")) n->collection = true;
    }
    sef_index_body.push_back('[');
    for (size_t i = 0; i < root.cats.size(); ++i) {
      if (i) sef_index_body.push_back(',');
      emit_category(sef_index_body, root.cats[i]);
    }
    sef_index_body.push_back(']');
  }
  body.assign(sef_index_body);
  return 200;
}

int SimServer::Impl::sef_depth(const SefBook& b) {
  return b.kind == SefKind::depth3 ? 3 : b.kind == SefKind::complex ? 1 : 2;
}

std::string SimServer::Impl::talmud_label(int i) {
  return std::to_string(i / 2 + 1) + (i % 2 ? "b" : "a");
}

// Children under an address (size of the next level), or -1 past the bottom.
int SimServer::Impl::sef_count(const SefBook& b, int node, const std::vector<int>& p) {
  switch (b.kind) {
    case SefKind::simple:
    case SefKind::talmud:
      if (p.empty()) return int(b.chapters.size());
      if (p.size() == 1) return b.chapters[size_t(p[0])];
      return -1;
    case SefKind::depth3:
      if (p.empty()) return int(b.nested.size());
      if (p.size() == 1) return int(b.nested[size_t(p[0])].size());
      if (p.size() == 2) return b.nested[size_t(p[0])][size_t(p[1])];
      return -1;
    case SefKind::complex: return p.empty() ? b.nodes[size_t(node)].segments : -1;
  }
  return -1;
}

std::vector<const char*> SimServer::Impl::sef_section_names(const SefBook& b) {
  switch (b.kind) {
    case SefKind::simple: return {"Chapter", "Verse"};
    case SefKind::talmud: return {"Daf", "Line"};
    case SefKind::depth3: return {"Chapter", "Verse", "Comment"};
    case SefKind::complex: return {"Paragraph"};
  }
  return {};
}

std::string SimServer::Impl::sef_ref_string(const SefRef& r) {
  std::string s = r.book->title;
  if (r.node >= 0) s.append(", ").append(r.book->nodes[size_t(r.node)].name);
  for (size_t i = 0; i < r.idx.size(); ++i) {
    s.push_back(i == 0 ? ' ' : ':');
    if (i == 0 && r.book->kind == SefKind::talmud) s.append(talmud_label(r.idx[0]));
    else s.append(std::to_string(r.idx[i] + 1));
  }
  return s;
}

// 0 when parsed; else an HTTP status with body set to the error.
int SimServer::Impl::sef_parse_ref(std::string_view ref, SefRef& r) {
  // The longest title that ends where the ref ends or at one of " .,:".
  const SefBook* best = nullptr;
  size_t best_len = 0;
  for (size_t k = ref.size(); k > 0 && !best; --k) {
    if (k < ref.size() && (ref[k] == '\0' || !std::strchr(" .,:", ref[k]))) continue;
    if (auto it = sef_by_title.find(ref.substr(0, k)); it != sef_by_title.end()) {
      best = it->second;
      best_len = k;
    }
  }
  auto not_found = [&] {
    error_body("Could not find title in reference: " + std::string(ref));
    return 404;
  };
  if (!best) return not_found();
  r.book = best;
  std::string_view rest = ref.substr(best_len);
  if (best->kind == SefKind::complex) {
    if (rest.empty()) {
      error_body("Can not get text for complex book-level ref " + std::string(ref) +
                 ": request one of its nodes");
      return 400;
    }
    if (!rest.starts_with(", ")) return not_found();
    rest.remove_prefix(2);
    for (size_t i = 0; i < best->nodes.size(); ++i) {
      std::string_view name = best->nodes[i].name;
      if (rest.starts_with(name) &&
          (rest.size() == name.size() || std::strchr(" .:", rest[name.size()]))) {
        r.node = int(i);
        rest.remove_prefix(name.size());
        break;
      }
    }
    if (r.node < 0) return not_found();
  }
  while (!rest.empty()) {
    if (!std::strchr(" .:", rest[0])) return not_found();
    rest.remove_prefix(1);
    size_t e = rest.find_first_of(" .:");
    std::string_view tok = rest.substr(0, e);
    rest = e == std::string_view::npos ? std::string_view{} : rest.substr(e);
    uint64_t n = 0;
    int v = -1;
    if (r.idx.empty() && best->kind == SefKind::talmud) {
      if (tok.size() >= 2 && (tok.back() == 'a' || tok.back() == 'b') &&
          parse_u64(tok.substr(0, tok.size() - 1), n) && n >= 1 && n < 100000)
        v = int(n - 1) * 2 + (tok.back() == 'b');
    } else if (parse_u64(tok, n) && n >= 1 && n < 100000) {
      v = int(n - 1);
    }
    if (v < 0 || int(r.idx.size()) >= sef_depth(*best)) {
      error_body("Unable to parse reference: " + std::string(ref));
      return 400;
    }
    // Range check against the level above.
    int count = sef_count(*best, r.node, r.idx);
    if (v >= count) {
      auto names = sef_section_names(*best);
      std::string where = r.idx.empty() ? std::string(best->title) : sef_ref_string(r);
      std::string last = r.idx.empty() && best->kind == SefKind::talmud ? talmud_label(count - 1)
                                                                        : std::to_string(count);
      if (count == 0) error_body("We have no text for " + std::string(ref) + ".");
      else error_body(where + " ends at " + names[r.idx.size()] + " " + last + ".");
      return 404;
    }
    r.idx.push_back(v);
  }
  return 0;
}

// Section-level refs of a book in order, with whether each is empty (rendered once a book).
const SimServer::Impl::SefSections& SimServer::Impl::sef_sections(const SefBook& b) {
  auto [it, fresh] = sef_sections_cache.try_emplace(&b);
  if (fresh) {
    SefSections& s = it->second;
    s.list = sef_render_sections(b);
    for (size_t i = 0; i < s.list.size(); ++i) s.by_ref.emplace(s.list[i].first, int(i));
  }
  return it->second;
}

std::vector<std::pair<std::string, bool>> SimServer::Impl::sef_render_sections(const SefBook& b) {
  std::vector<std::pair<std::string, bool>> out;
  SefRef r;
  r.book = &b;
  if (b.kind == SefKind::complex) {
    for (size_t i = 0; i < b.nodes.size(); ++i) {
      r.node = int(i);
      out.emplace_back(sef_ref_string(r), b.nodes[i].segments == 0);
    }
  } else if (b.kind == SefKind::depth3) {
    for (size_t c = 0; c < b.nested.size(); ++c)
      for (size_t v = 0; v < b.nested[c].size(); ++v) {
        r.idx = {int(c), int(v)};
        out.emplace_back(sef_ref_string(r), b.nested[c][v] == 0);
      }
  } else {
    for (size_t c = 0; c < b.chapters.size(); ++c) {
      r.idx = {int(c)};
      out.emplace_back(sef_ref_string(r), b.chapters[c] == 0);
    }
  }
  return out;
}

void SimServer::Impl::sef_emit_text(std::string& out, const SefRef& r, std::vector<int>& p,
                                    bool english, bool drop_tags, bool drop_footnotes) {
  const SefBook& b = *r.book;
  if (int(p.size()) == sef_depth(b)) {
    uint64_t st =
        text::stable_hash64(b.title, o.seed) ^ (uint64_t(r.node + 2) * 0x9e3779b97f4a7c15ULL);
    for (int x : p) st = st * 1000003 + uint64_t(x) + 1;
    st ^= english ? 0xe11 : 0x4e;
    tmp.clear();
    uint64_t probe = st;
    if (!(english && splitmix64(probe) % 12 == 0))  // some translations skip a segment
      sef_segment(tmp, st, english, drop_tags, drop_footnotes);
    json::append_quoted(out, tmp);
    return;
  }
  if (int(p.size()) != sef_section_level(b)) {
    sef_emit_array(out, r, p, english, drop_tags, drop_footnotes);
    return;
  }
  // A section: from the cache, keyed by book, node, address, version and format.
  // The book's address is its identity here (books live as long as the sim): its bytes key it.
  // NOLINTNEXTLINE(bugprone-sizeof-expression)
  std::string key(reinterpret_cast<const char*>(&r.book), sizeof r.book);
  for (int x : std::initializer_list<int>{r.node, english, drop_tags, drop_footnotes})
    key.push_back(char(x + 1));
  for (int x : p) key.append(reinterpret_cast<const char*>(&x), sizeof x);
  if (auto it = sef_text_cache.find(key); it != sef_text_cache.end()) {
    out.append(it->second);
    return;
  }
  std::string text;
  sef_emit_array(text, r, p, english, drop_tags, drop_footnotes);
  if (sef_text_bytes + text.size() > kSefTextCacheBytes) {
    sef_text_cache.clear();
    sef_text_bytes = 0;
  }
  sef_text_bytes += key.size() + text.size();
  out.append(text);
  sef_text_cache.emplace(std::move(key), std::move(text));
}

void SimServer::Impl::sef_emit_array(std::string& out, const SefRef& r, std::vector<int>& p,
                                     bool english, bool drop_tags, bool drop_footnotes) {
  out.push_back('[');
  int n = sef_count(*r.book, r.node, p);
  for (int i = 0; i < n; ++i) {
    if (i) out.push_back(',');
    p.push_back(i);
    sef_emit_text(out, r, p, english, drop_tags, drop_footnotes);
    p.pop_back();
  }
  out.push_back(']');
}

// Depth of the section level (refs that `next` walks): chapters, a depth-3 book's verses, or a
// complex book's nodes.
int SimServer::Impl::sef_section_level(const SefBook& b) {
  return b.kind == SefKind::depth3 ? 2 : b.kind == SefKind::complex ? 0 : 1;
}

void SimServer::Impl::sef_version_meta(std::string& out, bool english) {
  out.append("\"language\":");
  out.append(english ? "\"en\"" : "\"he\"");
  out.append(",\"versionTitle\":");
  json::append_quoted(out, english ? kSefEn : kSefHe);
  out.append(",\"versionSource\":\"https://example.org/sluice-sim\",\"languageFamilyName\":");
  out.append(english ? "\"english\"" : "\"hebrew\"");
  out.append(",\"actualLanguage\":");
  out.append(english ? "\"en\"" : "\"he\"");
  out.append(",\"direction\":");
  out.append(english ? "\"ltr\"" : "\"rtl\"");
  out.append(",\"isPrimary\":");
  out.append(english ? "false" : "true");
  out.append(",\"isSource\":");
  out.append(english ? "false" : "true");
}

int SimServer::Impl::sefaria_text(const Request& req, std::string_view raw_ref) {
  url_decode(raw_ref, tmp2, true);
  std::string ref = tmp2;
  std::replace(ref.begin(), ref.end(), '_', ' ');
  bool drop_tags = false, drop_footnotes = false;
  std::string_view fmt;
  if (find_param(req.query, "return_format", fmt)) {
    if (fmt == "text_only") drop_tags = drop_footnotes = true;
    else if (fmt == "strip_only_footnotes") drop_footnotes = true;
    else if (fmt != "default" && fmt != "wrap_all_entities") {
      error_body("return_format should be one of those formats: default, wrap_all_entities, "
                 "text_only, strip_only_footnotes.");
      return 400;
    }
  }
  SefRef r;
  if (int st = sef_parse_ref(ref, r)) return st;
  const SefBook& b = *r.book;

  // Versions asked for, in order; no parameter means the primary (Hebrew) version only.
  std::vector<bool> langs;  // true = english
  std::vector<std::string> missing;
  bool any = false;
  for_each_param(req.query, [&](std::string_view k, std::string_view v) {
    if (k != "version") return;
    any = true;
    std::string val;
    url_decode(v, val, true);
    std::string fam = val.substr(0, val.find('|'));
    std::string title = val.find('|') == std::string::npos ? "" : val.substr(val.find('|') + 1);
    for (auto& ch : fam) ch = lower(ch);
    auto add = [&](bool en) {
      if (std::find(langs.begin(), langs.end(), en) == langs.end()) langs.push_back(en);
    };
    if (fam == "all") {
      add(false);
      add(true);
    } else if ((fam == "english" || fam == "translation") && (title.empty() || title == kSefEn)) {
      add(true);
    } else if ((fam == "hebrew" || fam == "primary" || fam == "source") &&
               (title.empty() || title == kSefHe)) {
      add(false);
    } else {
      missing.push_back(val);
    }
  });
  if (!any) langs.push_back(false);

  int depth = sef_depth(b);
  body.clear();
  body.append("{\"versions\":[");
  for (size_t i = 0; i < langs.size(); ++i) {
    if (i) body.push_back(',');
    body.push_back('{');
    sef_version_meta(body, langs[i]);
    body.append(",\"text\":");
    std::vector<int> p = r.idx;
    sef_emit_text(body, r, p, langs[i], drop_tags, drop_footnotes);
    body.push_back('}');
  }
  body.append("],\"available_versions\":[{");
  sef_version_meta(body, false);
  body.append("},{");
  sef_version_meta(body, true);
  body.append("}]");
  std::string canonical = sef_ref_string(r);
  body.append(",\"ref\":");
  json::append_quoted(body, canonical);
  body.append(",\"heRef\":");
  json::append_quoted(body, canonical);
  for (const char* key : {",\"sections\":[", ",\"toSections\":["}) {
    body.append(key);
    for (size_t i = 0; i < r.idx.size(); ++i) {
      if (i) body.push_back(',');
      if (i == 0 && b.kind == SefKind::talmud) json::append_quoted(body, talmud_label(r.idx[0]));
      else append_int(body, r.idx[i] + 1);
    }
    body.push_back(']');
  }
  // Navigation between section-level refs, skipping empty sections.
  const SefSections& book_sections = sef_sections(b);
  const auto& sections = book_sections.list;
  int section_level = sef_section_level(b);
  int cur = -1;
  if (int(r.idx.size()) >= section_level) {
    SefRef sr = r;
    sr.idx.resize(size_t(section_level));
    std::string sref = sef_ref_string(sr);
    auto it = book_sections.by_ref.find(sref);
    if (it != book_sections.by_ref.end()) cur = it->second;
    body.append(",\"sectionRef\":");
    json::append_quoted(body, sref);
  }
  auto nav = [&](const char* key, int step) {
    body.append(key);
    int i = cur;
    if (cur >= 0)
      for (i += step; i >= 0 && i < int(sections.size()) && sections[size_t(i)].second; i += step) {
      }
    if (cur >= 0 && i >= 0 && i < int(sections.size()))
      json::append_quoted(body, sections[size_t(i)].first);
    else body.append("null");
  };
  nav(",\"next\":", 1);
  nav(",\"prev\":", -1);
  body.append(",\"title\":");
  json::append_quoted(body, b.title);
  body.append(",\"book\":");
  json::append_quoted(body, b.title);
  body.append(",\"indexTitle\":");
  json::append_quoted(body, b.title);
  body.append(",\"heIndexTitle\":");
  json::append_quoted(body, b.he_title);
  body.append(",\"primary_category\":");
  json::append_quoted(body, b.categories[0]);
  body.append(",\"type\":");
  json::append_quoted(body, b.categories[0]);
  body.append(",\"categories\":[");
  for (size_t i = 0; i < b.categories.size(); ++i) {
    if (i) body.push_back(',');
    json::append_quoted(body, b.categories[i]);
  }
  body.append("],\"textDepth\":");
  append_int(body, depth);
  body.append(",\"sectionNames\":[");
  auto names = sef_section_names(b);
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) body.push_back(',');
    json::append_quoted(body, names[i]);
  }
  body.append("],\"addressTypes\":[");
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) body.push_back(',');
    body.append(i == 0 && b.kind == SefKind::talmud ? "\"Talmud\"" : "\"Integer\"");
  }
  body.append("],\"firstAvailableSectionRef\":");
  auto first = std::find_if(sections.begin(), sections.end(), [](auto& s) { return !s.second; });
  if (first == sections.end()) body.append("null");
  else json::append_quoted(body, first->first);
  body.append(",\"isComplex\":");
  body.append(b.kind == SefKind::complex ? "true" : "false");
  body.append(",\"warnings\":[");
  for (size_t i = 0; i < missing.size(); ++i) {
    if (i) body.push_back(',');
    body.push_back('{');
    json::append_quoted(body, missing[i]);
    body.append(":{\"warning_code\":103,\"message\":");
    json::append_quoted(body, "We do not have version named " + missing[i] + ".");
    body.append("}}");
  }
  body.append("]}");
  return 200;
}

int SimServer::Impl::sefaria_shape(std::string_view raw_title) {
  url_decode(raw_title, tmp2, true);
  std::replace(tmp2.begin(), tmp2.end(), '_', ' ');
  auto it = sef_by_title.find(tmp2);
  const SefBook* b = it == sef_by_title.end() ? nullptr : it->second;
  if (!b) {
    error_body("Could not find index for " + tmp2);
    return 404;
  }
  body.clear();
  body.append("[{");
  if (b->kind == SefKind::complex) body.append("\"isComplex\":true,");
  body.append("\"section\":");
  json::append_quoted(body, b->categories[0]);
  body.append(",\"title\":");
  json::append_quoted(body, b->title);
  body.append(",\"heTitle\":");
  json::append_quoted(body, b->he_title);
  body.append(",\"book\":");
  json::append_quoted(body, b->title);
  body.append(",\"heBook\":");
  json::append_quoted(body, b->he_title);
  body.append(",\"length\":");
  switch (b->kind) {
    case SefKind::simple:
    case SefKind::talmud:
      append_uint(body, b->chapters.size());
      body.append(",\"chapters\":[");
      for (size_t i = 0; i < b->chapters.size(); ++i) {
        if (i) body.push_back(',');
        append_int(body, b->chapters[i]);
      }
      body.push_back(']');
      break;
    case SefKind::depth3:
      append_uint(body, b->nested.size());
      body.append(",\"chapters\":[");
      for (size_t i = 0; i < b->nested.size(); ++i) {
        if (i) body.push_back(',');
        body.push_back('[');
        for (size_t k = 0; k < b->nested[i].size(); ++k) {
          if (k) body.push_back(',');
          append_int(body, b->nested[i][k]);
        }
        body.push_back(']');
      }
      body.push_back(']');
      break;
    case SefKind::complex:
      append_uint(body, b->nodes.size());
      body.append(",\"chapters\":[");
      for (size_t i = 0; i < b->nodes.size(); ++i) {
        if (i) body.push_back(',');
        body.append("{\"title\":");
        json::append_quoted(body, std::string(b->title) + ", " + b->nodes[i].name);
        body.append(",\"heTitle\":");
        json::append_quoted(body, std::string(b->he_title) + ", " + b->nodes[i].he);
        body.append(",\"length\":");
        append_int(body, b->nodes[i].segments);
        body.append(",\"chapters\":[");
        append_int(body, b->nodes[i].segments);
        body.append("]}");
      }
      body.push_back(']');
      break;
  }
  body.append("}]");
  return 200;
}

}  // namespace sluice::sim
