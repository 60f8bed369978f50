// source.files: documents from the files under a directory (txt, md, html, json, jsonl).
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo source_files_info();
}
