// source.http_list and expand.json against the sim: paging, trees, the end of a listing.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <set>
#include <thread>

#include <rapidjson/document.h>

#include "engine/http/adaptive_limit.hpp"
#include "engine/http/client.hpp"
#include "engine/record_template.hpp"
#include "nodes/builtin_nodes.hpp"
#include "nodes/index_sqlite.hpp"
#include "nodes/index_sqlite_search.hpp"
#include "nodes/source_http_list.hpp"
#include "sim/sim.hpp"
#include "tests/script_server.hpp"
#include "tests/sim_fixture.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

std::string list_graph(const std::string& list_params, const std::string& fetch_url,
                       const std::string& db, int max_inflight = 2000) {
  return R"({"settings": {"max_inflight_docs": )" + std::to_string(max_inflight) + R"(},
  "nodes": [{"id": "list", "type": "source.http_list", "params": {)" +
         list_params + R"(}},
    {"id": "fetch", "type": "fetch.http", "params": {"url": ")" +
         fetch_url + R"("}, "concurrency": 16},
    {"id": "extract", "type": "extract.json", "params": {"text": "/text"}},
    {"id": "index", "type": "index.sqlite", "params": {"path": ")" +
         db + R"("}}],
  "edges": [["list", "fetch"], ["fetch", "extract"], ["extract", "index"]]})";
}

// Adds the ids of index.jsonl's file `path` to `seen`, each for the first time.
void add_ids(const std::string& path, std::set<std::string>& seen) {
  for (const auto& line : test::read_lines(path)) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    ASSERT_TRUE(d.IsObject() && d.HasMember("id")) << line;
    EXPECT_TRUE(seen.insert(d["id"].GetString()).second) << "twice: " << line;
  }
}

// A source.http_list (`list`: its spec's members after the type, e.g. `"params": {...}`) into
// index.jsonl at `out`, run on 2 threads as shard `index` of `count` (0 of 1: the whole job).
RunReport list_to_jsonl(const std::string& list, const std::string& out, int index = 0,
                        int count = 1) {
  GraphSpec spec = test::spec_from(R"({"nodes": [
    {"id": "list", "type": "source.http_list", )" +
                                   list + R"(},
    {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
                                   out + R"("}}],
    "edges": [["list", "out"]]})");
  RunOptions opts;
  opts.threads = 2;
  opts.shard.index = index;
  opts.shard.count = count;
  return run_graph(spec, opts);
}

// One response → many records: listing pages fetched, each expanded into its items, each item
// fetched as a document of its own.
TEST(ExpandJson, ListingPagesBecomeOneDocumentPerItem) {
  sim::SimOptions o;
  o.docs = 12;
  test::RunningSim server(o);
  test::TempDir dir;
  test::write_file(dir / "pages.txt", "1\n2\n3\n4\n");
  auto graph = [&](const std::string& items) {
    return R"({"settings": {"dead_letter": ")" + (dir / "dlq.jsonl") + R"("},
    "nodes": [{"id": "pages", "type": "source.lines", "params": {"path": ")" +
           (dir / "pages.txt") + R"("}},
      {"id": "list", "type": "fetch.http", "params": {"url": ")" +
           server.url() + R"(/docs?page={id}&per_page=5"}},
      {"id": "items", "type": "expand.json", "params": {"items": ")" +
           items + R"(", "id": "{/id}", "documents": true,
                                                        "meta": {"listing_page": "/id"}}},
      {"id": "fetch", "type": "fetch.http", "params": {"url": ")" +
           server.url() + R"(/docs/{id}"}},
      {"id": "text", "type": "extract.json", "params": {"text": "/text"}},
      {"id": "out", "type": "index.jsonl", "params": {"path": ")" +
           (dir / "out.jsonl") + R"("}}],
    "edges": [["pages", "list"], ["list", "items"], ["items", "fetch"], ["fetch", "text"], ["text", "out"]]})";
  };
  RunReport rep = test::run_json(graph("/items"));
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.dead_lettered, 0u);
  auto lines = test::read_lines(dir / "out.jsonl");
  ASSERT_EQ(lines.size(), 12u) << "pages of 5, 5 and 2 items; page 4 is empty (filtered)";
  std::set<std::string> ids;
  for (const auto& l : lines) {
    rapidjson::Document d;
    d.Parse(l.c_str());
    ASSERT_FALSE(d.HasParseError());
    ids.insert(d["id"].GetString());
    EXPECT_STREQ(d["id"].GetString(), d["doc_id"].GetString()) << "documents: true";
    EXPECT_FALSE(std::string(d["text"].GetString()).empty());
  }
  EXPECT_EQ(ids.size(), 12u);
  EXPECT_EQ(ids.count("doc-000012"), 1u);

  // Not an array at `items`: the page is dead-lettered with the pointer named, nothing crashes.
  RunReport bad = test::run_json(graph("/page"));
  EXPECT_EQ(bad.lost, 0u);
  EXPECT_EQ(bad.dead_lettered, 4u);
  std::string dlq = test::read_file(dir / "dlq.jsonl");
  EXPECT_NE(dlq.find(R"(items: no array at \"/page\" (found a number))"), std::string::npos) << dlq;
}

