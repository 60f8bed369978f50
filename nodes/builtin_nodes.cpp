// The one list of built-in node types. A new node kind: add its header and one line here.
#include "nodes/builtin_nodes.hpp"

#include "nodes/chunk.hpp"
#include "nodes/embed_fasttext.hpp"
#include "nodes/embed_hash.hpp"
#include "nodes/embed_http.hpp"
#include "nodes/expand_json.hpp"
#include "nodes/extract_document.hpp"
#include "nodes/extract_json.hpp"
#include "nodes/extract_openalex.hpp"
#include "nodes/fetch_http.hpp"
#include "nodes/index_chroma.hpp"
#include "nodes/index_elasticsearch.hpp"
#include "nodes/index_jsonl.hpp"
#include "nodes/index_postgres.hpp"
#include "nodes/index_sqlite.hpp"
#include "nodes/source_files.hpp"
#include "nodes/source_http_list.hpp"
#include "nodes/source_jsonl.hpp"
#include "nodes/source_lines.hpp"
#include "nodes/source_range.hpp"
#include "nodes/util.hpp"

namespace sluice {

void register_builtin_nodes(Registry& r) {
  r.add(source_files_info());
  r.add(source_jsonl_info());
  r.add(source_range_info());
  r.add(source_lines_info());
  r.add(source_http_list_info());
  r.add(fetch_http_info());
  r.add(extract_json_info());
  r.add(extract_auto_info());
  r.add(extract_markdown_info());
  r.add(extract_html_info());
  r.add(extract_pdf_info());
  r.add(expand_json_info());
  r.add(extract_openalex_abstract_info());
  r.add(chunk_recursive_info());
  r.add(chunk_sentence_info());
  r.add(chunk_markdown_info());
  r.add(embed_hash_info());
  r.add(embed_fasttext_info());
  r.add(embed_openai_info());
  r.add(embed_gemini_info());
  r.add(util_filter_info());
  r.add(util_dedup_info());
  r.add(util_pass_info());
  r.add(index_sqlite_info());
  r.add(index_jsonl_info());
  r.add(index_chroma_info());
  r.add(index_elasticsearch_info());
  r.add(index_postgres_info());
}

const Registry& builtin_registry() {
  static const Registry r = [] {
    Registry reg;
    register_builtin_nodes(reg);
    return reg;
  }();
  return r;
}

}  // namespace sluice
