// Bad configs, each with the exact error a user sees; and the substitution rules.
#include <gtest/gtest.h>

#include <cstdlib>

#include "nodes/builtin_nodes.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

using test::config_errors;

// A valid base graph; each case breaks one thing.
const char* kGood = R"({
  "nodes": [
    {"id": "src", "type": "source.range", "params": {"count": 10}},
    {"id": "chunk", "type": "chunk.recursive", "params": {"size": 100}},
    {"id": "sink", "type": "index.jsonl", "params": {"path": "/dev/null"}}
  ],
  "edges": [["src", "chunk"], ["chunk", "sink"]]
})";

TEST(Config, GoodConfigIsValid) { EXPECT_EQ(config_errors(kGood), ""); }

struct BadCase {
  const char* name;
  const char* json;
  const char* expected;
};

const BadCase kBad[] = {
    {"SyntaxErrorHasPosition", "{\n  \"nodes\": [\n    {\"id\": \"a\",,}\n  ]\n}",
     "test.json:3:16: expected a quoted key or '}'\n"},
    {"NotAnObject", "[1, 2]",
     "test.json:1:1: a graph config must be a JSON object with \"nodes\" and \"edges\"\n"},
    {"MissingNodesAndEdges", "{\"name\": \"x\"}",
     "test.json:1:1: nodes: missing required key \"nodes\" (an array of nodes)\n"
     "test.json:1:1: edges: missing required key \"edges\" (an array of [from, to] pairs)\n"},
    {"UnknownTopLevelKeyDidYouMean", "{\"nodse\": [], \"nodes\": [], \"edges\": []}",
     "test.json:1:2: nodse: unknown top-level key (did you mean 'nodes'?)\n"
     "test.json:1:24: nodes: a graph needs at least one node\n"},
    {"UnknownNodeTypeDidYouMean",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.rang\"}], \"edges\": []}",
     "test.json:1:32: nodes[0].type: unknown node type \"source.rang\" (did you mean "
     "'source.range'?); "
     "`sluice nodes` lists them\n"},
    {"UnknownParamDidYouMean",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\", \"params\": {\"cuont\": 3}},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"/dev/null\"}}], "
     "\"edges\": [[\"s\", \"k\"]]}",
     "test.json:1:59: nodes[0].params.cuont: unknown param \"cuont\" for source.range (did you "
     "mean 'count'?); "
     "`sluice nodes source.range` lists its params\n"},
    {"WrongParamType",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\", \"params\": {\"count\": \"ten\"}},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"/dev/null\"}}], "
     "\"edges\": [[\"s\", \"k\"]]}",
     "test.json:1:68: nodes[0].params.count: expected integer, got string \"ten\"\n"},
    {"MissingRequiredParam",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {}}], \"edges\": [[\"s\", \"k\"]]}",
     "test.json:2:46: nodes[1].params: missing required param \"path\" (string: output file "
     "(/dev/null to discard))\n"},
    {"DuplicateNodeId",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\"},\n"
     "{\"id\": \"s\", \"type\": \"source.range\"}], \"edges\": []}",
     "test.json:2:8: nodes[1].id: duplicate node id \"s\"\n"},
    {"DanglingEdgeDidYouMean",
     "{\"nodes\": [{\"id\": \"src\", \"type\": \"source.range\"},\n"
     "{\"id\": \"sink\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"/dev/null\"}}],\n"
     "\"edges\": [[\"src\", \"snk\"]]}",
     "test.json:3:19: edges[0][1]: no node with id \"snk\" (did you mean 'sink'?)\n"},
    {"Cycle",
     "{\"nodes\": [{\"id\": \"src\", \"type\": \"source.range\"},\n"
     "{\"id\": \"a\", \"type\": \"util.pass\"},\n{\"id\": \"b\", \"type\": \"util.pass\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"/dev/null\"}}],\n"
     "\"edges\": [[\"src\", \"a\"], [\"a\", \"b\"], [\"b\", \"a\"], [\"b\", \"k\"]]}",
     "test.json:2:1: edges: the graph has a cycle: a -> b -> a\n"},
    {"SelfLoop",
     "{\"nodes\": [{\"id\": \"src\", \"type\": \"source.range\"}, {\"id\": \"a\", \"type\": "
     "\"util.pass\"}],\n"
     "\"edges\": [[\"src\", \"a\"], [\"a\", \"a\"]]}",
     "test.json:2:25: edges[1]: edge from \"a\" to itself\n"},
    {"NodeWithoutOutgoingEdge",
     "{\"nodes\": [{\"id\": \"src\", \"type\": \"source.range\"}, {\"id\": \"a\", \"type\": "
     "\"util.pass\"}],\n"
     "\"edges\": [[\"src\", \"a\"]]}",
     "test.json:1:51: nodes[1]: node \"a\" (util.pass) has no outgoing edge: its records would go "
     "nowhere; "
     "connect it to a sink such as index.sqlite\n"},
    {"EdgeIntoSource",
     "{\"nodes\": [{\"id\": \"a\", \"type\": \"source.range\"}, {\"id\": \"b\", \"type\": "
     "\"source.range\"}],\n"
     "\"edges\": [[\"a\", \"b\"]]}",
     "test.json:2:11: edges[0]: \"b\" is a source (source.range) and takes no input\n"},
    {"NoSource",
     "{\"nodes\": [{\"id\": \"a\", \"type\": \"util.pass\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"a\", \"k\"]]}",
     "test.json:1:11: nodes: the graph has no source node (types source.*)\n"},
    {"OverlapNotBelowSize",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\"},\n"
     "{\"id\": \"c\", \"type\": \"chunk.recursive\", \"params\": {\"size\": 10, \"overlap\": "
     "10}},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"c\"], [\"c\", \"k\"]]}",
     "test.json:2:74: nodes[1].params.overlap: overlap (10) must be smaller than size (10)\n"},
    {"InvalidRegex",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\"},\n"
     "{\"id\": \"f\", \"type\": \"util.filter\", \"params\": {\"match\": \"(unclosed\"}},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"f\"], [\"f\", \"k\"]]}",
     nullptr},  // the regex library's wording varies: checked by prefix below
    {"BelowMinimum",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\", \"params\": {\"size\": 0}},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"k\"]]}",
     "test.json:1:67: nodes[0].params.size: must be at least 1\n"},
    {"UnknownSettingDidYouMean",
     "{\"settings\": {\"max_inflight_doc\": 3}, \"nodes\": [{\"id\": \"s\", \"type\": "
     "\"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"k\"]]}",
     "test.json:1:15: settings.max_inflight_doc: unknown setting (did you mean "
     "'max_inflight_docs'?)\n"},
    {"BadConcurrency",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}, \"concurrency\": "
     "0}],"
     " \"edges\": [[\"s\", \"k\"]]}",
     "test.json:2:76: nodes[1].concurrency: expected \"default\", \"serial\", \"unlimited\" or an "
     "integer >= 1\n"},
    {"UnknownVar",
     "{\"vars\": {\"db\": \"x.db\"}, \"nodes\": [{\"id\": \"s\", \"type\": \"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"index.sqlite\", \"params\": {\"path\": \"${dbb}\"}}], \"edges\": "
     "[[\"s\", \"k\"]]}",
     "test.json:2:56: nodes[1].params.path: unknown var 'dbb' (did you mean 'db'?) (declare it "
     "under \"vars\")\n"},
    {"UnreachableNode",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\"}, {\"id\": \"p\", \"type\": "
     "\"util.pass\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"k\"], [\"p\", \"k\"]]}",
     "test.json:1:49: nodes[1]: node \"p\" is not reachable from any source\n"},
    {"DuplicateKey", "{\"nodes\": [], \"nodes\": []}", "test.json:1:15: duplicate key \"nodes\"\n"},
    {"VariantMissingForTheChosenType",
     "{\"vars\": {\"sink\": \"index.sqlite\"}, \"nodes\": [{\"id\": \"s\", \"type\": "
     "\"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"${sink}\", \"params\": {\"batch\": 7}, \"variants\": "
     "{\"index.jsonl\": {\"params\": "
     "{\"path\": \"/dev/null\"}}}}], \"edges\": [[\"s\", \"k\"]]}",
     "test.json:2:21: nodes[1].type: type \"index.sqlite\" has no entry under \"variants\" (this "
     "node offers: "
     "index.jsonl)\n"},
    {"UnknownVarFedTypeListsTheVariants",
     "{\"vars\": {\"sink\": \"index.jsnol\"}, \"nodes\": [{\"id\": \"s\", \"type\": "
     "\"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"${sink}\", \"variants\": {\"index.sqlite\": {\"params\": "
     "{\"path\": \"x.db\"}}, "
     "\"index.jsonl\": {\"params\": {\"path\": \"x\"}}}}], \"edges\": [[\"s\", \"k\"]]}",
     "test.json:2:21: nodes[1].type: unknown node type \"index.jsnol\" (did you mean "
     "'index.jsonl'?); this node's "
     "variants: index.sqlite, index.jsonl\n"},
    {"VariantKeyedByUnknownType",
     "{\"vars\": {\"sink\": \"index.jsonl\"}, \"nodes\": [{\"id\": \"s\", \"type\": "
     "\"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"${sink}\", \"variants\": {\"index.jsnl\": {}, \"index.jsonl\": "
     "{\"params\": "
     "{\"path\": \"x\"}, \"concurency\": 2}}}], \"edges\": [[\"s\", \"k\"]]}",
     "test.json:2:45: nodes[1].variants.index.jsnl: unknown node type \"index.jsnl\" (did you mean "
     "'index.jsonl'?); "
     "variants are keyed by node type\n"
     "test.json:2:104: nodes[1].variants.index.jsonl.concurency: unknown variant key (did you mean "
     "'concurrency'?) "
     "(a variant has \"params\" and \"concurrency\")\n"},
    {"AdaptiveOnACpuNode",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.range\"},\n"
     "{\"id\": \"c\", \"type\": \"chunk.recursive\", \"concurrency\": \"adaptive\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"c\"], [\"c\", \"k\"]]}",
     "test.json:2:55: nodes[1].concurrency: \"adaptive\" concurrency applies to I/O nodes only "
     "(chunk.recursive "
     "runs on CPU threads: use \"serial\", \"unlimited\" or a number)\n"},
    {"AdaptiveWithABadMax",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.lines\", \"params\": {\"path\": \"x\"}},\n"
     "{\"id\": \"f\", \"type\": \"fetch.http\", \"params\": {\"url\": \"http://h/{id}\"}, "
     "\"concurrency\": \"adaptive:0\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"f\"], [\"f\", \"k\"]]}",
     "test.json:2:86: nodes[1].concurrency: expected \"adaptive\" or \"adaptive:N\" with N >= 1 "
     "(the most requests in "
     "flight), got \"adaptive:0\"\n"},
    {"IoConcurrencyNamesAdaptive",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.lines\", \"params\": {\"path\": \"x\"}},\n"
     "{\"id\": \"f\", \"type\": \"fetch.http\", \"params\": {\"url\": \"http://h/{id}\"}, "
     "\"concurrency\": \"auto\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"f\"], [\"f\", \"k\"]]}",
     "test.json:2:86: nodes[1].concurrency: expected \"default\", \"serial\", \"unlimited\", an "
     "integer >= 1 or \"adaptive[:N]\"\n"},
    {"NameThatClimbsOutOfTheTree",
     "{\"name\": \"../../x\", \"nodes\": [{\"id\": \"s\", \"type\": \"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"k\"]]}",
     "test.json:1:10: name: the graph's name becomes a file name (its state dir, ${graph_name}): "
     "it "
     "may not be empty, \".\" or \"..\", or hold '/', '\\' or control characters\n"},
    {"ThreadsPastTheBound",
     "{\"settings\": {\"threads\": 100000}, \"nodes\": [{\"id\": \"s\", \"type\": "
     "\"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"k\"]]}",
     "test.json:1:26: settings.threads: must be at most 1024\n"},
    {"UnknownHttpLoop",
     "{\"settings\": {\"http_loop\": \"pol\"}, \"nodes\": [{\"id\": \"s\", \"type\": "
     "\"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"k\"]]}",
     "test.json:1:28: settings.http_loop: expected \"epoll\" (curl_multi_socket_action on an epoll "
     "set) or \"poll\" "
     "(curl_multi_poll), got \"pol\" (did you mean 'poll'?)\n"},
    {"NegativeConnectionCap",
     "{\"settings\": {\"max_host_connections\": -1}, \"nodes\": [{\"id\": \"s\", \"type\": "
     "\"source.range\"},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"k\"]]}",
     "test.json:1:39: settings.max_host_connections: must be at least 0\n"},
    {"MetaValueNotAPointer",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.lines\", \"params\": {\"path\": \"x\"}},\n"
     "{\"id\": \"e\", \"type\": \"extract.json\", \"params\": {\"text\": \"/t\", \"meta\": {\"c\": "
     "\"b\"}}},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"e\"], [\"e\", \"k\"]]}",
     "test.json:2:70: nodes[1].params.meta: \"b\" is not a JSON pointer (RFC 6901, e.g. "
     "/results/0/title)\n"},
    {"ExpandUnknownIdField",
     "{\"nodes\": [{\"id\": \"s\", \"type\": \"source.lines\", \"params\": {\"path\": \"x\"}},\n"
     "{\"id\": \"e\", \"type\": \"expand.json\", \"params\": {\"items\": \"/results\", \"id\": "
     "\"{ref}\"}},\n"
     "{\"id\": \"k\", \"type\": \"index.jsonl\", \"params\": {\"path\": \"x\"}}], \"edges\": "
     "[[\"s\", \"e\"], [\"e\", \"k\"]]}",
     "test.json:2:74: nodes[1].params.id: unknown field {ref} in \"{ref}\" (use {id}, {index}, "
     "{item} or a JSON "
     "pointer such as {/ref})\n"},
};

