// source.http_list: documents from a paginated JSON listing (page, offset, cursor or Link header
// paging), fetched on the HTTP loop a page at a time as admission makes room.
#pragma once
#include "engine/node.hpp"
#include <string>
#include <utility>
#include <vector>
namespace sluice {
NodeTypeInfo source_http_list_info();
// The rel="next" URL of an RFC 8288 Link header, or "".
std::string link_next(const std::string& header);
// The `partitions` param: one set of query params per partition, from an array of objects or
// from date windows ({"from", "to", "every", "query"}). Throws ParamError.
std::vector<std::vector<std::pair<std::string, std::string>>>
read_partitions(const json::Value& parts);
// A partitioned listing's rpm: the job's rpm was divided evenly among `sharers` processes
// (split_job_limits), but only processes with partitions list, so each takes its partitions'
// share of what the sharers hold together. The factor to apply to the divided rpm; 1 when not
// divided or when this process lists nothing.
double partition_rpm_scale(size_t partitions, const ShardSpec& part, const ShardSpec& shard,
                           int sharers);
}  // namespace sluice