TEST(HttpList, PagesUntilAnEmptyPageAndAShortPageIsNotTheEnd) {
  sim::SimOptions o;
  o.docs = 230;
  test::RunningSim server(o);
  test::TempDir dir;
  std::string params = R"("url": ")" + server.url() +
                       R"(/docs", "items": "/items", "paging": "page", "per_page": 50)";
  RunReport rep = test::run_json(list_graph(params, server.url() + "/docs/{id}", dir / "l.db", 40));
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs, 230u);
  EXPECT_EQ(rep.docs_indexed, 230u);
  EXPECT_LE(rep.peak_inflight_docs, 40);
  auto st = server.stats();
  // 5 pages with items (the 5th short) and 1 empty page that ends the listing.
  EXPECT_EQ(st["by_endpoint"]["/docs"]["requests"].GetInt64(), 6);
  EXPECT_EQ(test::sqlite_count(dir / "l.db", "SELECT count(DISTINCT doc_id) FROM chunks"), 230);
}

// Shards and processes of a paged listing each list only their share of the pages
// (split_pages): together every document once, in about one listing's requests instead of one
// per process.
TEST(HttpList, PagesAreSplitAmongTheShardsAndEachKeepsEveryItemOnItsPages) {
  struct Case {
    bool split;
    int max_pages;
    size_t docs;
    int64_t pages;
    const char* why;
  };
  // 1,000 documents, 50 a page: pages 1-20.
  for (const Case& c : {Case{true, 19, 950, 19, "each page listed once, by one shard"},
                        Case{true, 0, 1000, 23, "20 pages, and an empty one ends each shard's"},
                        Case{false, 19, 950, 57, "every shard lists every page"}}) {
    const bool split = c.split;
    sim::SimOptions o;
    o.docs = 1000;
    test::RunningSim server(o);
    test::TempDir dir;
    std::set<std::string> seen;
    size_t admitted = 0;
    for (int shard = 0; shard < 3; ++shard) {
      const std::string db = dir / ("s" + std::to_string(shard) + ".db");
      GraphSpec spec = test::spec_from(list_graph(
          R"("url": ")" + server.url() + R"(/docs", "items": "/items", "paging": "page", )" +
              R"("per_page": 50, "max_pages": )" + std::to_string(c.max_pages) +
              R"(, "split_pages": )" + (split ? "true" : "false"),
          server.url() + "/docs/{id}", db));
      RunOptions opts;
      opts.threads = 2;
      opts.shard.index = shard;
      opts.shard.count = 3;
      RunReport rep = run_graph(spec, opts);
      ASSERT_EQ(rep.error, "");
      EXPECT_EQ(rep.lost, 0u);
      admitted += rep.docs;
      sqlite3* h = nullptr;
      sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
      sqlite3_stmt* st = nullptr;
      sqlite3_prepare_v2(h, "SELECT DISTINCT doc_id FROM chunks", -1, &st, nullptr);
      while (st && sqlite3_step(st) == SQLITE_ROW)
        EXPECT_TRUE(seen.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))).second)
            << "a document in two shards";
      sqlite3_finalize(st);
      sqlite3_close(h);
    }
    // Each document in exactly one shard.
    EXPECT_EQ(seen.size(), c.docs) << c.why;
    EXPECT_EQ(admitted, c.docs) << c.why;
    EXPECT_EQ(server.stats()["by_endpoint"]["/docs"]["requests"].GetInt64(), c.pages) << c.why;
  }
}

