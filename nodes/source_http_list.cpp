#include "nodes/source_http_list.hpp"

#include "engine/json/value.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_set>

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/http/client.hpp"
#include "engine/http/request_options.hpp"
#include "engine/record_template.hpp"
#include "engine/text/date.hpp"

namespace sluice {

namespace {

rapidjson::Pointer pointer_param(const Params& p, const char* name) {
  return json_pointer(p.str(name), name);
}

// Query strings may carry keys (api_key=...): messages show only the path.
std::string redacted(const std::string& url) {
  size_t q = url.find('?');
  return q == std::string::npos ? url : url.substr(0, q) + "?...";
}

using QueryParams = std::vector<std::pair<std::string, std::string>>;

std::string partition_error(size_t i, const std::string& what) {
  return "partitions[" + std::to_string(i) + "]" + what;
}

// An array of objects of query params, one partition each.
std::vector<QueryParams> listed_partitions(const json::Value& parts) {
  if (parts.items.empty())
    throw ParamError("partitions", "partitions must hold at least one object of query params");
  std::vector<QueryParams> out;
  for (size_t i = 0; i < parts.items.size(); ++i) {
    const json::Value& part = parts.items[i];
    if (part.kind != json::Kind::object)
      throw ParamError("partitions", partition_error(i, " must be an object of query params, e.g. "
                                                        "{\"filter\": \"publication_year:2021\"}"));
    QueryParams q;
    for (const auto& m : part.members) {
      if (m.value.kind != json::Kind::string)
        throw ParamError("partitions", partition_error(i, "." + m.key + " must be a string"));
      // An empty one (or an unset ${env:...}) would list everything: every partition's.
      if (m.value.unset_env || m.value.str.empty())
        throw ParamError("partitions", partition_error(i, "." + m.key +
                                                              " is empty: a partition must "
                                                              "narrow the listing"));
      q.emplace_back(m.key, m.value.str);
    }
    out.push_back(std::move(q));
  }
  return out;
}

// Date windows: {"from": "2024-01-01", "to": "2024-12-31", "every": "week", "query": {...}}
// gives one partition per window, its query values with {from} and {to} replaced by the
// window's first and last day (both included, YYYY-MM-DD). Windows meet without a gap or an
// overlap, so filters on whole days cover the range exactly once.
std::vector<QueryParams> date_partitions(const json::Value& spec) {
  namespace chr = std::chrono;
  auto field = [&](const char* name) -> const json::Value& {
    const json::Value* v = spec.find(name);
    if (!v || v->kind != json::Kind::string || v->str.empty())
      throw ParamError("partitions", std::string("partitions.") + name +
                                         " is required: date windows are {\"from\": "
                                         "\"2024-01-01\", \"to\": \"2024-12-31\", \"every\": "
                                         "\"week\", \"query\": {...{from}...{to}...}}");
    return *v;
  };
  auto date = [&](const char* name) {
    auto d = text::parse_iso_date(field(name).str);
    if (!d)
      throw ParamError("partitions", std::string("partitions.") + name + " \"" + field(name).str +
                                         "\" is not a date YYYY-MM-DD");
    return *d;
  };
  for (const auto& m : spec.members)
    if (m.key != "from" && m.key != "to" && m.key != "every" && m.key != "query")
      throw ParamError("partitions", "partitions." + m.key +
                                         " is not known: date windows take from, to, every "
                                         "and query");
  const chr::sys_days from = date("from"), to = date("to");
  if (to < from) throw ParamError("partitions", "partitions.to is before partitions.from");
  const std::string every = field("every").str;
  int64_t step_days = 0;
  int step_months = 0;
  if (every == "day") step_days = 1;
  else if (every == "week") step_days = 7;
  else if (every == "month") step_months = 1;
  else if (every == "quarter") step_months = 3;
  else if (every == "year") step_months = 12;
  else if (every.size() > 1 && every.back() == 'd') {
    auto r = std::from_chars(every.data(), every.data() + every.size() - 1, step_days);
    if (r.ec != std::errc() || r.ptr != every.data() + every.size() - 1 || step_days < 1 ||
        step_days > 36600)  // a century: past it the dates would overflow
      step_days = 0;
  }
  if (step_days == 0 && step_months == 0)
    throw ParamError("partitions", "partitions.every \"" + every +
                                       "\" is not day, week, month, quarter, year or Nd "
                                       "(N days from 1 to 36600, e.g. 10d)");
  const json::Value* query = spec.find("query");
  if (!query || query->kind != json::Kind::object || query->members.empty())
    throw ParamError("partitions", "partitions.query must be an object of query params whose "
                                   "values hold {from} and {to}, e.g. {\"filter\": "
                                   "\"from_publication_date:{from},to_publication_date:{to}\"}");
  bool placed = false;
  for (const auto& m : query->members) {
    if (m.value.kind != json::Kind::string || m.value.unset_env || m.value.str.empty())
      throw ParamError("partitions", "partitions.query." + m.key + " must be a non-empty string");
    placed |= m.value.str.find("{from}") != std::string::npos ||
              m.value.str.find("{to}") != std::string::npos;
  }
  if (!placed)
    throw ParamError("partitions", "partitions.query holds neither {from} nor {to}: every "
                                   "window would list the same items");
  constexpr size_t kMaxWindows = 10000;
  std::vector<QueryParams> out;
  for (chr::sys_days start = from; start <= to;) {
    chr::sys_days next;
    if (step_days > 0) {
      next = start + chr::days{step_days};
    } else {
      const chr::year_month_day ymd{start};
      // Counted from the first of the start's month, so every window but the first starts on a
      // 1st and each ends on a month's last day (a range from the 31st: its first window is
      // that one day, then whole months).
      next = chr::sys_days{chr::year_month_day{ymd.year(), ymd.month(), chr::day{1}} +
                           chr::months{step_months}};
    }
    const chr::sys_days last = std::min(to, next - chr::days{1});
    if (out.size() == kMaxWindows)
      throw ParamError("partitions", "partitions make more than " + std::to_string(kMaxWindows) +
                                         " date windows: choose a longer \"every\"");
    QueryParams q;
    for (const auto& m : query->members) {
      std::string v = m.value.str;
      for (auto [name, value] :
           {std::pair<std::string, std::string>{"{from}", text::iso_date(start)},
            {"{to}", text::iso_date(last)}})
        for (size_t at = v.find(name); at != std::string::npos;
             at = v.find(name, at + value.size()))
          v.replace(at, name.size(), value);
      q.emplace_back(m.key, std::move(v));
    }
    out.push_back(std::move(q));
    start = next;
  }
  return out;
}

}  // namespace

double partition_rpm_scale(size_t partitions, const ShardSpec& part, const ShardSpec& shard,
                           int sharers) {
  if (sharers <= 1 || part.all() || partitions == 0) return 1;
  // The processes sharing the rpm hold these partitions: all of them, or under limits_scope
  // "shard" (the shard's processes alone share it) the shard's own, i mod shards == shard.
  const bool per_shard = sharers != part.count;
  size_t shared = 0, mine = 0;
  for (size_t i = 0; i < partitions; ++i) {
    shared += !per_shard || static_cast<int>(i % static_cast<size_t>(shard.count)) == shard.index;
    mine += static_cast<int>(i % static_cast<size_t>(part.count)) == part.index;
  }
  if (mine == 0 || shared == 0) return 1;  // lists nothing: its share goes unused either way
  return static_cast<double>(sharers) * static_cast<double>(mine) / static_cast<double>(shared);
}

std::vector<std::vector<std::pair<std::string, std::string>>>
read_partitions(const json::Value& parts) {
  if (parts.kind == json::Kind::array) return listed_partitions(parts);
  if (parts.kind == json::Kind::object) return date_partitions(parts);
  throw ParamError("partitions", "partitions must be an array of objects of query params, or "
                                 "date windows {\"from\", \"to\", \"every\", \"query\"}");
}

namespace {

class HttpListSource final : public Source {
 public:
  explicit HttpListSource(const NodeInit& init) : _params(init.params), _node_id(init.id) {
    const Params& p = init.params;
    _url = p.str("url");
    if (!http::is_http_url(_url))
      throw ParamError("url", "url must start with http:// or https://");
    _items = pointer_param(p, "items");
    _items_text = p.str("items");
    _id = pointer_param(p, "id");
    _id_text = p.str("id");
    _paging = p.str("paging");
    if (_paging == "cursor") {
      if (!p.has("next"))
        throw ParamError("next", "cursor paging needs \"next\": the pointer to the next cursor "
                                 "(e.g. /meta/next_cursor)");
      _next = pointer_param(p, "next");
    }
    if (_paging == "offset" && !p.has("per_page"))
      throw ParamError("per_page", "offset paging needs per_page");
    if (p.has("text")) _text = pointer_param(p, "text");
    if (p.has("skip")) _skip = pointer_param(p, "skip");
    if (p.has("total")) {
      _total_ptr = pointer_param(p, "total");
      _total_text = p.str("total");
    }
    _recurse = p.has("recurse") ? p.str("recurse") : "";
    _per_page = p.has("per_page") ? p.integer("per_page") : 0;
    _max_pages = p.has("max_pages") ? p.integer("max_pages") : 0;
    _meta = MetaPointers(p);
    // Values that are empty or built from an unset ${env:...} are not sent (optional keys).
    auto read_pairs = [&](const char* name, std::vector<std::pair<std::string, std::string>>& out) {
      if (const json::Value* h = p.get(name); h && h->kind == json::Kind::object)
        for (const auto& m : h->members) {
          if (m.value.kind != json::Kind::string)
            throw ParamError(name, std::string(name) + "." + m.key + " must be a string");
          if (!m.value.unset_env && !m.value.str.empty()) out.emplace_back(m.key, m.value.str);
        }
    };
    std::vector<std::pair<std::string, std::string>> headers;
    read_pairs("headers", headers);
    for (const auto& [name, value] : headers)
      _headers.push_back(http::static_header("headers", name + ": " + value));
    read_pairs("query", _query);
    // partitions: one listing per object, its query params over `query`'s; a process of a
    // sharded job lists the partitions k, k + N, ... of them, whatever the paging.
    double rpm_scale = 1;  // partition_rpm_scale
    if (const json::Value* parts = p.get("partitions"); parts && parts->kind != json::Kind::null) {
      auto all = read_partitions(*parts);
      for (size_t i = 0; i < all.size(); ++i)
        if (init.part.all() ||
            static_cast<int>(i % static_cast<size_t>(init.part.count)) == init.part.index)
          _partitions.push_back(std::move(all[i]));
      _partitioned = true;
      rpm_scale = partition_rpm_scale(all.size(), init.part, init.shard, init.limit_sharers);
    }
    _opts = http::read_request_options(p, init.id);
    _opts.limit.rpm *= rpm_scale;
    _origin = http::origin_of(_url);
    // Pages and offsets can be split among the job's processes: process k of N lists pages k,
    // k + N, k + 2N... and keeps every item on them. A cursor or a link is known only from the
    // page before, so those listings are paged whole by each process, which keeps its share.
    _split = !_partitioned && !init.part.all() && (_paging == "page" || _paging == "offset") &&
             p.boolean("split_pages");
    _part_count = std::max(1, init.part.count);
    _part_index = init.part.index;
    // One lane lists the whole listing, or one partition at a time. A partitioned listing lists
    // up to `concurrency` partitions at once in the whole job: this process's share of it
    // (rounded up, at least 1), as for every I/O node.
    size_t lanes = 1;
    if (_partitioned && !_partitions.empty()) {
      const int sharers = std::max(1, init.limit_sharers);
      lanes = init.concurrency > 0
                  ? std::min(_partitions.size(),
                             static_cast<size_t>((init.concurrency + sharers - 1) / sharers))
                  : _partitions.size();
    }
    _next_partition = lanes;
    for (size_t i = 0; i < lanes; ++i) _lanes.push_back(fresh_lane(i));
    if (_split) {
      _stride = init.part.count;
      _global_page = init.part.index;
      _lanes[0].page += init.part.index;
      _lanes[0].offset = static_cast<int64_t>(init.part.index) * _per_page;
    }
  }

