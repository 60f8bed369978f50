// extract.json: a record's JSON body (e.g. from fetch.http) → text and meta by JSON pointers.
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo extract_json_info();
}
