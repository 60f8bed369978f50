// util.filter, util.dedup and util.pass.
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo util_filter_info();
NodeTypeInfo util_dedup_info();
NodeTypeInfo util_pass_info();
}  // namespace sluice