  bool pushes() const override { return true; }
  bool splits_itself() const override { return _split || (_partitioned && _part_count > 1); }

  // Exact once the listing ended; before, what its first page announced (`total`), if anything.
  std::optional<uint64_t> total() const override {
    // The runner divides a total by the processes sharing the job; a split listing's own count
    // is this process's already, so it is given as the job's.
    if (_listed.load(std::memory_order_acquire))
      return _emitted_total.load() * static_cast<uint64_t>(splits_itself() ? _part_count : 1);
    uint64_t n = _announced.load(std::memory_order_acquire);
    if (n == kUnknown) return std::nullopt;
    return n;
  }
  RecordPtr next() override { return nullptr; }  // a push source: never pulled

  void start(SourceOutput& out) override {
    _out = &out;
    _client = &out.http();
    _opts.set_rate_limit(*_client);
    if ((_split && _max_pages > 0 && _global_page >= _max_pages) ||
        (_partitioned && _partitions.empty())) {
      // Every page within max_pages, or every partition, is another process's.
      _listed.store(true, std::memory_order_release);
      {
        std::lock_guard lock(_mu);
        _finished = true;
      }
      out.done();
      return;
    }
    maybe_fetch(/*first=*/true);
  }

  void on_admitted() override { maybe_fetch(); }