// Offsets split by per_page: every item once; a server that gives fewer items than asked would
// leave some unlisted, and the listing stops with the reason instead.
TEST(HttpList, SplitOffsetsListEveryItemOnceOrStopWhenTheServerCapsAPage) {
  for (int cap : {0, 30}) {
    test::ScriptServer server([cap](const test::SeenRequest& r) {
      auto arg = [&](const std::string& name) {
        size_t at = r.target.find(name + "=");
        return at == std::string::npos ? 0 : std::stoi(r.target.substr(at + name.size() + 1));
      };
      int from = arg("offset"), n = arg("per_page");
      if (cap > 0) n = std::min(n, cap);
      std::string items;
      for (int i = from; i < std::min(from + n, 230); ++i)
        items += std::string(items.empty() ? "" : ",") + R"({"id": "o-)" + std::to_string(i) +
                 R"(", "text": "t"})";
      return test::ScriptServer::respond(200, R"({"items": [)" + items + "]}");
    });
    test::TempDir dir;
    std::set<std::string> seen;
    std::string errors;
    for (int shard = 0; shard < 2; ++shard) {
      const std::string out = dir / ("o" + std::to_string(shard) + ".jsonl");
      RunReport rep = list_to_jsonl(R"("params": {"url": ")" + server.url("/items") +
                                        R"(", "items": "/items", "text": "/text",
                                        "paging": "offset", "per_page": 50})",
                                    out, shard, 2);
      errors += rep.error;
      add_ids(out, seen);
    }
    if (cap == 0) {
      EXPECT_EQ(errors, "");
      EXPECT_EQ(seen.size(), 230u);
    } else {
      EXPECT_NE(errors.find("the server gave fewer items a page (30) than per_page 50"),
                std::string::npos)
          << errors;
    }
  }
}

// A cursor listing cannot split by page: `partitions` (one listing per object of query params)
// splits it, partition i to process i mod N, each listed in turn from its first cursor.
TEST(HttpList, PartitionsSplitACursorListingAmongTheShards) {
  // Partition PART has two pages of three items: PART-0 .. PART-5 (the test lists one).
  test::ScriptServer server([](const test::SeenRequest& r) {
    auto arg = [&](const std::string& name) {
      size_t at = r.target.find(name + "=");
      if (at == std::string::npos) return std::string();
      size_t end = r.target.find('&', at);
      return r.target.substr(at + name.size() + 1,
                             end == std::string::npos ? end : end - at - name.size() - 1);
    };
    const std::string part = arg("part"), cursor = arg("cursor");
    const int first = cursor == "second" ? 3 : 0;
    std::string items;
    for (int i = first; i < first + 3; ++i)
      items += std::string(items.empty() ? "" : ",") + R"({"id": ")" + part + "-" +
               std::to_string(i) + R"(", "text": "t"})";
    return test::ScriptServer::respond(
        200, R"({"results": [)" + items + R"(], "next": )" +
                 (cursor == "second" ? std::string("null") : std::string(R"("second")")) + "}");
  });
  test::TempDir dir;
  std::set<std::string> seen;
  for (int shard = 0; shard < 3; ++shard) {
    const std::string out = dir / ("s" + std::to_string(shard) + ".jsonl");
    RunReport rep = list_to_jsonl(R"("params": {"url": ")" + server.url("/works") +
                                      R"(", "items": "/results", "text": "/text",
        "paging": "cursor", "next": "/next", "query": {"part": "none", "keep": "yes"},
        "partitions": [{"part": "a"}, {"part": "b"}, {"part": "c"}, {"part": "d"}],
        "max_pages": 1})",
                                  out, shard, 3);
    ASSERT_EQ(rep.error, "");
    add_ids(out, seen);
    // max_pages is each partition's: its first page, of three items.
    EXPECT_EQ(rep.docs, shard == 0 ? 6u : 3u) << "shard 0 lists partitions a and d";
  }
  EXPECT_EQ(seen.size(), 12u);
  for (const auto& r : server.seen()) {
    EXPECT_NE(r.target.find("keep=yes"), std::string::npos) << r.target;
    EXPECT_EQ(r.target.find("part=none"), std::string::npos) << "the partition's part wins";
  }
  EXPECT_EQ(server.seen().size(), 4u) << "one page a partition, each listed once";
}

