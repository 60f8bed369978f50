// Untrusted JSON: the bounded parse, and the pointer scan agreeing with RapidJSON's pointers.
// Input: a pointer on the first line, the document after it.
#include <rapidjson/pointer.h>

#include "engine/json/scan.hpp"
#include "engine/json/value.hpp"
#include "fuzz/fuzz_target.hpp"

SLUICE_FUZZ_TARGET(json) {
  using namespace sluice;
  std::string_view in = fuzz::as_text(data, size);
  size_t nl = in.find('\n');
  std::string_view pointer = nl == std::string_view::npos ? "" : in.substr(0, nl);
  std::string_view doc = nl == std::string_view::npos ? in : in.substr(nl + 1);
  if (!pointer.empty() && pointer[0] != '/') return 0;
  // RapidJSON's pointers end a token at a NUL (the scan keeps it): no common meaning to compare.
  const bool comparable = pointer.find('\0') == std::string_view::npos;
  JsonPointerScan scan(pointer);
  std::string found;
  JsonPointerScan::Result r = scan.find_string(doc, found);
  rapidjson::Document d;
  if (!parse_untrusted(d, doc) || !comparable) return 0;
  rapidjson::Pointer p(pointer.data(), pointer.size());
  if (!p.IsValid()) return 0;
  const rapidjson::Value* v = p.Get(d);
  if (v && v->IsString()) {
    fuzz::check(r == JsonPointerScan::Result::found, "the scan finds the string RapidJSON finds");
    fuzz::check(found == std::string_view(v->GetString(), v->GetStringLength()),
                "and the same string");
  }
  return 0;
}