 private:
  // Where one listing (the whole one, or a partition) stands: its next page, offset, cursor or
  // link, and the cursors and links it followed.
  struct Lane {
    size_t partition = 0;
    int64_t pages = 0, page = 1, offset = 0;
    std::string cursor, next_url;
    std::unordered_set<std::string> seen;
    bool busy = false;  // a page in flight
    bool done = false;  // nothing more to list
  };

  Lane fresh_lane(size_t partition) const {
    Lane l;
    l.partition = partition;
    l.page = _params.integer("start_page");
    l.cursor = _params.str("start_cursor");
    return l;
  }

  size_t low_water() const { return static_cast<size_t>(std::max<int64_t>(_per_page, 100)); }

  // Asks for the next page of every idle lane while fewer than a page of documents wait (the
  // first call asks regardless).
  void maybe_fetch(bool first = false) {
    for (;;) {
      Lane* lane = nullptr;
      {
        std::lock_guard lock(_mu);
        if (_finished || (!first && _out->waiting() > low_water())) return;
        for (Lane& l : _lanes)
          if (!l.busy && !l.done) {
            lane = &l;
            break;
          }
        if (!lane) return;
        lane->busy = true;
      }
      request(*lane);
    }
  }

  std::string page_url(const Lane& lane) const {
    if (!lane.next_url.empty()) return lane.next_url;
    std::string u = _url;
    auto add = [&](const std::string& name, const std::string& value) {
      u += (u.find('?') == std::string::npos ? '?' : '&');
      u += url_encode(name) + "=" + url_encode(value);
    };
    for (const auto& [name, value] : _query) {
      bool overridden = false;
      if (_partitioned)
        for (const auto& [pname, pvalue] : _partitions[lane.partition]) overridden |= pname == name;
      if (!overridden) add(name, value);
    }
    if (_partitioned)
      for (const auto& [name, value] : _partitions[lane.partition]) add(name, value);
    if (_paging == "page") add(_params.str("page_param"), std::to_string(lane.page));
    if (_paging == "offset") add(_params.str("offset_param"), std::to_string(lane.offset));
    if (_paging == "cursor") add(_params.str("cursor_param"), lane.cursor);
    if (_per_page > 0 && _paging != "link")
      add(_params.str("per_page_param"), std::to_string(_per_page));
    return u;
  }

