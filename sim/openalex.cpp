// The OpenAlex-shaped /works listing with cursor paging and the filters the predefined graph
// sends: publication_year, from_/to_publication_date, type and has_abstract.
#include "engine/text/date.hpp"
#include "sim/server_impl.hpp"

namespace sluice::sim {

namespace {

namespace chr = std::chrono;

// What a filter tests of work n: published on a day of year 1990 + n % 35 (a hash picks the
// day), one in five (by the same hash) without an abstract, every work an article.
struct OaWorkFacts {
  int year = 0;
  chr::sys_days date;
  bool has_abstract = true;
};

OaWorkFacts oa_facts(uint64_t n, uint64_t seed) {
  OaWorkFacts f;
  f.year = 1990 + static_cast<int>(n % 35);
  const chr::sys_days first{chr::year{f.year} / 1 / 1};
  const auto days = (chr::sys_days{chr::year{f.year + 1} / 1 / 1} - first).count();
  const uint64_t h = text::stable_hash64(std::to_string(n), seed ^ 0xda7e);
  f.date = first + chr::days{static_cast<int64_t>((h & 0xffffffffULL) % uint64_t(days))};
  f.has_abstract = (h >> 32) % 5 != 0;
  return f;
}

// The text of `rest` up to `sep` (all of it when there is none); `rest` keeps what follows it.
std::string_view take_until(std::string_view& rest, char sep) {
  const size_t at = rest.find(sep);
  const std::string_view piece = rest.substr(0, at);
  rest = at == std::string_view::npos ? std::string_view{} : rest.substr(at + 1);
  return piece;
}

// filter=key:value,key:value (values may hold alternatives a|b; years also >N and <N), as
// OpenAlex reads it; an unknown key or a bad value is a 400, as there.
struct OaFilter {
  struct Year {
    char op;  // '=', '>' or '<'
    int value;
  };
  std::vector<Year> years;  // any of them
  std::optional<chr::sys_days> from, to;
  int has_abstract = -1;  // -1: either
  bool articles = true;   // false: a type no work has

  bool matches(const OaWorkFacts& f) const {
    if (!articles) return false;
    if (has_abstract >= 0 && f.has_abstract != (has_abstract == 1)) return false;
    if (from && f.date < *from) return false;
    if (to && f.date > *to) return false;
    if (years.empty()) return true;
    for (const Year& y : years)
      if ((y.op == '=' && f.year == y.value) || (y.op == '>' && f.year > y.value) ||
          (y.op == '<' && f.year < y.value))
        return true;
    return false;
  }