TEST(HttpList, MaxPagesStopsAndItemsMustBeAnArray) {
  sim::SimOptions o;
  o.docs = 100;
  test::RunningSim server(o);
  test::TempDir dir;
  RunReport rep = test::run_json(list_graph(
      R"("url": ")" + server.url() +
          R"(/docs", "items": "/items", "paging": "page", "per_page": 10, "max_pages": 3)",
      server.url() + "/docs/{id}", dir / "a.db"));
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_EQ(rep.docs_indexed, 30u);
  RunReport bad =
      test::run_json(list_graph(R"("url": ")" + server.url() + R"(/docs", "items": "/page")",
                                server.url() + "/docs/{id}", dir / "b.db"));
  EXPECT_NE(bad.error.find("\"items\" /page does not point at an array"), std::string::npos)
      << bad.error;
  EXPECT_EQ(bad.exit_code(), 1);
}

TEST(HttpList, InterruptEndsAListingThatIsNotFetching) {
  // Pages of 1000 leave more than enough waiting, so the listing is idle (no page in flight)
  // when the run is interrupted: it must still end promptly and cleanly.
  sim::SimOptions o;
  o.docs = 5000;
  o.latency_ms = 20;
  test::RunningSim server(o);
  test::TempDir dir;
  GraphSpec spec = test::spec_from(
      list_graph(R"("url": ")" + server.url() +
                     R"(/docs", "items": "/items", "paging": "page", "per_page": 1000)",
                 server.url() + "/docs/{id}", dir / "i.db", 50));
  std::atomic<bool> interrupt{false};
  RunOptions opts;
  opts.interrupt = &interrupt;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    interrupt = true;
  });
  RunReport rep = run_graph(spec, opts);
  stopper.join();
  EXPECT_TRUE(rep.interrupted);
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.lost, 0u);
  EXPECT_LT(rep.docs, 5000u);
  EXPECT_EQ(rep.docs_indexed, rep.docs);
  EXPECT_LT(rep.elapsed_s, 5.0);
}

// The progress event's field `key` as a number, or -1 when the event has none.
double event_number(const std::string& line, const char* key) {
  rapidjson::Document d;
  d.Parse(line.c_str());
  if (d.HasParseError() || !d.HasMember(key) || !d[key].IsNumber()) return -1;
  return d[key].GetDouble();
}

// A listing that announces its count (the sim's /total, OpenAlex's /meta/count) gives the
// progress line its total, and so an ETA, from the first page on; one that does not is counted
// when it ended. max_pages caps the announced count.
TEST(HttpList, AnAnnouncedTotalGivesTheProgressItsEtaFromTheFirstPage) {
  sim::SimOptions o;
  o.docs = 600;
  o.latency_ms = 20;
  test::RunningSim server(o);
  test::TempDir dir;
  auto run = [&](const std::string& extra, std::vector<std::string>& events) {
    GraphSpec spec = test::spec_from(
        list_graph(R"("url": ")" + server.url() +
                       R"(/docs", "items": "/items", "paging": "page", "per_page": 100)" + extra,
                   server.url() + "/docs/{id}", dir / "t.db", 40));
    return test::run_with_events(spec, dir, events);
  };
  std::vector<std::string> events;
  RunReport rep = run(R"(, "total": "/total")", events);
  EXPECT_EQ(rep.error, "");
  EXPECT_EQ(rep.docs, 600u);
  ASSERT_FALSE(events.empty()) << "a run of about 0.8 s writes progress events";
  // 16 fetches of 20 ms at a time: the first event comes long before the listing's 6th page.
  EXPECT_LT(event_number(events.front(), "docs"), 500) << events.front();
  for (const auto& e : events) EXPECT_EQ(event_number(e, "total"), 600) << e;

  // No `total`: unknown while the listing goes on, exact once it ended.
  rep = run("", events);
  EXPECT_EQ(rep.docs, 600u);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(event_number(events.front(), "total"), -1) << events.front();
  for (const auto& e : events) {
    const double total = event_number(e, "total");
    EXPECT_TRUE(total == -1 || total == 600) << e;
  }

  // Within max_pages: 2 pages of 100, whatever the listing announces.
  rep = run(R"(, "total": "/total", "max_pages": 2)", events);
  EXPECT_EQ(rep.docs, 200u);
  for (const auto& e : events) EXPECT_EQ(event_number(e, "total"), 200) << e;

  // A pointer that points at no count: a warning, and no total.
  rep = run(R"(, "total": "/meta/count")", events);
  EXPECT_EQ(rep.error, "");
  ASSERT_EQ(rep.warnings.size(), 1u);
  EXPECT_NE(rep.warnings[0].find("\"total\" /meta/count is not a count"), std::string::npos)
      << rep.warnings[0];
}

