#include <gtest/gtest.h>

#include "engine/diagnostics.hpp"
#include "engine/json.hpp"
#include "engine/json_value.hpp"

namespace sluice {
namespace {

TEST(Json, ParsesValuesWithPositions) {
  json::Value v;
  json::ParseError e;
  ASSERT_TRUE(json::parse("{\n  \"a\": [1, 2.5, \"x\\u00e9\", true, null],\n  \"b\": {\"c\": -3}\n}", v, e)) << e.message;
  const json::Value* a = v.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->loc.line, 2);
  EXPECT_EQ(a->loc.col, 8);
  EXPECT_TRUE(a->items[0].is_integer);
  EXPECT_FALSE(a->items[1].is_integer);
  EXPECT_EQ(a->items[2].str, "x\xc3\xa9");
  EXPECT_EQ(v.find("b")->find("c")->integer, -3);
  EXPECT_EQ(v.dump(), "{\"a\":[1,2.5,\"x\xc3\xa9\",true,null],\"b\":{\"c\":-3}}");
}

TEST(Json, ErrorsPointAtTheProblem) {
  json::Value v;
  json::ParseError e;
  EXPECT_FALSE(json::parse("{\"a\": 1 \"b\": 2}", v, e));
  EXPECT_EQ(e.loc.col, 9);
  EXPECT_EQ(e.message, "expected ',' or '}' after a member");
  EXPECT_FALSE(json::parse("{\"a\": 'x'}", v, e));
  EXPECT_EQ(e.message, "strings must use double quotes");
  EXPECT_FALSE(json::parse("/* never closed", v, e));
  EXPECT_EQ(e.message, "unterminated /* comment");
  std::string deep(100, '[');
  EXPECT_FALSE(json::parse(deep, v, e));
  EXPECT_EQ(e.message, "nesting deeper than 64 levels");
}

TEST(UntrustedJson, DeepNestingIsRejectedBeforeParsing) {
  std::string deep(300000, '[');  // would overflow the stack in a recursive parser or destructor
  rapidjson::Document d;
  EXPECT_FALSE(json_depth_ok(deep));
  EXPECT_FALSE(parse_untrusted(d, deep));
  EXPECT_TRUE(json_depth_ok(std::string(200, '[') + std::string(200, ']')));
  EXPECT_TRUE(json_depth_ok(R"({"a": "[[[[[[[[[[\"[[[["})", 3)) << "brackets inside strings do not count";
  EXPECT_TRUE(parse_untrusted(d, R"({"a": [1, {"b": 2}]})"));
  EXPECT_FALSE(parse_untrusted(d, "{\"a\": "));
}

TEST(DidYouMean, SuggestsOnlyCloseNames) {
  EXPECT_EQ(did_you_mean("chunk.recursiv", {"chunk.recursive", "chunk.sentence"}), " (did you mean 'chunk.recursive'?)");
  EXPECT_EQ(did_you_mean("zzz", {"chunk.recursive", "chunk.sentence"}), "");
}

}  // namespace
}  // namespace sluice
