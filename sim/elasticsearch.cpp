// Elasticsearch _bulk: NDJSON actions, per-item results, partial failures, and the id counts
// that let tests check "every document exactly once".
#include "sim/server_impl.hpp"

#include <unordered_set>

#include "engine/json/scan.hpp"
#include "engine/json/value.hpp"

namespace sluice::sim {

// Elasticsearch _bulk: NDJSON action/metadata lines, each index/create/update followed by a
// source line. Items answer 201 created / 200 updated / 409 / 404 / 400 / 429 (bulk_fail_rate).
int SimServer::Impl::bulk(std::string_view b, std::string_view path_index) {
  parse_buf.assign(b);
  parse_buf.push_back('\n');
  char* p = parse_buf.data();
  char* end = p + parse_buf.size();
  auto next_line = [&](char*& line, size_t& len) -> bool {
    for (;;) {
      if (p >= end) return false;
      char* nl = static_cast<char*>(std::memchr(p, '\n', size_t(end - p)));
      line = p;
      len = size_t(nl - p);
      *nl = '\0';
      p = nl + 1;
      std::string_view sv(line, len);
      if (trim(sv).empty() || sv == "\r") continue;
      return true;
    }
  };
  items.clear();
  bool errors = false;
  size_t count = 0;
  uint64_t new_distinct = 0, new_multi = 0;
  int64_t live_delta = 0;
  char* line = nullptr;
  size_t len = 0;
  while (next_line(line, len)) {
    pool.Clear();
    rapidjson::Document action(&pool);
    action.ParseInsitu(line);
    if (action.HasParseError() || !action.IsObject() || action.MemberCount() != 1 ||
        !action.MemberBegin()->value.IsObject()) {
      error_body("Malformed action/metadata line [" + std::to_string(count + 1) +
                 "], expected START_OBJECT");
      return 400;
    }
    std::string_view op(action.MemberBegin()->name.GetString(),
                        action.MemberBegin()->name.GetStringLength());
    bool has_source = op == "index" || op == "create" || op == "update";
    if (!has_source && op != "delete") {
      error_body("Malformed action/metadata line [" + std::to_string(count + 1) +
                 "], unknown action");
      return 400;
    }
    const auto& meta = action.MemberBegin()->value;
    std::string_view index = path_index, id;
    if (auto it = meta.FindMember("_index"); it != meta.MemberEnd() && it->value.IsString())
      index = std::string_view(it->value.GetString(), it->value.GetStringLength());
    if (auto it = meta.FindMember("_id"); it != meta.MemberEnd() && it->value.IsString())
      id = std::string_view(it->value.GetString(), it->value.GetStringLength());
    bool source_ok = true;
    std::string src_doc_id, src_run;
    if (has_source) {
      char* src = nullptr;
      size_t src_len = 0;
      if (!next_line(src, src_len)) {
        error_body("The bulk request must be terminated by a newline [\\n]");
        return 400;
      }
      // Before is_json_object, which works in place: the fields _delete_by_query matches on.
      static const JsonPointerScan doc_id_at("/doc_id"), run_at("/sluice_run");
      doc_id_at.find_string(std::string_view(src, src_len), src_doc_id);
      run_at.find_string(std::string_view(src, src_len), src_run);
      source_ok = is_json_object(src);
    }
    std::string auto_id_buf;
    if (id.empty() && op != "delete" && op != "update") {
      auto_id_buf = "sim" + std::to_string(++auto_id);
      id = auto_id_buf;
    }
    int status = 0;
    const char* result = nullptr;
    const char* etype = nullptr;
    const char* ereason = nullptr;
    uint32_t version = 1;
    if (index.empty()) {
      status = 400;
      etype = "action_request_validation_exception";
      ereason = "Validation Failed: 1: index is missing;";
    } else if (id.empty()) {
      status = 400;
      etype = "action_request_validation_exception";
      ereason = "Validation Failed: 1: id is missing;";
    } else if (!source_ok) {
      status = 400;
      etype = "mapper_parsing_exception";
      ereason = "failed to parse";
    } else if (chance(o.bulk_fail_rate)) {
      status = 429;
      etype = "es_rejected_execution_exception";
      ereason = "rejected execution of coordinating operation (simulated)";
    } else {
      std::string key;
      key.reserve(index.size() + id.size() + 1);
      key.append(index).push_back('\x1f');
      key.append(id);
      if (op == "delete") {
        auto it = bulk_ids.find(key);
        if (it == bulk_ids.end() || !it->second.live) {
          status = 404;
          result = "not_found";
        } else {
          it->second.live = false;
          --live_delta;
          status = 200;
          result = "deleted";
          version = it->second.times + 1;
        }
      } else {
        auto it = bulk_ids.find(key);
        bool exists = it != bulk_ids.end() && it->second.live;
        if (op == "create" && exists) {
          status = 409;
          etype = "version_conflict_engine_exception";
          ereason = "document already exists";
        } else if (op == "update" && !exists) {
          status = 404;
          etype = "document_missing_exception";
          ereason = "document missing";
        } else {
          if (it == bulk_ids.end()) {
            it = bulk_ids.emplace(std::move(key), BulkEntry{}).first;
            ++new_distinct;
          }
          if (++it->second.times == 2) ++new_multi;
          if (!it->second.live) ++live_delta;
          it->second.live = true;
          it->second.doc_id = std::move(src_doc_id);
          it->second.run = std::move(src_run);
          version = it->second.times;
          status = exists ? 200 : 201;
          result = exists ? "updated" : "created";
        }
      }
    }
    if (count++) items.push_back(',');
    items.append("{\"");
    items.append(op);
    items.append("\":{\"_index\":");
    json::append_quoted(items, index);
    items.append(",\"_id\":");
    json::append_quoted(items, id);
    if (result) {
      items.append(",\"_version\":");
      append_uint(items, version);
      items.append(",\"result\":\"");
      items.append(result);
      items.push_back('"');
    }
    items.append(",\"status\":");
    append_int(items, status);
    if (etype) {
      errors = true;
      items.append(",\"error\":{\"type\":\"");
      items.append(etype);
      items.append("\",\"reason\":");
      json::append_quoted(items, ereason);
      items.push_back('}');
    }
    items.append("}}");
  }
  body.clear();
  body.reserve(items.size() + 64);
  body.append("{\"took\":1,\"errors\":");
  body.append(errors ? "true" : "false");
  body.append(",\"items\":[");
  body.append(items);
  body.append("]}");
  if (new_distinct || new_multi || live_delta) {
    std::lock_guard lk(stats_mu);
    stats.bulk_distinct += new_distinct;
    stats.bulk_multi += new_multi;
    stats.bulk_live = static_cast<uint64_t>(static_cast<int64_t>(stats.bulk_live) + live_delta);
  }
  return 200;
}

// The one query shape index.elasticsearch sends after a run: documents of these doc ids that
// another run wrote. {"query": {"bool": {"filter": [{"bool": {"should": [{"terms": {"doc_id":
// [...]}}, ...]}}], "must_not": [{"term": {"sluice_run": "..."}}, ...]}}}. Anything else: 400.
int SimServer::Impl::delete_by_query(std::string_view b, std::string_view index) {
  rapidjson::Document d;
  std::unordered_set<std::string> docs;
  std::string run;
  if (parse_untrusted(d, b) && d.IsObject() && d.HasMember("query") && d["query"].IsObject() &&
      d["query"].HasMember("bool") && d["query"]["bool"].IsObject()) {
    const auto& q = d["query"]["bool"];
    auto each = [](const rapidjson::Value& obj, const char* key, auto&& fn) {
      if (obj.HasMember(key) && obj[key].IsArray())
        for (const auto& v : obj[key].GetArray()) fn(v);
    };
    each(q, "filter", [&](const rapidjson::Value& f) {
      if (!f.IsObject() || !f.HasMember("bool") || !f["bool"].IsObject()) return;
      each(f["bool"], "should", [&](const rapidjson::Value& s) {
        if (!s.IsObject() || !s.HasMember("terms") || !s["terms"].IsObject()) return;
        for (const auto& m : s["terms"].GetObject())
          if (m.value.IsArray())
            for (const auto& id : m.value.GetArray())
              if (id.IsString()) docs.emplace(id.GetString(), id.GetStringLength());
      });
    });
    each(q, "must_not", [&](const rapidjson::Value& t) {
      if (t.IsObject() && t.HasMember("term") && t["term"].IsObject())
        for (const auto& m : t["term"].GetObject())
          if (m.value.IsString()) run = m.value.GetString();
    });
  }
  if (docs.empty() || run.empty()) {
    error_body("unsupported _delete_by_query body (the sim knows index.elasticsearch's only)");
    return 400;
  }
  const std::string prefix = std::string(index) + '\x1f';
  uint64_t deleted = 0;
  for (auto& [key, e] : bulk_ids) {
    if (!e.live || e.run == run || !docs.count(e.doc_id) || key.rfind(prefix, 0) != 0) continue;
    e.live = false;
    ++deleted;
  }
  if (deleted) {
    std::lock_guard lk(stats_mu);
    stats.bulk_live -= deleted;
  }
  body = "{\"took\":1,\"timed_out\":false,\"deleted\":" + std::to_string(deleted) +
         ",\"failures\":[]}";
  return 200;
}

}  // namespace sluice::sim