TEST(HttpList, LinkHeaderNext) {
  EXPECT_EQ(link_next(R"(<https://x/a?page=2>; rel="next", <https://x/a?page=9>; rel="last")"),
            "https://x/a?page=2");
  EXPECT_EQ(link_next(R"(<https://x/a?page=9>; rel="last")"), "");
  EXPECT_EQ(link_next(""), "");
}

TEST(HttpList, ANextPageOnAnotherOriginNeverGetsTheListingsHeaders) {
  test::ScriptServer* self = nullptr;
  test::ScriptServer server([&](const test::SeenRequest& r) {
    if (r.target.rfind("/list", 0) == 0)
      return test::ScriptServer::respond(200, R"({"items": [{"id": "a"}, {"id": "b"}]})",
                                         "Content-Type: application/json\r\nLink: <" +
                                             self->other_origin_url("/list?page=2") +
                                             ">; rel=\"next\"\r\n");
    return test::ScriptServer::respond(200, R"({"text": "doc"})");
  });
  self = &server;
  test::TempDir dir;
  RunReport rep = test::run_json(list_graph(
      R"("url": ")" + server.url("/list") +
          R"(", "items": "/items", "paging": "link", "headers": {"X-Api-Key": "key-4711"})",
      server.url("/docs/{id}"), dir / "i.db"));
  EXPECT_NE(rep.error.find("another origin"), std::string::npos) << rep.error;
  EXPECT_NE(rep.error.find("trusted_origins"), std::string::npos) << rep.error;
  for (const auto& r : server.seen())
    EXPECT_EQ(r.head.find("localhost"), std::string::npos) << "page 2 was requested: " << r.head;
  EXPECT_EQ(rep.lost, 0u);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

std::vector<std::vector<std::pair<std::string, std::string>>>
partitions_of(const std::string& text) {
  json::Value v;
  json::ParseError e;
  EXPECT_TRUE(json::parse(text, v, e)) << e.message;
  return read_partitions(v);
}

std::string partition_error(const std::string& text) {
  try {
    partitions_of(text);
  } catch (const ParamError& e) {
    return e.message;
  }
  return "(accepted)";
}

