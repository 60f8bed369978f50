// engine/http/request_options: every HTTP node declares and reads its request params alike.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "engine/diagnostics.hpp"
#include "engine/http/request_options.hpp"
#include "tests/test_util.hpp"

namespace sluice {
namespace {

const char* kHttpTypes[] = {"fetch.http",   "source.http_list",    "embed.openai",
                            "embed.gemini", "index.elasticsearch", "index.chroma"};

TEST(RequestOptions, EveryHttpNodeDeclaresTheSameRequestParams) {
  const Registry& reg = builtin_registry();
  std::map<std::string, std::string> docs;  // param -> doc, from the first node declaring it
  for (const char* type : kHttpTypes) {
    const NodeTypeInfo* info = reg.find(type);
    ASSERT_NE(info, nullptr) << type;
    std::set<std::string> names;
    for (const auto& p : info->params) names.insert(p.name);
    for (const char* shared : {"rpm", "limit_key", "retry", "timeout_ms"})
      EXPECT_TRUE(names.count(shared)) << type << " lacks " << shared;
    for (const auto& p : info->params) {
      if (p.name != "rpm" && p.name != "limit_key" && p.name != "retry") continue;
      // rpm's doc names what the node sends ("pages per minute"): the rest is the same.
      const std::string doc = p.name == "rpm" ? p.doc.substr(p.doc.find("per minute")) : p.doc;
      auto [it, first] = docs.emplace(p.name, doc);
      if (!first) {
        EXPECT_EQ(it->second, doc) << type << "." << p.name;
      }
    }
  }
  // Every I/O node type is one of them: a new HTTP node must declare its params the same way.
  for (const auto& info : reg.all()) {
    // index.postgres is I/O over libpq, not HTTP: its own connection and retry params.
    if (!info.io || info.type == "index.postgres") continue;
    EXPECT_NE(std::find(std::begin(kHttpTypes), std::end(kHttpTypes), info.type),
              std::end(kHttpTypes))
        << info.type << " is an I/O node: list it here once it uses add_request_params";
  }
}

std::string one_node(const std::string& type, const std::string& params) {
  std::string url = type == "embed.gemini" ? "" : R"("url": "http://127.0.0.1:9/x", )";
  std::string extra = type == "embed.openai" || type == "embed.gemini" ? R"("model": "m", )"
                      : type == "source.http_list"                     ? R"("items": "/items", )"
                      : type == "index.elasticsearch"                  ? R"("index": "i", )"
                      : type == "index.chroma" ? R"("collection": "chunks", )"
                                               : "";
  std::string node =
      R"({"id": "n", "type": ")" + type + R"(", "params": {)" + url + extra + params + "}}";
  if (type == "source.http_list")
    return R"({"nodes": [)" + node + R"(, {"id": "out", "type": "index.jsonl", "params":
      {"path": "/dev/null"}}], "edges": [["n", "out"]]})";
  return R"({"nodes": [{"id": "src", "type": "source.range", "params": {"count": 1}}, )" + node +
         (type == "index.elasticsearch" || type == "index.chroma"
              ? R"(], "edges": [["src", "n"]]})"
              : R"(, {"id": "out", "type": "index.jsonl", "params": {"path": "/dev/null"}}],
                 "edges": [["src", "n"], ["n", "out"]]})");
}

TEST(RequestOptions, ReadAlikeWithTheNodesIdAsTheDefaultLimitKey) {
  for (const char* type : kHttpTypes) {
    GraphSpec spec = test::spec_from(one_node(type, R"("rpm": 120, "retry": {"max_attempts": 3,
      "base_delay_s": 0.5}, "timeout_ms": 1500)"));
    const NodeSpec& n = spec.nodes[spec.index_of("n")];
    http::RequestOptions o = http::read_request_options(n.params, n.id);
    EXPECT_EQ(o.limit_key, "n") << type;
    EXPECT_DOUBLE_EQ(o.limit.rpm, 120) << type;
    EXPECT_EQ(o.retry.max_attempts, 3) << type;
    EXPECT_DOUBLE_EQ(o.retry.base_delay_s, 0.5) << type;
    EXPECT_DOUBLE_EQ(o.retry.max_retry_s, 600) << type << ": unset members keep their defaults";
    EXPECT_EQ(o.timeout_ms, 1500) << type;
    EXPECT_TRUE(spec.warnings.empty()) << spec.warnings;
    GraphSpec named = test::spec_from(one_node(type, R"("limit_key": "upstream")"));
    const NodeSpec& m = named.nodes[named.index_of("n")];
    EXPECT_EQ(http::read_request_options(m.params, m.id).limit_key, "upstream") << type;
  }
}

TEST(RequestOptions, BadRetrySettingsAreConfigErrors) {
  for (const char* retry : {R"({"max_attempts": 0})", R"({"max_tries": 3})",
                            R"({"base_delay_s": "1"})", R"({"max_delay_s": -1})"}) {
    try {
      test::spec_from(one_node("embed.openai", std::string(R"("retry": )") + retry));
      ADD_FAILURE() << retry << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("retry"), std::string::npos) << e.what();
    }
  }
}

TEST(RequestOptions, TheRetiredMaxAttemptsStillWorksWithANote) {
  for (const char* type :
       {"source.http_list", "embed.openai", "embed.gemini", "index.elasticsearch"}) {
    GraphSpec spec = test::spec_from(one_node(type, R"("max_attempts": 5)"));
    const NodeSpec& n = spec.nodes[spec.index_of("n")];
    EXPECT_EQ(http::read_request_options(n.params, n.id).retry.max_attempts, 5) << type;
    EXPECT_NE(spec.warnings.find("\"max_attempts\" is deprecated: write \"retry.max_attempts\""),
              std::string::npos)
        << type << ": " << spec.warnings;
    try {
      test::spec_from(one_node(type, R"("max_attempts": 5, "retry": {"max_attempts": 4})"));
      ADD_FAILURE() << type << ": both names were accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("are both given"), std::string::npos) << e.what();
    }
  }
  try {
    test::spec_from(one_node("embed.openai", R"("max_attempts": 0)"));
    ADD_FAILURE() << "max_attempts 0 was accepted";
  } catch (const ConfigError&) {
  }
}

TEST(RequestOptions, BackoffIsFullJitterUnderItsCap) {
  http::RetryPolicy p;
  p.base_delay_s = 0.2;
  p.max_delay_s = 1.0;
  std::mt19937_64 rng(1);
  for (int attempt = 1; attempt <= 8; ++attempt) {
    const double cap = std::min(1.0, 0.2 * (1 << (attempt - 1)));
    double lo = 1e9, hi = 0;
    for (int i = 0; i < 2000; ++i) {
      double d = http::backoff_delay_s(p, attempt, rng);
      lo = std::min(lo, d);
      hi = std::max(hi, d);
      ASSERT_GE(d, 0);
      ASSERT_LE(d, cap);
    }
    EXPECT_LT(lo, 0.05 * cap) << "full jitter starts near 0, attempt " << attempt;
    EXPECT_GT(hi, 0.95 * cap) << "and reaches its cap, attempt " << attempt;
  }
}

}  // namespace
}  // namespace sluice