// "adaptive" sets the node's cap to the max it may grow to (256 unless given).
TEST(Config, AdaptiveConcurrencyReadsItsMax) {
  const std::string json =
      R"({"vars": {"c": "adaptive"}, "nodes": [{"id": "s", "type": "source.lines", "params": {"path": "x"}},
    {"id": "f", "type": "fetch.http", "params": {"url": "http://h/{id}"}, "concurrency": "${c}"},
    {"id": "k", "type": "index.jsonl", "params": {"path": "x"}}], "edges": [["s", "f"], ["f", "k"]]})";
  GraphSpec a = test::spec_from(json);
  EXPECT_TRUE(a.nodes[1].adaptive);
  EXPECT_EQ(a.nodes[1].concurrency, 256);
  GraphSpec b = test::spec_from(json, builtin_registry(), {{"c", "adaptive:40"}});
  EXPECT_TRUE(b.nodes[1].adaptive);
  EXPECT_EQ(b.nodes[1].concurrency, 40);
  EXPECT_NE(a.config_hash, test::spec_from(json, builtin_registry(), {{"c", "256"}}).config_hash);
  GraphSpec c = test::spec_from(json, builtin_registry(), {{"c", "12"}});
  EXPECT_FALSE(c.nodes[1].adaptive);
}