// Date windows meet without a gap or an overlap, months end on their last day (leap years
// too), and the last window ends on `to`.
TEST(HttpList, DateWindowPartitionsCoverTheRangeOnce) {
  auto months = partitions_of(R"({"from": "2024-01-01", "to": "2024-12-31", "every": "month",
      "query": {"filter": "type:article,from_publication_date:{from},to_publication_date:{to}",
                "sort": "id"}})");
  ASSERT_EQ(months.size(), 12u);
  EXPECT_EQ(months[1][0].second,
            "type:article,from_publication_date:2024-02-01,to_publication_date:2024-02-29");
  EXPECT_EQ(months[11][0].second,
            "type:article,from_publication_date:2024-12-01,to_publication_date:2024-12-31");
  EXPECT_EQ(months[0][1], (std::pair<std::string, std::string>{"sort", "id"}));
  auto weeks = partitions_of(R"({"from": "2023-01-01", "to": "2023-12-31", "every": "week",
      "query": {"f": "{from}..{to}"}})");
  ASSERT_EQ(weeks.size(), 53u);
  EXPECT_EQ(weeks[0][0].second, "2023-01-01..2023-01-07");
  EXPECT_EQ(weeks[52][0].second, "2023-12-31..2023-12-31");
  auto tens = partitions_of(R"({"from": "2023-02-20", "to": "2023-03-15", "every": "10d",
      "query": {"f": "{from}/{to}"}})");
  ASSERT_EQ(tens.size(), 3u);
  EXPECT_EQ(tens[0][0].second, "2023-02-20/2023-03-01");
  EXPECT_EQ(tens[2][0].second, "2023-03-12/2023-03-15");
  // A range that starts mid-month: the first window ends with its month.
  auto mid = partitions_of(
      R"({"from": "2023-01-31", "to": "2023-03-10", "every": "month", "query": {"f": "{from}"}})");
  ASSERT_EQ(mid.size(), 3u);
  EXPECT_EQ(mid[1][0].second, "2023-02-01");
  EXPECT_EQ(partitions_of(R"({"from": "2020-01-01", "to": "2023-06-30", "every": "year",
      "query": {"filter": "from:{from},to:{to}"}})")
                .back()[0]
                .second,
            "from:2023-01-01,to:2023-06-30");

  // Each refused with what is wrong: {the partitions, a piece of the message}.
  const std::vector<std::pair<std::string, std::string>> refused = {
      {R"({"from": "2023-02-29", "to": "2023-03-01", "every": "day", "query": {"f": "{from}"}})",
       "\"2023-02-29\" is not a date"},
      {R"({"from": "2023-03-01", "to": "2023-02-01", "every": "day", "query": {"f": "{from}"}})",
       "before"},
      {R"({"from": "2023-01-01", "to": "2023-02-01", "every": "fortnight", "query": {"f": "{from}"}})",
       "not day, week, month"},
      {R"({"from": "2023-01-01", "to": "2023-02-01", "every": "9223372036854775000d",
           "query": {"f": "{from}"}})",
       "N days from 1 to 36600"},
      {R"({"from": "2023-01-01", "to": "2023-02-01", "every": "day", "query": {"f": "2023"}})",
       "neither {from} nor {to}"},
      {R"({"from": "2023-01-01", "to": "2023-02-01", "every": "day", "query": {"f": "{from}"},
           "step": 2})",
       "partitions.step is not known"},
      {R"({"from": "1900-01-01", "to": "2023-02-01", "every": "day", "query": {"f": "{from}"}})",
       "more than 10000 date windows"},
      {R"({"to": "2023-02-01", "every": "day", "query": {"f": "{from}"}})",
       "partitions.from is required"},
  };
  for (const auto& [spec, message] : refused)
    EXPECT_NE(partition_error(spec).find(message), std::string::npos)
        << spec << ": " << partition_error(spec);
  EXPECT_NE(partition_error("[]").find("at least one"), std::string::npos);
  EXPECT_NE(partition_error("3").find("must be an array"), std::string::npos);
}

// The rpm a job's processes hold between them goes to the ones that list: an idle process's
// share is not lost.
TEST(HttpList, PartitionedListersHoldTheRpmOfIdleProcesses) {
  const ShardSpec whole{0, 1, ""};
  // 12 partitions, 80 processes of one shard (job scope: sharers == part.count): each of the
  // first 12 lists one and takes 80/12 of its divided rpm, i.e. 1/12 of the job's.
  EXPECT_DOUBLE_EQ(partition_rpm_scale(12, {3, 80, ""}, whole, 80), 80.0 / 12);
  EXPECT_DOUBLE_EQ(partition_rpm_scale(12, {40, 80, ""}, whole, 80), 1.0) << "lists nothing";
  // 12 over 8: four processes list 2 and four list 1 (rpm shares 2/12 and 1/12 of the job's).
  EXPECT_DOUBLE_EQ(partition_rpm_scale(12, {0, 8, ""}, whole, 8), 8.0 * 2 / 12);
  EXPECT_DOUBLE_EQ(partition_rpm_scale(12, {5, 8, ""}, whole, 8), 8.0 * 1 / 12);
  // Not divided (a library call, or one process): unchanged.
  EXPECT_DOUBLE_EQ(partition_rpm_scale(12, {3, 80, ""}, whole, 1), 1.0);
  EXPECT_DOUBLE_EQ(partition_rpm_scale(12, whole, whole, 1), 1.0);
  // limits_scope shard: 4 shards x 2 processes, the rpm divided among a shard's 2. Shard 1
  // (parts 1 and 5) holds partitions 1, 5 and 9; process 1 of it (part 5 of 8) lists 5 alone.
  EXPECT_DOUBLE_EQ(partition_rpm_scale(12, {5, 8, ""}, {1, 4, ""}, 2), 2.0 * 1 / 3);
  EXPECT_DOUBLE_EQ(partition_rpm_scale(12, {1, 8, ""}, {1, 4, ""}, 2), 2.0 * 2 / 3);
}