  // Empty on success, else the message.
  std::string parse(std::string_view text) {
    while (!text.empty()) {
      std::string_view kv = take_until(text, ',');
      size_t colon = kv.find(':');
      if (colon == std::string_view::npos)
        return "Invalid query parameters error: filter " + std::string(kv) + " is not key:value";
      std::string_view key = kv.substr(0, colon), value = kv.substr(colon + 1);
      if (key == "publication_year") {
        while (!value.empty()) {
          std::string_view one = take_until(value, '|');
          Year y{'=', 0};
          if (!one.empty() && (one[0] == '>' || one[0] == '<')) {
            y.op = one[0];
            one.remove_prefix(1);
          }
          uint64_t v = 0;
          if (!parse_u64(one, v) || v > 9999) return "Value for publication_year must be a number.";
          y.value = static_cast<int>(v);
          years.push_back(y);
        }
      } else if (key == "from_publication_date" || key == "to_publication_date") {
        auto d = text::parse_iso_date(value);
        if (!d) return std::string(value) + " is not a valid ISO-8601 date (YYYY-MM-DD).";
        (key[0] == 'f' ? from : to) = d;
      } else if (key == "type") {
        articles = false;
        while (!value.empty()) {
          std::string_view one = take_until(value, '|');
          articles |= one == "article" || one == "types/article";
        }
      } else if (key == "has_abstract") {
        if (value != "true" && value != "false")
          return "Value for has_abstract must be true or false.";
        has_abstract = value == "true";
      } else {
        return std::string(key) +
               " is not a valid field (the sim knows publication_year, "
               "from_publication_date, to_publication_date, type, has_abstract).";
      }
    }
    return {};
  }
};

}  // namespace

std::string SimServer::Impl::oa_cursor(uint64_t offset) {
  std::string c = "sim" + std::to_string(offset) + "x";
  char h[24];
  std::snprintf(h, sizeof h, "%08llx",
                static_cast<unsigned long long>(text::stable_hash64(c, o.seed) & 0xffffffffULL));
  return c + h;
}

bool SimServer::Impl::oa_decode_cursor(std::string_view c, uint64_t& offset) {
  if (!c.starts_with("sim")) return false;
  size_t x = c.find('x');
  if (x == std::string_view::npos || !parse_u64(c.substr(3, x - 3), offset)) return false;
  return oa_cursor(offset) == c;
}

void SimServer::Impl::oa_error(int, std::string_view message) {
  body.clear();
  body.append("{\"error\":\"Invalid query parameters error.\",\"message\":");
  json::append_quoted(body, message);
  body.push_back('}');
}

void SimServer::Impl::oa_work(std::string& out, uint64_t n) {
  uint64_t h = text::stable_hash64(std::to_string(n), o.seed ^ 0x0a1e);
  out.append("{\"id\":\"https://openalex.org/W");
  append_uint(out, 3000000000ULL + n);
  out.append("\",\"doi\":");
  if (n % 7 == 0) {
    out.append("null");
  } else {
    out.append("\"https://doi.org/10.5555/sim.");
    append_uint(out, n);
    out.push_back('"');
  }
  tmp.clear();
  uint64_t st = h;
  int words = 3 + int(splitmix64(st) % 6);
  for (int i = 0; i < words; ++i) {
    if (i) tmp.push_back(' ');
    std::string_view w = kWords[splitmix64(st) % kWordCount];
    bool italic = n % 4 == 0 && i == 1;  // titles may hold inline HTML
    if (italic) tmp.append("<i>");
    size_t pos = tmp.size();
    tmp.append(w);
    if (i == 0) tmp[pos] = char(tmp[pos] - 32);
    if (italic) tmp.append("</i>");
  }
  out.append(",\"title\":");
  json::append_quoted(out, tmp);
  out.append(",\"display_name\":");
  json::append_quoted(out, tmp);
  const OaWorkFacts facts = oa_facts(n, o.seed);
  out.append(",\"publication_year\":");
  append_uint(out, static_cast<uint64_t>(facts.year));
  out.append(",\"publication_date\":\"");
  out.append(text::iso_date(facts.date));
  out.append("\",\"type\":\"article\",\"language\":\"en\",\"cited_by_count\":");
  append_uint(out, splitmix64(st) % 500);
  out.append(",\"abstract_inverted_index\":");
  if (!facts.has_abstract) {  // common upstream: no abstract
    out.append("null}");
    return;
  }
  tmp.clear();
  gen_text(tmp, h, 150 + size_t(splitmix64(st) % 400));
  while (!tmp.empty() && tmp.back() != ' ' && tmp.back() != '.') tmp.pop_back();  // whole words
  if (!tmp.empty() && tmp.back() == ' ') tmp.pop_back();
  std::vector<std::pair<std::string_view, std::vector<uint32_t>>> inv;
  std::string_view t = tmp;
  uint32_t pos = 0;
  while (!t.empty()) {
    size_t sp = t.find(' ');
    std::string_view w = t.substr(0, sp);
    t = sp == std::string_view::npos ? std::string_view{} : t.substr(sp + 1);
    if (w.empty()) continue;
    auto it = std::find_if(inv.begin(), inv.end(), [&](auto& e) { return e.first == w; });
    if (it == inv.end()) inv.push_back({w, {pos}});
    else it->second.push_back(pos);
    ++pos;
  }
  out.push_back('{');
  for (size_t i = 0; i < inv.size(); ++i) {
    if (i) out.push_back(',');
    json::append_quoted(out, inv[i].first);
    out.append(":[");
    for (size_t k = 0; k < inv[i].second.size(); ++k) {
      if (k) out.push_back(',');
      append_uint(out, inv[i].second[k]);
    }
    out.push_back(']');
  }
  out.append("}}");
}

int SimServer::Impl::openalex_works(const Request& req) {
  std::string_view v;
  if (find_param(req.query, "api_key", v) && (v.empty() || v == "bad")) {
    body.assign("{\"error\":\"Invalid API key.\",\"message\":\"The api_key is not valid.\"}");
    return 401;
  }
  uint64_t per_page = 25;
  if (find_param(req.query, "per_page", v) || find_param(req.query, "per-page", v)) {
    if (!parse_u64(v, per_page) || per_page < 1 || per_page > 200) {
      oa_error(400, "per-page parameter must be between 1 and 200.");
      return 400;
    }
  }
  const std::vector<uint64_t>* matches = nullptr;
  if (find_param(req.query, "filter", v) && !v.empty()) {
    url_decode(v, tmp2, true);
    auto it = oa_filters.find(tmp2);
    if (it == oa_filters.end()) {
      OaFilter f;
      std::string bad = f.parse(tmp2);
      if (!bad.empty()) {
        oa_error(400, bad);
        return 400;
      }
      // Bounded: the oldest filter goes first (a listing's windows each ask for a while).
      if (oa_filter_order.size() >= kOaFiltersKept) {
        oa_filters.erase(oa_filter_order.front());
        oa_filter_order.pop_front();
      }
      std::vector<uint64_t> kept;
      for (uint64_t n = 1; n <= o.docs; ++n)
        if (f.matches(oa_facts(n, o.seed))) kept.push_back(n);
      it = oa_filters.emplace(tmp2, std::move(kept)).first;
      oa_filter_order.push_back(tmp2);
    }
    matches = &it->second;
  }
  const bool filtered = matches != nullptr;
  const uint64_t count = filtered ? matches->size() : o.docs;
  uint64_t offset = 0, page = 1;
  bool cursor_mode = false;
  if (find_param(req.query, "cursor", v)) {
    cursor_mode = true;
    url_decode(v, tmp2, false);
    if (tmp2 != "*" && !oa_decode_cursor(tmp2, offset)) {
      oa_error(400, "cursor is invalid: " + tmp2);
      return 400;
    }
  } else if (find_param(req.query, "page", v)) {
    if (!parse_u64(v, page) || page < 1) {
      oa_error(400, "page parameter must be an integer >= 1.");
      return 400;
    }
    if (page * per_page > 10000) {
      oa_error(400, "Maximum results size of 10,000 records is exceeded. Cursor pagination is "
                    "required for records beyond 10,000.");
      return 400;
    }
    offset = (page - 1) * per_page;
  }
  uint64_t end = std::min<uint64_t>(count, offset + per_page);
  uint64_t got = end > offset ? end - offset : 0;
  body.clear();
  body.append("{\"meta\":{\"count\":");
  append_uint(body, count);
  body.append(",\"db_response_time_ms\":7,\"page\":");
  if (cursor_mode) body.append("null");
  else append_uint(body, page);
  body.append(",\"per_page\":");
  append_uint(body, per_page);
  body.append(",\"next_cursor\":");
  if (cursor_mode && got == per_page) json::append_quoted(body, oa_cursor(end));
  else body.append("null");
  body.append(",\"groups_count\":null},\"results\":[");
  for (uint64_t i = offset; i < end; ++i) {
    if (i != offset) body.push_back(',');
    oa_work(body, filtered ? (*matches)[i] : i + 1);
  }
  body.append("],\"group_by\":[]}");
  return 200;
}

}  // namespace sluice::sim
