#include <gtest/gtest.h>

#include "engine/diagnostics.hpp"
#include <functional>
#include <random>

#include "engine/json/json.hpp"
#include "engine/json/scan.hpp"
#include "engine/json/value.hpp"
#include "engine/text/text.hpp"

namespace sluice {
namespace {

TEST(Json, ParsesValuesWithPositions) {
  json::Value v;
  json::ParseError e;
  ASSERT_TRUE(
      json::parse("{\n  \"a\": [1, 2.5, \"x\\u00e9\", true, null],\n  \"b\": {\"c\": -3}\n}", v, e))
      << e.message;
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

// Found by fuzzing: RapidJSON's encoded stream skipped each BOM byte alone, so "\xEF\"\"" parsed
// as "" where the pointer scan (which skips a whole BOM only) saw a malformed document.
TEST(UntrustedJson, OnlyAWholeByteOrderMarkIsSkippedAsTheScanDoes) {
  for (bool whole_string : {false, true}) {
    auto parses = [&](const std::string& text) {
      rapidjson::Document d;
      return whole_string ? parse_untrusted(d, text) : parse_untrusted(d, std::string_view(text));
    };
    EXPECT_FALSE(parses("\xEF\"\"")) << whole_string;
    EXPECT_FALSE(parses("\xBB\xBF{}")) << whole_string;
    EXPECT_TRUE(parses("\xEF\xBB\xBF{\"a\": \"b\"}")) << whole_string;
  }
  std::string out;
  EXPECT_EQ(JsonPointerScan("/a").find_string("\xEF\xBB\xBF{\"a\": \"b\"}", out),
            JsonPointerScan::Result::found);
  EXPECT_EQ(out, "b");
}

TEST(UntrustedJson, DeepNestingIsRejectedWithoutOverflowingTheStack) {
  rapidjson::Document d;
  for (char open : {'[', '{'}) {
    // Would overflow the stack in a recursive parser or walk; objects nest through keys.
    std::string deep = open == '[' ? std::string(300000, '[') : "";
    for (int i = 0; open == '{' && i < 300000; ++i) deep += "{\"a\":";
    EXPECT_FALSE(parse_untrusted(d, deep)) << open;
    EXPECT_TRUE(d.IsNull());
    EXPECT_FALSE(parse_untrusted(d, std::string_view(deep))) << open;
  }
  const int limit = kMaxUntrustedDepth;
  EXPECT_TRUE(parse_untrusted(d, std::string(limit, '[') + std::string(limit, ']')));
  EXPECT_TRUE(d.IsArray());
  EXPECT_FALSE(parse_untrusted(d, std::string(limit + 1, '[') + std::string(limit + 1, ']')));
  // Depth goes back down on the way out: many shallow siblings are fine.
  std::string wide = "[";
  for (int i = 0; i < 1000; ++i) wide += std::string(i ? "," : "") + "[[{\"a\":[1]}]]";
  EXPECT_TRUE(parse_untrusted(d, wide + "]"));
  EXPECT_TRUE(parse_untrusted(d, R"({"a": "[[[[[[[[[[\"[[[["})")) << "brackets in strings";
  EXPECT_EQ(std::string(d["a"].GetString()), "[[[[[[[[[[\"[[[[");
  EXPECT_TRUE(parse_untrusted(d, R"({"a": [1, {"b": 2.5, "c": null, "d": true, "e": -3}]})"));
  EXPECT_EQ(d["a"][1]["b"].GetDouble(), 2.5);
  EXPECT_EQ(d["a"][1]["e"].GetInt(), -3);
  EXPECT_FALSE(parse_untrusted(d, "{\"a\": "));
  EXPECT_TRUE(d.IsNull());
  EXPECT_FALSE(parse_untrusted(d, "[1] [2]")) << "one value per body";
  // A whole string (NUL-terminated: the SIMD scans) and a view of one read the same.
  const std::string texts[] = {R"({"t": ["a\"b", "\u05d0", "x<i>y</i>"], "n": 1e3})",
                               std::string("[1]\0[2]", 7), "[\"open", std::string(500, ' ')};
  for (const std::string& text : texts) {
    rapidjson::Document a, b;
    bool ok_a = parse_untrusted(a, text), ok_b = parse_untrusted(b, std::string_view(text));
    EXPECT_EQ(ok_a, ok_b) << text;
    EXPECT_TRUE(a == b) << text;
  }
}

TEST(Json, QuotedStringsReadBackAsTheSameBytes) {
  std::string all;
  for (int c = 1; c < 256; ++c) all += static_cast<char>(c);
  for (const std::string& in :
       {std::string(), std::string("plain"), std::string("\"\\\n\t\x01 end"),
        std::string("\xc3\xa9 \xe2\x82\xac"), all}) {
    std::string out = "prefix:";
    json::append_quoted(out, in);
    ASSERT_EQ(out.rfind("prefix:", 0), 0u);
    rapidjson::Document d;
    d.Parse(out.data() + 7, out.size() - 7);
    ASSERT_FALSE(d.HasParseError()) << out;
    ASSERT_TRUE(d.IsString());
    EXPECT_EQ(std::string(d.GetString(), d.GetStringLength()),
              text::is_valid_utf8(in) ? in : text::sanitize_utf8(in))
        << "invalid UTF-8 is written as U+FFFD, so the output is always valid JSON";
    rapidjson::Document strict;
    strict.Parse<rapidjson::kParseValidateEncodingFlag>(out.data() + 7, out.size() - 7);
    EXPECT_FALSE(strict.HasParseError()) << out;
  }
  EXPECT_EQ(json::quoted("a\"b\\c\nd\x1f"), "\"a\\\"b\\\\c\\nd\\u001f\"");
}

TEST(Json, QuotingMatchesAByteAtATimeEscaperOnRandomText) {
  // The escaper skips plain text a word at a time: every special byte at every offset of a word
  // and across word boundaries, against the plain definition.
  auto reference = [](std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
      if (c == '"') out += "\\\"";
      else if (c == '\\') out += "\\\\";
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else if (c == '\b') out += "\\b";
      else if (c == '\f') out += "\\f";
      else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else out += static_cast<char>(c);
    }
    return out + "\"";
  };
  std::mt19937 rng(11);
  const std::string specials = std::string("\"\\\n\x01\x1f\x7f\x80\xff ", 9) + std::string(1, '\0');
  for (int n = 0; n < 3000; ++n) {
    std::string s(rng() % 40, 'a');
    for (auto& c : s)
      c = rng() % 4 == 0 ? specials[rng() % specials.size()] : static_cast<char>('a' + rng() % 26);
    std::string out;
    json::append_quoted(out, s);
    ASSERT_EQ(out, reference(text::is_valid_utf8(s) ? s : text::sanitize_utf8(s))) << n;
  }
}

using Scan = JsonPointerScan::Result;

Scan scan(std::string_view pointer, std::string_view doc, std::string* out = nullptr) {
  std::string s;
  Scan r = JsonPointerScan(pointer).find_string(doc, s);
  if (out) *out = s;
  return r;
}

TEST(JsonPointerScan, FindsAStringAndSkipsTheRest) {
  std::string v;
  const char* doc =
      R"({"versions": [{"text": ["a \"b\" [{", ["c"]]}], "weird": "x\\", "next": "Genesis 1:2", "prev": null})";
  EXPECT_EQ(scan("/next", doc, &v), Scan::found);
  EXPECT_EQ(v, "Genesis 1:2");
  EXPECT_EQ(scan("/versions/0/text/0", doc, &v), Scan::found);
  EXPECT_EQ(v, "a \"b\" [{");
  EXPECT_EQ(scan("/versions/0/text/1/0", doc, &v), Scan::found);
  EXPECT_EQ(v, "c");
  EXPECT_EQ(scan("/weird", doc, &v), Scan::found);
  EXPECT_EQ(v, "x\\");
  EXPECT_EQ(scan("/prev", doc), Scan::absent) << "null is not a string";
  EXPECT_EQ(scan("/versions", doc), Scan::absent);
  EXPECT_EQ(scan("/missing", doc), Scan::absent);
  EXPECT_EQ(scan("/versions/1", doc), Scan::absent);
  EXPECT_EQ(scan("/versions/x", doc), Scan::absent);
  EXPECT_EQ(scan("/versions/01", doc), Scan::absent) << "no leading zeros in an index";
  EXPECT_EQ(scan("/next/0", doc), Scan::absent);
  EXPECT_EQ(scan("", R"("whole")", &v), Scan::found);
  EXPECT_EQ(v, "whole");
  // Escapes in keys and values, and RFC 6901's ~0 and ~1.
  EXPECT_EQ(scan("/a~1b~0c", R"({"a\/b~c": "\u00e9\ud83d\ude00\n"})", &v), Scan::found);
  EXPECT_EQ(v, "\xc3\xa9\xf0\x9f\x98\x80\n");
  EXPECT_EQ(scan("/k", R"({"\u006b": "escaped key"})", &v), Scan::found);
  EXPECT_EQ(v, "escaped key");
  EXPECT_EQ(scan("/k", R"({"k": "first", "k": "second"})", &v), Scan::found);
  EXPECT_EQ(v, "first") << "the first of duplicate names, as RapidJSON's pointers";
  EXPECT_EQ(scan("/next", "\xEF\xBB\xBF{\"next\": \"after a BOM\"}", &v), Scan::found);
  EXPECT_EQ(v, "after a BOM") << "a UTF-8 byte order mark is skipped, as RapidJSON skips it";
  EXPECT_EQ(scan("/next", R"({"\udc01": 1, "next": "x\udc00"})", &v), Scan::found)
      << "a lone low surrogate, as RapidJSON";
  EXPECT_EQ(v, "x\xed\xb0\x80");
}

TEST(JsonPointerScan, BrokenTextOnTheWayIsMalformed) {
  for (const char* doc : {"", "{", R"({"next")", R"({"next": )", R"({"next": "unterminated)",
                          R"({"a": [1, 2}, "next": "x"})", R"({"a": {"b": ]}, "next": "x"})",
                          R"({"a" 1, "next": "x"})", R"({"a": @, "next": "x"})",
                          R"({"next": "bad \q escape"})", R"({"next": "\ud800 alone"})", "[1, 2"}) {
    EXPECT_EQ(scan("/next", doc), Scan::malformed) << doc;
  }
  std::string deep = "{\"a\": ";
  deep.append(100000, '[');
  deep += ", \"next\": \"x\"}";
  EXPECT_EQ(scan("/next", deep), Scan::malformed) << "nesting past 256 is refused, not recursed";
}

// The scan against RapidJSON's pointers on random documents and random paths through them.
TEST(JsonPointerScan, AgreesWithRapidJsonOnRandomDocuments) {
  std::mt19937 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const char* names[] = {"a", "b", "next", "a/b", "t~x", "\xc3\xa9", "q\"", ""};
  const char* strings[] = {"",     "plain",        "with \"quote\"", "back\\slash\\",
                           "[{]}", "\xe2\x82\xac", "line\nbreak",    "tab\t"};
  std::function<void(rapidjson::Value&, rapidjson::Document::AllocatorType&, int)> gen =
      [&](rapidjson::Value& v, rapidjson::Document::AllocatorType& al, int depth) {
        int kind = depth > 4 ? pick(4) : pick(6);
        if (kind == 0) v.SetNull();
        else if (kind == 1) v.SetDouble(pick(1000) / 7.0 - 50);
        else if (kind == 2 || kind == 3) v.SetString(strings[pick(8)], al);
        else if (kind == 4) {
          v.SetArray();
          for (int i = pick(4); i > 0; --i) {
            rapidjson::Value e;
            gen(e, al, depth + 1);
            v.PushBack(e, al);
          }
        } else {
          v.SetObject();
          for (int i = pick(4); i > 0; --i) {
            rapidjson::Value e;
            gen(e, al, depth + 1);
            v.AddMember(rapidjson::Value(names[pick(8)], al), e, al);
          }
        }
      };
  int found = 0;
  for (int doc_i = 0; doc_i < 400; ++doc_i) {
    rapidjson::Document d;
    gen(d, d.GetAllocator(), 0);
    std::string text = json_text(d);
    for (int path_i = 0; path_i < 10; ++path_i) {
      std::string ptr;
      for (int depth = pick(5); depth > 0; --depth) {
        ptr += '/';
        if (pick(2)) {
          ptr += std::to_string(pick(3));
        } else {
          for (const char* ch = names[pick(8)]; *ch; ++ch) {
            if (*ch == '~') ptr += "~0";
            else if (*ch == '/') ptr += "~1";
            else ptr += *ch;
          }
        }
      }
      rapidjson::Pointer rp(ptr.c_str());
      ASSERT_TRUE(rp.IsValid()) << ptr;
      const rapidjson::Value* want = rp.Get(d);
      std::string got;
      Scan r = JsonPointerScan(ptr).find_string(text, got);
      if (want && want->IsString()) {
        ++found;
        ASSERT_EQ(r, Scan::found) << text << " at " << ptr;
        EXPECT_EQ(got, std::string(want->GetString(), want->GetStringLength()))
            << text << " at " << ptr;
      } else {
        EXPECT_EQ(r, Scan::absent) << text << " at " << ptr;
      }
    }
  }
  EXPECT_GT(found, 50) << "the random paths must hit strings often enough to test something";
}

TEST(DidYouMean, SuggestsOnlyCloseNames) {
  EXPECT_EQ(did_you_mean("chunk.recursiv", {"chunk.recursive", "chunk.sentence"}),
            " (did you mean 'chunk.recursive'?)");
  EXPECT_EQ(did_you_mean("zzz", {"chunk.recursive", "chunk.sentence"}), "");
}

}  // namespace
}  // namespace sluice
