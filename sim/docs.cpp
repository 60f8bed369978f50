// The generic document endpoints: /docs (a paged listing), /docs/{id}, /big.
#include "sim/server_impl.hpp"

namespace sluice::sim {

bool SimServer::Impl::int_param(std::string_view query, std::string_view key, uint64_t def,
                                uint64_t& v) {
  std::string_view raw;
  if (!find_param(query, key, raw)) {
    v = def;
    return true;
  }
  return parse_u64(raw, v);
}

int SimServer::Impl::docs_list(const Request& req) {
  uint64_t page = 0, per_page = 0;
  if (!int_param(req.query, "page", 1, page) || page < 1 || page > (uint64_t{1} << 40)) {
    error_body("page must be an integer >= 1");
    return 400;
  }
  if (!int_param(req.query, "per_page", 100, per_page) || per_page < 1 || per_page > 1000) {
    error_body("per_page must be between 1 and 1000");
    return 400;
  }
  body.clear();
  body.append("{\"items\":[");
  uint64_t first = (page - 1) * per_page + 1;
  for (uint64_t n = first; n < first + per_page && n <= o.docs; ++n) {
    if (n != first) body.push_back(',');
    body.append("{\"id\":\"");
    format_doc_id(body, n);
    body.append("\"}");
  }
  body.append("],\"page\":");
  append_uint(body, page);
  body.append(",\"per_page\":");
  append_uint(body, per_page);
  body.append(",\"total\":");
  append_uint(body, o.docs);
  body.push_back('}');
  return 200;
}

// 1..docs for a canonical id, else 0.
uint64_t SimServer::Impl::doc_number(std::string_view id) {
  if (!id.starts_with("doc-")) return 0;
  uint64_t n = 0;
  if (!parse_u64(id.substr(4), n) || n < 1 || n > o.docs) return 0;
  tmp.clear();
  format_doc_id(tmp, n);
  return tmp == id ? n : 0;
}

int SimServer::Impl::doc(const Request& req, std::string_view raw_id, bool& retry_after) {
  url_decode(raw_id, tmp2, false);
  std::string_view id = tmp2;
  std::string_view forced;
  if (find_param(req.query, "status", forced)) {
    uint64_t s = 0;
    if (!parse_u64(forced, s) || s < 200 || s > 599) {
      error_body("status must be between 200 and 599");
      return 400;
    }
    if (s != 200) {
      body.clear();
      body.append("{\"error\":\"forced status ");
      append_uint(body, s);
      body.append("\",\"id\":");
      json::append_quoted(body, id);
      body.push_back('}');
      retry_after = s == 429 || s == 503;
      return int(s);
    }
  }
  uint64_t n = doc_number(id);
  if (n == 0) {
    error_body("no such doc");
    return 404;
  }
  uint64_t h = text::stable_hash64(id, o.seed);
  body.clear();
  body.reserve(o.doc_bytes + 128);
  body.append("{\"id\":\"");
  body.append(id);
  body.append("\",\"title\":\"");
  gen_title(body, h ^ 0x7469746c65ULL, n);
  body.append("\",\"text\":\"");
  gen_text(body, h, o.doc_bytes);
  body.append("\"}");
  return 200;
}

int SimServer::Impl::big() {
  if (big_body.empty()) {
    big_body.reserve(kBigBytes);
    big_body.append("{\"data\":\"");
    gen_text(big_body, o.seed, kBigBytes - big_body.size() - 2);
    big_body.append("\"}");
  }
  body.assign(big_body);
  return 200;
}

}  // namespace sluice::sim