// I/O nodes given no concurrency (or "default") find their own: fetch.http up to 32 in flight
// on a host it does not know, up to 1024 when its rpm paces it; embedders up to 64; the
// Elasticsearch sink up to 32. CPU nodes keep their fixed defaults.
TEST(Config, IoNodesWithoutConcurrencyAreAdaptiveUpToTheirCeiling) {
  const std::string json =
      R"({"vars": {"c": "default", "rpm": "0"}, "nodes": [{"id": "s", "type": "source.lines", "params": {"path": "x"}},
    {"id": "f", "type": "fetch.http", "params": {"url": "http://h/{id}", "rpm": "${rpm}"}, "concurrency": "${c}"},
    {"id": "e", "type": "embed.openai", "params": {"url": "http://h/v1/embeddings", "model": "m"}},
    {"id": "k", "type": "index.elasticsearch", "params": {"url": "http://h", "index": "i"}},
    {"id": "j", "type": "index.jsonl", "params": {"path": "x"}}],
    "edges": [["s", "f"], ["f", "e"], ["e", "k"], ["f", "j"]]})";
  GraphSpec a = test::spec_from(json);
  for (size_t i : {1u, 2u, 3u}) EXPECT_TRUE(a.nodes[i].adaptive) << a.nodes[i].id;
  EXPECT_EQ(a.nodes[1].concurrency, 32);
  EXPECT_EQ(a.nodes[2].concurrency, 64);
  EXPECT_EQ(a.nodes[3].concurrency, 32);
  EXPECT_FALSE(a.nodes[4].adaptive);
  GraphSpec paced = test::spec_from(json, builtin_registry(), {{"rpm", "6000"}});
  EXPECT_TRUE(paced.nodes[1].adaptive);
  EXPECT_EQ(paced.nodes[1].concurrency, 1024);
  GraphSpec fixed = test::spec_from(json, builtin_registry(), {{"c", "8"}});
  EXPECT_FALSE(fixed.nodes[1].adaptive);
  EXPECT_EQ(fixed.nodes[1].concurrency, 8);
}

