// `sluice schema`: the JSON Schema of graph configs validates every shipped graph and the
// README's example, refuses what the loader refuses by name (a typo'd param, an unknown setting),
// and is the file the graphs name.
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>

#include <filesystem>
#include <gtest/gtest.h>

#include "app/schema.hpp"
#include "nodes/builtin_nodes.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

constexpr unsigned kJsonc = rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag;

// "" when `text` (a graph config: comments and trailing commas allowed) is valid under the
// schema, else where and why not.
std::string schema_errors(const std::string& text) {
  static const rapidjson::Document schema_doc = [] {
    rapidjson::Document d;
    d.Parse(graph_schema(builtin_registry()).c_str());
    return d;
  }();
  static const rapidjson::SchemaDocument schema(schema_doc);
  rapidjson::Document d;
  d.Parse<kJsonc>(text.c_str());
  if (d.HasParseError())
    return std::string("not JSON: ") + rapidjson::GetParseError_En(d.GetParseError());
  rapidjson::SchemaValidator v(schema);
  if (d.Accept(v)) return "";
  rapidjson::StringBuffer where, rule;
  v.GetInvalidDocumentPointer().StringifyUriFragment(where);
  v.GetInvalidSchemaPointer().StringifyUriFragment(rule);
  return std::string(where.GetString()) + " fails " + rule.GetString() + " (" +
         v.GetInvalidSchemaKeyword() + ")";
}

TEST(Schema, IsValidJsonAndTheFileTheGraphsName) {
  const std::string text = graph_schema(builtin_registry());
  rapidjson::Document d;
  d.Parse(text.c_str());
  ASSERT_FALSE(d.HasParseError());
  ASSERT_TRUE(d.IsObject());
  EXPECT_TRUE(d["definitions"].HasMember("node-chunk_recursive"));
  EXPECT_EQ(test::read_file(test::source_dir() + "/docs/graph.schema.json"), text)
      << "docs/graph.schema.json is stale: build/dev/sluice schema > docs/graph.schema.json";
  auto r = test::run_sluice("schema");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, text);
}

TEST(Schema, EveryShippedGraphAndTheReadmeExampleAreValid) {
  int graphs = 0;
  for (const auto& e : std::filesystem::directory_iterator(test::source_dir() + "/graphs")) {
    if (e.path().extension() != ".json") continue;
    const std::string text = test::read_file(e.path().string());
    EXPECT_EQ(schema_errors(text), "") << e.path();
    EXPECT_NE(text.find("\"$schema\": \"../docs/graph.schema.json\""), std::string::npos)
        << e.path();
    ++graphs;
  }
  EXPECT_GE(graphs, 6);
  // The README's example config: the first ```jsonc block after "## Graph configs".
  const std::string readme = test::read_file(test::source_dir() + "/README.md");
  const size_t section = readme.find("## Graph configs");
  ASSERT_NE(section, std::string::npos);
  const size_t start = readme.find("```jsonc\n", section);
  ASSERT_NE(start, std::string::npos);
  const size_t end = readme.find("```", start + 9);
  const std::string example = readme.substr(start + 9, end - start - 9);
  EXPECT_EQ(schema_errors(example), "") << example;
}

TEST(Schema, RefusesWhatTheLoaderRefuses) {
  const std::string good = R"({
    "settings": {"threads": 2, "limits_scope": "job"},
    "nodes": [
      {"id": "s", "type": "source.range", "params": {"count": 10}},
      {"id": "c", "type": "chunk.recursive", "params": {"size": 400}},
      {"id": "i", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
    "edges": [["s", "c"], ["c", "i"]]})";
  ASSERT_EQ(schema_errors(good), "");
  ASSERT_EQ(test::config_errors(good), "");
  auto with = [&](const std::string& from, const std::string& to) {
    std::string g = good;
    g.replace(g.find(from), from.size(), to);
    return g;
  };
  // Each of these is an error for `sluice validate` too.
  for (const std::string& bad : {
           with("\"size\": 400", "\"sise\": 400"),      // a typo'd param
           with("\"size\": 400", "\"size\": \"big\""),  // a param of the wrong type
           with("\"count\": 10", "\"count\": -1"),      // below its minimum
           with("\"threads\": 2", "\"thread\": 2"),     // an unknown setting
           with("\"limits_scope\": \"job\"", "\"limits_scope\": \"all\""),         // not a choice
           with("\"type\": \"chunk.recursive\"", "\"type\": \"chunk.recursiv\""),  // no such type
           with("\"edges\"", "\"edgez\""),  // no edges, an unknown key
       }) {
    EXPECT_NE(schema_errors(bad), "") << bad;
    EXPECT_NE(test::config_errors(bad), "") << bad;
  }
  // A var may stand for a number, and a var may choose a type among variants.
  EXPECT_EQ(schema_errors(with("\"count\": 10", "\"count\": \"${n}\"")), "");
  const std::string variants = R"({"vars": {"e": "embed.hash"},
    "nodes": [{"id": "s", "type": "source.range"},
              {"id": "e", "type": "${e}", "variants": {"embed.hash": {"params": {"dim": 8}},
                                                      "embed.openai": {"concurrency": 4}}},
              {"id": "i", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
    "edges": [["s", "e"], ["e", "i"]]})";
  EXPECT_EQ(schema_errors(variants), "");
  EXPECT_NE(schema_errors(with("\"size\": 400", "\"size\": 400, \"dimm\": 3")), "");
  std::string bad_variant = variants;
  bad_variant.replace(bad_variant.find("\"dim\": 8"), 8, "\"dimm\": 8");
  EXPECT_NE(schema_errors(bad_variant), "");
}

}  // namespace
}  // namespace sluice