  void request(Lane& lane) {
    http::Request req;
    req.url = page_url(lane);
    for (const auto& header : _headers) req.headers.push_back(header);
    _opts.apply(req);
    _out->hold();
    _client->submit(std::move(req), _opts.retry, _opts.limit_key, 0,
                    [this, &lane, url = page_url(lane)](http::Response&& resp) {
                      on_page(lane, url, std::move(resp));
                    });
  }

  // The count the first page announces (e.g. OpenAlex's /meta/count), within max_pages.
  void read_total(const rapidjson::Document& d, size_t first_page_items) {
    if (!_total_ptr) return;
    const rapidjson::Value* v = _total_ptr->Get(d);
    if (!v || !v->IsNumber() || v->GetDouble() < 0 || v->GetDouble() > 1e15) {
      _out->warn("\"total\" " + _total_text + " is not a count in the listing's first page" +
                 (v ? "" : " (nothing there)") + ": the progress line shows no ETA");
      return;
    }
    auto n = static_cast<uint64_t>(v->GetDouble());
    const int64_t page = _per_page > 0 ? _per_page : static_cast<int64_t>(first_page_items);
    if (_max_pages > 0 && page > 0)
      n = std::min(n, static_cast<uint64_t>(_max_pages) * static_cast<uint64_t>(page));
    _announced.store(n, std::memory_order_release);
  }

