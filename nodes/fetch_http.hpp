// fetch.http: one HTTP request per record on the process's curl-multi loop; the response body
// is stored on the record (Record::body) for an extract node.
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo fetch_http_info();
}
