// source.lines: one document per non-empty line of a text file (e.g. a list of URLs or ids).
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo source_lines_info();
}