  // Leaves of the listing (a tree when `recurse` names the child array) become documents.
  size_t emit_items(const rapidjson::Value& arr, int depth) {
    size_t n = 0;
    for (const auto& item : arr.GetArray()) {
      if (!_recurse.empty() && item.IsObject() && item.HasMember(_recurse.c_str()) &&
          item[_recurse.c_str()].IsArray()) {
        if (depth < 32) emit_items(item[_recurse.c_str()], depth + 1);
        continue;
      }
      if (_skip && json_truthy(_skip->Get(item))) continue;
      auto r = std::make_shared<Record>();
      const rapidjson::Value* id = _id.Get(item);
      if (id && id->IsString()) r->id.assign(id->GetString(), id->GetStringLength());
      else if (id && id->IsNumber()) r->id = json_text(*id);
      else {
        // Unique across the processes a split listing is divided among.
        r->id = _node_id + ":item" + std::to_string(_emitted) +
                (splits_itself() ? "@" + std::to_string(_part_index) : "");
        r->error = "listing item has no id at " + _id_text;
      }
      if (_text) {
        const rapidjson::Value* t = _text->Get(item);
        if (t && t->IsString()) r->text.assign(t->GetString(), t->GetStringLength());
      }
      _meta.apply(item, r->meta);
      r->body = json_text(item);
      ++_emitted;
      ++n;
      _out->emit(std::move(r));
    }
    return n;
  }