// The chosen variant's params go over the node's own, and its concurrency wins.
TEST(Config, VariantParamsAndConcurrencyApplyToTheChosenType) {
  const std::string json =
      R"({"vars": {"sink": "index.jsonl"}, "nodes": [{"id": "s", "type": "source.range"},
    {"id": "k", "type": "${sink}", "params": {"batch": 7}, "concurrency": 3, "variants": {
      "index.jsonl": {"params": {"path": "/dev/null", "batch": 9}, "concurrency": "serial"},
      "index.sqlite": {"params": {"path": "x.db"}}}}], "edges": [["s", "k"]]})";
  GraphSpec a = test::spec_from(json);
  ASSERT_EQ(a.nodes[1].type, "index.jsonl");
  EXPECT_EQ(a.nodes[1].params.integer("batch"), 9);
  EXPECT_EQ(a.nodes[1].params.str("path"), "/dev/null");
  EXPECT_EQ(a.nodes[1].concurrency, 1);
  GraphSpec b = test::spec_from(json, builtin_registry(), {{"sink", "index.sqlite"}});
  ASSERT_EQ(b.nodes[1].type, "index.sqlite");
  EXPECT_EQ(b.nodes[1].params.integer("batch"), 7);
  EXPECT_EQ(b.nodes[1].params.str("path"), "x.db");
  EXPECT_EQ(b.nodes[1].concurrency, 3);
}

class BadConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, ReportsExactError) {
  const BadCase& c = GetParam();
  std::string got = config_errors(c.json);
  if (c.expected) {
    EXPECT_EQ(got, c.expected);
  } else {
    EXPECT_EQ(got.rfind("test.json:2:56: nodes[1].params.match: invalid regular expression: ", 0),
              0u)
        << got;
  }
}

INSTANTIATE_TEST_SUITE_P(All, BadConfig, ::testing::ValuesIn(kBad),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Config, AllErrorsAreReportedAtOnce) {
  const char* json = R"({
  "nodes": [
    {"id": "s", "type": "source.range", "params": {"count": -1, "sizee": 3}},
    {"id": "k", "type": "index.jsonl", "params": {"path": 3}}
  ],
  "edges": [["s", "k"]]
})";
  std::string got = config_errors(json);
  EXPECT_EQ(got, "test.json:3:61: nodes[0].params.count: must be at least 0\n"
                 "test.json:3:65: nodes[0].params.sizee: unknown param \"sizee\" for source.range "
                 "(did you mean 'size'?); "
                 "`sluice nodes source.range` lists its params\n"
                 "test.json:4:59: nodes[1].params.path: expected string, got number\n");
}

TEST(Config, CommentsAndTrailingCommasAreAccepted) {
  const char* json = R"({
  // a comment
  "nodes": [
    {"id": "s", "type": "source.range", /* inline */ "params": {"count": 1,},},
    {"id": "k", "type": "index.jsonl", "params": {"path": "/dev/null"}},
  ],
  "edges": [["s", "k"],],
})";
  EXPECT_EQ(config_errors(json), "");
}

TEST(Config, NameDefaultsToFileStem) {
  GraphSpec spec = parse_graph(kGood, "/some/dir/my-graph.json", {}, builtin_registry());
  EXPECT_EQ(spec.name, "my-graph");
}

const char* kVarGraph = R"({
  "vars": {"n": 5, "out": "a.jsonl", "tag": "x"},
  "nodes": [
    {"id": "s", "type": "source.range", "params": {"count": "${n}", "seed": 7}},
    {"id": "c", "type": "chunk.recursive", "params": {"id_tag": "${tag}-$${literal}"}, "concurrency": "${n}"},
    {"id": "k", "type": "index.jsonl", "params": {"path": "${graph_dir}/${out}"}}
  ],
  "edges": [["s", "c"], ["c", "k"]]
})";

TEST(Config, VarsSubstituteAndNumericStringsCoerce) {
  GraphSpec spec = parse_graph(kVarGraph, "/tmp/g/v.json", {}, builtin_registry());
  EXPECT_EQ(spec.nodes[0].params.integer("count"), 5);
  EXPECT_EQ(spec.nodes[1].concurrency, 5);
  EXPECT_EQ(spec.nodes[1].params.str("id_tag"), "x-${literal}");
  EXPECT_EQ(spec.nodes[2].params.str("path"), "/tmp/g/a.jsonl");
}

TEST(Config, SetOverridesVars) {
  GraphSpec spec =
      parse_graph(kVarGraph, "/tmp/g/v.json", {{"n", "9"}, {"out", "b.jsonl"}}, builtin_registry());
  EXPECT_EQ(spec.nodes[0].params.integer("count"), 9);
  EXPECT_EQ(spec.nodes[2].params.str("path"), "/tmp/g/b.jsonl");
}

