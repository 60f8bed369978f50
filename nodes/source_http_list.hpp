// source.http_list: documents from a paginated JSON listing (page, offset, cursor or Link header
// paging), fetched on the HTTP loop a page at a time as admission makes room.
#pragma once
#include "engine/node.hpp"
#include <string>
namespace sluice {
NodeTypeInfo source_http_list_info();
// The rel="next" URL of an RFC 8288 Link header, or "".
std::string link_next(const std::string& header);
}  // namespace sluice