// One process lists up to `concurrency` partitions at once, a page in flight each, and every
// item once; concurrency 1 lists them one after another.
TEST(HttpList, AProcessListsUpToConcurrencyPartitionsAtOnce) {
  for (int concurrency : {4, 1}) {
    sim::SimOptions o;
    o.docs = 3500;  // 100 works in 2024
    o.latency_ms = 60;
    test::RunningSim server(o);
    test::TempDir dir;
    const std::string out = dir / "works.jsonl";
    RunReport rep = list_to_jsonl(R"("concurrency": )" + std::to_string(concurrency) +
                                      R"(, "params": {"url": ")" + server.url("/openalex/works") +
                                      R"(", "items": "/results",
        "paging": "cursor", "next": "/meta/next_cursor", "per_page": 5,
        "partitions": {"from": "2024-01-01", "to": "2024-12-31", "every": "quarter",
          "query": {"filter": "from_publication_date:{from},to_publication_date:{to}"}}})",
                                  out);
    ASSERT_EQ(rep.error, "");
    std::set<std::string> seen;
    add_ids(out, seen);
    EXPECT_EQ(seen.size(), 100u) << "concurrency " << concurrency;
    const auto st = server.stats();
    // Four lanes overlap within a 60 ms page on any host; one never does.
    EXPECT_LE(st["peak_concurrent"].GetUint64(), static_cast<uint64_t>(concurrency));
    EXPECT_GE(st["peak_concurrent"].GetUint64(), concurrency > 1 ? 2u : 1u);
    // A quarter of n works takes n / 5 full pages, then a short or empty one ends its cursor.
    uint64_t pages = 0;
    for (const char* q :
         {"01-01,to_publication_date:2024-03-31", "04-01,to_publication_date:2024-06-30",
          "07-01,to_publication_date:2024-09-30", "10-01,to_publication_date:2024-12-31"}) {
      rapidjson::Document d;
      d.Parse(test::http_get(server.url("/openalex/works?per_page=1&filter=from_publication_date:"
                                        "2024-") +
                             q)
                  .body.c_str());
      ASSERT_TRUE(d.IsObject());
      pages += d["meta"]["count"].GetUint64() / 5 + 1;
    }
    EXPECT_EQ(st["by_endpoint"]["/openalex/works"]["requests"].GetUint64(), pages)
        << "every quarter listed once";
  }
}

// papers-backfill as shipped, against the sim's OpenAlex: the month partitions list every work
// the filter keeps once, whether one process lists them or a job of shards and processes.
TEST(HttpList, PapersBackfillMonthPartitionsListEveryWorkOnceAcrossAJob) {
  sim::SimOptions o;
  o.docs = 7000;  // 200 works a year
  test::RunningSim server(o);
  // What the listing must hold: the year's articles with an abstract, by the sim's own count.
  auto meta = test::http_get(server.url("/openalex/works?per_page=1&filter=type:article,"
                                        "has_abstract:true,publication_year:2024"));
  rapidjson::Document d;
  d.Parse(meta.body.c_str());
  ASSERT_TRUE(d.IsObject()) << meta.body;
  const int64_t expected = d["meta"]["count"].GetInt64();
  ASSERT_GT(expected, 100);
  test::TempDir dir;
  auto run = [&](const std::string& name, const std::string& extra) {
    const std::string db = dir / (name + ".db");
    auto r = test::run_sluice("run graphs/papers-backfill.json --quiet --set base_url=" +
                                  server.url("/openalex") + " --set max_pages=0 --set db=" + db +
                                  " --state " + (dir / (name + ".state")) + " " + extra,
                              test::source_dir());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return db;
  };
  const std::string one = run("one", "");
  EXPECT_EQ(test::sqlite_count(one, "SELECT count(DISTINCT doc_id) FROM chunks"), expected);
  // Two shards of three processes each: every process lists its months alone.
  int64_t total = 0;
  for (int shard = 0; shard < 2; ++shard) {
    const std::string db =
        run("s" + std::to_string(shard), "--processes 3 --shard " + std::to_string(shard) + "/2");
    total += test::sqlite_count(db, "SELECT count(DISTINCT doc_id) FROM chunks");
  }
  EXPECT_EQ(total, expected);
  auto st = server.stats();
  // 12 months listed by the one-process run, 12 by the job: one page of 200 each at most, and
  // no month twice within a run.
  EXPECT_LE(st["by_endpoint"]["/openalex/works"]["requests"].GetUint64(), 2u * 12 + 1);
}

}  // namespace
}  // namespace sluice