  void on_page(Lane& lane, const std::string& url, http::Response&& resp) {
    bool finished = false, failed = false;
    auto fail_run = [&](std::string message) {
      _out->fail_run(std::move(message));
      failed = true;
    };
    if (!resp.ok()) {
      fail_run("listing " + redacted(url) + " failed: " + resp.error);
      finished = true;
    } else {
      rapidjson::Document d;
      const bool parsed = parse_untrusted(d, resp.body);
      const rapidjson::Value* items = parsed ? _items.Get(d) : nullptr;
      if (!parsed) {
        fail_run("listing " + redacted(url) + ": the response is not JSON");
        finished = true;
      } else if (!items || !items->IsArray()) {
        fail_run("listing " + redacted(url) + ": \"items\" " + _items_text +
                 " does not point at an array" + (items ? "" : " (nothing there)"));
        finished = true;
      } else {
        size_t raw = items->Size();
        if (lane.pages == 0 && !_partitioned) read_total(d, raw);  // a partition's count is not all
        emit_items(*items, 0);
        ++lane.pages;
        // A short page is not the end: only an empty one, a missing cursor or link, or max_pages.
        if (raw == 0 || _paging == "none") finished = true;
        else if (_split && _paging == "page") lane.page += _stride;
        else if (_split) lane.offset += static_cast<int64_t>(_stride) * _per_page;
        else if (_paging == "page") ++lane.page;
        else if (_paging == "offset") lane.offset += static_cast<int64_t>(raw);
        else if (_paging == "cursor") {
          const rapidjson::Value* c = _next.Get(d);
          if (!c || c->IsNull() || (c->IsString() && c->GetStringLength() == 0)) finished = true;
          else
            lane.cursor =
                c->IsString() ? std::string(c->GetString(), c->GetStringLength()) : json_text(*c);
          if (!finished && !lane.seen.insert(lane.cursor).second) {
            fail_run("listing " + redacted(url) +
                     " returned a cursor it gave before: stopping instead of looping");
            finished = true;
          }
        } else if (_paging == "link") {
          lane.next_url = link_next(resp.header("link"));
          if (lane.next_url.empty()) finished = true;
          else if (!http::is_http_url(lane.next_url)) {
            fail_run("listing " + redacted(url) + ": rel=\"next\" is not an absolute http(s) URL");
            finished = true;
          } else if (std::string to = http::origin_of(lane.next_url);
                     !_headers.empty() &&
                     !http::headers_may_go(_origin, to, _opts.trusted_origins)) {
            // The headers (keys) were configured for the listing's own origin.
            fail_run("listing " + redacted(url) + ": rel=\"next\" leads to " + to +
                     ", another origin; not followed, so the headers configured for " + _origin +
                     " stay there (add it to trusted_origins to follow it)");
            finished = true;
          } else if (!lane.seen.insert(lane.next_url).second) {
            fail_run("listing " + redacted(url) +
                     " links back to a page it already gave: stopping instead of looping");
            finished = true;
          }
        }
        _global_page += _stride;  // the listing's page this process asks for next
        // Split offsets step by per_page: a server that gives fewer items than asked (a cap of
        // its own) would leave the items between unlisted. A short page is the end, unless a
        // later page has items.
        if (_split && _paging == "offset" && raw > 0) {
          if (_short_page) {
            fail_run("listing " + redacted(url) + ": the server gave fewer items a page (" +
                     std::to_string(_short_page) + ") than per_page " + std::to_string(_per_page) +
                     " before the end, so split offsets would skip items: set per_page to "
                     "what it gives, or split_pages false");
            finished = true;
          }
          if (static_cast<int64_t>(raw) < _per_page) _short_page = raw;
        }
        const bool at_max =
            _max_pages > 0 && (_split ? _global_page >= _max_pages : lane.pages >= _max_pages);
        if (at_max) finished = true;
        if (finished && _partitioned && !failed && !_out->stopping()) {
          // This partition ended (max_pages counts each partition's own): the lane takes the
          // next one not yet started, from its first page.
          std::lock_guard lock(_mu);
          if (_next_partition < _partitions.size()) {
            lane = fresh_lane(_next_partition++);
            lane.busy = true;
            finished = false;
          }
        }
      }
    }
    // A failure or a stop ends every lane: the run is over.
    const bool all_over = failed || _out->stopping();
    bool ended = false;
    {
      std::lock_guard lock(_mu);
      lane.busy = false;
      lane.done = lane.done || finished;
      if (all_over)
        for (Lane& l : _lanes) l.done = true;
      ended = !_finished && std::all_of(_lanes.begin(), _lanes.end(),
                                        [](const Lane& l) { return l.done && !l.busy; });
      _finished = _finished || ended;
    }
    if (ended && !_out->stopping()) {  // a failure stops the run, so this listing ended in full
      _emitted_total.store(_emitted);
      _listed.store(true, std::memory_order_release);
    }
    if (ended) _out->done();
    else maybe_fetch();
    _out->release();
  }