TEST(Config, SetOfUndeclaredVarIsAnErrorWithHint) {
  EXPECT_EQ(config_errors(kVarGraph, builtin_registry(), {{"outt", "x"}}),
            "test.json: --set outt: unknown var 'outt' (did you mean 'out'?)\n");
}

TEST(Config, SetWithNonNumericValueForNumberIsTypeError) {
  std::string got = config_errors(kVarGraph, builtin_registry(), {{"n", "many"}});
  EXPECT_NE(got.find("nodes[0].params.count: expected integer, got string \"many\""),
            std::string::npos)
      << got;
}

TEST(Config, EnvValuesAreSecretAndNeverPrinted) {
  setenv("SLUICE_TEST_SECRET", "hunter2", 1);
  const char* json = R"({
  "nodes": [
    {"id": "s", "type": "source.range", "params": {"count": "${env:SLUICE_TEST_SECRET}"}},
    {"id": "k", "type": "index.jsonl", "params": {"path": "/dev/null"}}
  ],
  "edges": [["s", "k"]]
})";
  std::string got = config_errors(json);
  EXPECT_EQ(got.find("hunter2"), std::string::npos) << got;
  EXPECT_NE(got.find("got string \"***\""), std::string::npos) << got;
}

TEST(Config, UnsetEnvVarExpandsToEmpty) {
  unsetenv("SLUICE_TEST_UNSET");
  const char* json = R"({
  "nodes": [
    {"id": "s", "type": "source.range"},
    {"id": "k", "type": "index.jsonl", "params": {"path": "/dev/null${env:SLUICE_TEST_UNSET}"}}
  ],
  "edges": [["s", "k"]]
})";
  GraphSpec spec = test::spec_from(json);
  EXPECT_EQ(spec.nodes[1].params.str("path"), "/dev/null");
}

TEST(Config, ConfigHashChangesWithParamsNotWithThreads) {
  std::string a = test::spec_from(kGood).config_hash;
  std::string same = kGood;
  std::string changed = kGood;
  changed.replace(changed.find("\"size\": 100"), 11, "\"size\": 101");
  EXPECT_EQ(a, test::spec_from(same).config_hash);
  EXPECT_NE(a, test::spec_from(changed).config_hash);
}

TEST(Config, EveryPredefinedGraphValidates) {
  for (const auto& e : std::filesystem::directory_iterator(test::source_dir() + "/graphs")) {
    if (e.path().extension() != ".json") continue;
    SCOPED_TRACE(e.path().string());
    EXPECT_NO_THROW(load_graph(e.path().string(), {}, builtin_registry()));
  }
}

TEST(Registry, EveryDefaultParsesAndMatchesItsType) {
  // A bad default in a registration would only show up in a user's run: check them all.
  for (const auto& info : builtin_registry().all()) {
    EXPECT_FALSE(info.description.empty()) << info.type;
    for (const auto& p : info.params) {
      SCOPED_TRACE(info.type + "." + p.name);
      EXPECT_FALSE(p.doc.empty());
      if (p.default_json.empty()) {
        EXPECT_TRUE(p.required || !p.replaced_by.empty()) << "no default: required or retired";
        continue;
      }
      json::Value v;
      json::ParseError err;
      ASSERT_TRUE(json::parse(p.default_json, v, err)) << err.message;
    }
  }
}

TEST(Config, ALongChainValidatesWithItsOrder) {
  // 20,000 nodes in a chain: ids, edges and the topological order are found by lookup, not by
  // scans (a quadratic validation took 17 s here).
  const int n = 20000;
  std::string nodes = R"({"id": "n0", "type": "source.range", "params": {"count": 1}})";
  std::string edges;
  for (int i = 1; i < n; ++i) {
    nodes += R"(, {"id": "n)" + std::to_string(i) + R"(", "type": ")" +
             (i + 1 == n ? std::string("index.jsonl\", \"params\": {\"path\": \"/dev/null\"}")
                         : std::string("util.pass\"")) +
             "}";
    edges += std::string(i > 1 ? ", " : "") + R"(["n)" + std::to_string(i - 1) + R"(", "n)" +
             std::to_string(i) + R"("])";
  }
  GraphSpec spec = test::spec_from(R"({"nodes": [)" + nodes + R"(], "edges": [)" + edges + "]}");
  ASSERT_EQ(spec.topo_order.size(), static_cast<size_t>(n));
  EXPECT_EQ(spec.topo_order.front(), 0u);
  EXPECT_EQ(spec.topo_order.back(), static_cast<size_t>(n - 1));
}

}  // namespace
}  // namespace sluice
