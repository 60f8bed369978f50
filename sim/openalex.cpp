// The OpenAlex-shaped /works listing with cursor paging.
#include "sim/server_impl.hpp"

namespace sluice::sim {

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
  uint64_t year = 1990 + n % 35;
  out.append(",\"publication_year\":");
  append_uint(out, year);
  out.append(",\"publication_date\":\"");
  append_uint(out, year);
  out.append("-01-01\",\"type\":\"article\",\"language\":\"en\",\"cited_by_count\":");
  append_uint(out, splitmix64(st) % 500);
  out.append(",\"abstract_inverted_index\":");
  if (n % 5 == 0) {  // common upstream: no abstract
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
  uint64_t end = std::min<uint64_t>(o.docs, offset + per_page);
  uint64_t got = end > offset ? end - offset : 0;
  body.clear();
  body.append("{\"meta\":{\"count\":");
  append_uint(body, o.docs);
  body.append(",\"db_response_time_ms\":7,\"page\":");
  if (cursor_mode) body.append("null");
  else append_uint(body, page);
  body.append(",\"per_page\":");
  append_uint(body, per_page);
  body.append(",\"next_cursor\":");
  if (cursor_mode && got == per_page) json::append_quoted(body, oa_cursor(end));
  else body.append("null");
  body.append(",\"groups_count\":null},\"results\":[");
  for (uint64_t n = offset + 1; n <= end; ++n) {
    if (n != offset + 1) body.push_back(',');
    oa_work(body, n);
  }
  body.append("],\"group_by\":[]}");
  return 200;
}

}  // namespace sluice::sim