  Params _params;
  std::string _node_id;
  std::string _url, _items_text, _id_text, _paging, _recurse;
  rapidjson::Pointer _items, _id, _next;
  std::optional<rapidjson::Pointer> _text, _skip;
  MetaPointers _meta;
  std::vector<std::string> _headers;  // "Name: value", checked
  std::string _origin;                // _url's: where _headers may go
  std::vector<std::pair<std::string, std::string>> _query;
  int64_t _per_page = 0, _max_pages = 0;
  // Split among the processes (split_pages): this process lists every _stride-th page, and
  // _global_page is the listing's index (from 0) of the page it asks for next.
  bool _split = false;
  int64_t _stride = 1, _global_page = 0;
  // partitions: this process's share of them, and the one being listed.
  bool _partitioned = false;
  int _part_index = 0;  // this process's index among the _part_count
  std::vector<QueryParams> _partitions;
  int _part_count = 1;         // the processes the job's listing is split among
  size_t _short_page = 0;      // split offsets: a page with fewer items than per_page, seen
  std::vector<Lane> _lanes;    // fixed at construction (requests hold references)
  size_t _next_partition = 0;  // the first of this process's partitions no lane took yet
  uint64_t _emitted = 0;
  static constexpr uint64_t kUnknown = ~uint64_t{0};
  std::optional<rapidjson::Pointer> _total_ptr;
  std::string _total_text;
  std::atomic<uint64_t> _announced{kUnknown}, _emitted_total{0};
  std::atomic<bool> _listed{false};  // the listing ended: _emitted_total is exact
  http::RequestOptions _opts;
  SourceOutput* _out = nullptr;
  http::Client* _client = nullptr;
  std::mutex _mu;
  bool _finished = false;  // every lane is done and idle: done() was called
};

}  // namespace

std::string link_next(const std::string& header) {
  // <url>; rel="next", <url2>; rel="last"
  size_t pos = 0;
  while (pos < header.size()) {
    size_t lt = header.find('<', pos);
    if (lt == std::string::npos) break;
    size_t gt = header.find('>', lt);
    if (gt == std::string::npos) break;
    size_t end = header.find('<', gt);
    std::string params =
        header.substr(gt + 1, end == std::string::npos ? std::string::npos : end - gt - 1);
    if (params.find("rel=\"next\"") != std::string::npos ||
        params.find("rel=next") != std::string::npos)
      return header.substr(lt + 1, gt - lt - 1);
    pos = gt + 1;
  }
  return {};
}

NodeTypeInfo source_http_list_info() {
  NodeTypeInfo info;
  info.type = "source.http_list";
  info.role = NodeRole::source;
  info.description =
      "Documents from a paginated JSON listing. Pages are fetched on the HTTP loop one at a time "
      "(with partitions, up to `concurrency` partitions at once, a page each), only when fewer "
      "than a page of documents wait for admission. Stops at the first page with no items, a "
      "missing/null/empty cursor, no rel=\"next\" link, or max_pages (a short page is not a stop). "
      "Each "
      "document's body is its item's JSON, for extract nodes.";
  info.params = {
      required_param("url", ParamType::string, "first page URL (paging params are appended)"),
      required_param("items", ParamType::string,
                     "JSON pointer to the array of items in a page, e.g. /results"),
      param("id", ParamType::string, "\"/id\"", "JSON pointer to an item's id"),
      param("text", ParamType::string, "null", "JSON pointer to an item's text (optional)"),
      param("meta", ParamType::object, "{}", "meta name -> JSON pointer within an item"),
      param("paging", ParamType::string, "\"none\"", "none, page, offset, cursor or link"),
      param("next", ParamType::string, "null", "cursor paging: JSON pointer to the next cursor"),
      param("cursor_param", ParamType::string, "\"cursor\"", "cursor paging: query parameter name"),
      param("start_cursor", ParamType::string, "\"*\"", "cursor paging: first cursor"),
      param("page_param", ParamType::string, "\"page\"", "page paging: query parameter name"),
      param("start_page", ParamType::integer, "1", "page paging: first page number"),
      param("offset_param", ParamType::string, "\"offset\"", "offset paging: query parameter name"),
      with_min(
          param("per_page", ParamType::integer, "null", "sent as per_page_param only when set"), 1),
      param("per_page_param", ParamType::string, "\"per_page\"", "query parameter for per_page"),
      with_min(
          param("max_pages", ParamType::integer, "0", "stop after this many pages (0 = no limit)"),
          0),
      param("query", ParamType::object, "{}",
            "query parameters added to every page; empty ones are not sent"),
      param("headers", ParamType::object, "{}",
            "request headers; empty ones (or from an unset ${env:...}) are not sent"),
      param("recurse", ParamType::string, "null",
            "tree walk: the child-array field (e.g. contents); leaves are items without it"),
      param("skip", ParamType::string, "null",
            "JSON pointer whose truthy value drops a leaf (e.g. /isCollection)"),
      param("total", ParamType::string, "null",
            "JSON pointer to the item count the first page announces (e.g. /meta/count), for "
            "the ETA; a listing that ended is counted exactly without it"),
      param("split_pages", ParamType::boolean, "true",
            "page and offset paging under shards or --processes: each process lists only its "
            "share of the pages (k, k + N, ...) and keeps every item on them; false: every "
            "process lists every page and keeps the items whose id hashes to it (cursor and "
            "link paging always do that)"),
      param("partitions", ParamType::any, "null",
            "one listing per object of query params (over query's), e.g. "
            "[{\"filter\": \"publication_year:2020\"}, {\"filter\": \"publication_year:2021\"}], "
            "or date windows {\"from\": \"2024-01-01\", \"to\": \"2024-12-31\", \"every\": "
            "\"week\", \"query\": {\"filter\": \"from_date:{from},to_date:{to}\"}} (every: day, "
            "week, month, quarter, year or Nd; {from} and {to} are each window's first and last "
            "day; month, quarter and year windows end on a month's last day): listed "
            "`concurrency` at a time, and under shards or --processes split among the processes "
            "(partition i goes to process i mod N), for cursor listings that cannot split by page"),
  };
  http::add_request_params(info.params, {.unit = "page", .legacy_max_attempts = true});
  for (auto& p : info.params)
    if (p.name == "paging") p.choices = {"none", "page", "offset", "cursor", "link"};
  // partitions listed at once in the whole job (one page in flight each)
  info.default_concurrency = 4;
  info.make_source = [](const NodeInit& init) { return std::make_unique<HttpListSource>(init); };
  info.cost = [](const Params& p, const CostInput&) {
    NodeCost c;
    c.io = true;
    c.listing = true;
    c.what = "pages";
    c.per_page = p.has("per_page") ? p.number("per_page") : 25;  // the upstream's own default page
    const std::string paging = p.str("paging");
    c.listing_splits = ((paging == "page" || paging == "offset") && p.boolean("split_pages")) ||
                       p.has("partitions");
    if (const json::Value* parts = p.get("partitions"); parts && parts->kind != json::Kind::null)
      c.listing_parts = static_cast<double>(read_partitions(*parts).size());
    c.requests_per_doc = 1.0 / c.per_page;
    return c;
  };
  return info;
}

}  // namespace sluice
