// chunk.recursive, chunk.sentence and chunk.markdown: split a document's text into chunk records
// with ids
// `<id>#<id_tag><n>` (n from 0), sizes in code points, never splitting a code point.
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo chunk_recursive_info();
NodeTypeInfo chunk_sentence_info();
NodeTypeInfo chunk_markdown_info();
}  // namespace sluice
