// Helpers for RapidJSON values on the record path (bodies, listing items, meta).
#pragma once

#include <string>

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/params.hpp"

namespace sluice {

// Compact JSON text of `v`.
inline std::string json_text(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

// An RFC 6901 pointer from a param value ("" is the whole document); a bad one is a ParamError
// naming `param`.
inline rapidjson::Pointer json_pointer(const std::string& text, const std::string& param) {
  rapidjson::Pointer p(text.c_str(), text.size());
  if (!p.IsValid() || (!text.empty() && text[0] != '/'))
    throw ParamError(param, "\"" + text + "\" is not a JSON pointer (RFC 6901, e.g. /results/0/title)");
  return p;
}

}  // namespace sluice
