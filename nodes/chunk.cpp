#include "nodes/chunk.hpp"

#include <algorithm>
#include <cmath>

#include "engine/text/text.hpp"

namespace sluice {

namespace {

enum class Splitter { recursive, sentence, markdown };

class ChunkNode final : public Node {
 public:
  ChunkNode(const NodeInit& init, Splitter splitter)
      : _splitter(splitter), _size(static_cast<size_t>(init.params.integer("size"))),
        _overlap(static_cast<size_t>(init.params.integer("overlap"))),
        _tag(init.params.str("id_tag")) {
    if (_overlap >= _size)
      throw ParamError("overlap", "overlap (" + std::to_string(_overlap) +
                                      ") must be smaller than size (" + std::to_string(_size) +
                                      ")");
    if (splitter == Splitter::recursive) {
      _separators = init.params.strings("separators");
      if (_separators.empty()) _separators = {"\n\n", "\n", ". ", " ", ""};
    }
  }

  void process(RecordPtr in, Emitter& out) override {
    if (in->text.empty()) {
      out.drop(Outcome::filtered, "empty text");
      return;
    }
    const std::string prefix = in->id + "#" + _tag;
    size_t made = 0;
    if (_splitter == Splitter::markdown) {
      // A chunk's heading path: the record's own (an extractor's section), then the headings
      // found in its text below it.
      const auto spans = text::split_markdown(in->text, _size, _overlap);
      const std::string outer = in->meta.get_text("heading");
      out.outputs().reserve(spans.size());
      for (const text::MarkdownSpan& s : spans) {
        RecordPtr c = chunk(*in, prefix, made++, s.span);
        if (!s.heading.empty())
          c->meta.set_string("heading", outer.empty() ? s.heading : outer + " > " + s.heading);
        out.emit(std::move(c));
      }
    } else {
      const auto spans = _splitter == Splitter::sentence
                             ? text::split_sentences(in->text, _size, _overlap)
                             : text::split_recursive(in->text, _size, _overlap, _separators);
      out.outputs().reserve(spans.size());
      for (const text::Span& s : spans) out.emit(chunk(*in, prefix, made++, s));
    }
    if (made == 0) out.drop(Outcome::filtered, "no text to chunk");
  }

 private:
  // Chunk n of `in`: the span's text, id <prefix><n>.
  static RecordPtr chunk(const Record& in, const std::string& prefix, size_t n, text::Span s) {
    auto c = in.derive(prefix + std::to_string(n));
    c->text.assign(in.text, s.begin, s.end - s.begin);
    c->seq = static_cast<uint32_t>(n);
    return c;
  }

  Splitter _splitter;
  size_t _size, _overlap;
  std::string _tag;
  std::vector<std::string> _separators;
};

std::vector<ParamSpec> common_params() {
  return {
      with_min(param("size", ParamType::integer, "1000",
                     "maximum chunk size in characters (code points)"),
               1),
      with_min(param("overlap", ParamType::integer, "0",
                     "characters a chunk repeats from the end of the previous one (< size)"),
               0),
      param("id_tag", ParamType::string, "\"\"",
            "inserted in chunk ids (<doc_id>#<tag><n>) to keep two chunkers' ids apart"),
  };
}

// A document of doc_chars makes ceil((doc_chars - overlap) / (size - overlap)) chunks of at most
// size.
NodeCost chunk_cost(const Params& p, const CostInput& in) {
  const double size = p.number("size"), overlap = p.number("overlap");
  NodeCost c;
  c.chunks_per_doc = std::max(
      1.0, std::ceil(std::max(0.0, in.doc_chars - overlap) / std::max(1.0, size - overlap)));
  c.chunk_chars = std::min(size, in.doc_chars);
  return c;
}

// The chunkers' one shape: common params, the cost model, a ChunkNode with its splitter.
NodeTypeInfo chunker_info(const char* type, Splitter splitter, std::string description) {
  NodeTypeInfo info;
  info.type = type;
  info.role = NodeRole::chunker;
  info.description = std::move(description);
  info.params = common_params();
  info.make_node = [splitter](const NodeInit& init) {
    return std::make_unique<ChunkNode>(init, splitter);
  };
  info.cost = chunk_cost;
  return info;
}

}  // namespace

NodeTypeInfo chunk_recursive_info() {
  NodeTypeInfo info = chunker_info(
      "chunk.recursive", Splitter::recursive,
      "Splits text at the first separator that occurs (paragraphs, lines, sentences, words, then "
      "characters), merging pieces up to size. Without overlap the chunks re-concatenate to the "
      "text.");
  info.params.push_back(param("separators", ParamType::string_list,
                              "[\"\\n\\n\", \"\\n\", \". \", \" \", \"\"]",
                              "separators tried in order; \"\" splits between characters"));
  return info;
}

NodeTypeInfo chunk_sentence_info() {
  return chunker_info("chunk.sentence", Splitter::sentence,
                      "Groups whole sentences (ending in '.', '!' or '?', or at a blank line) up "
                      "to size; a longer sentence is split like chunk.recursive. Overlap repeats "
                      "whole trailing sentences.");
}

NodeTypeInfo chunk_markdown_info() {
  return chunker_info(
      "chunk.markdown", Splitter::markdown,
      "Splits Markdown (or what extract.* made of a document) by its structure: a new chunk at "
      "each heading, code fences and tables kept whole when they fit in size, paragraphs packed "
      "whole; chunks never begin or end with a dangling separator, overlap starts at a word, and "
      "each chunk's heading path goes to meta.heading.");
}

}  // namespace sluice
