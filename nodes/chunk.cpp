#include "nodes/chunk.hpp"

#include <algorithm>
#include <cmath>

#include "engine/text/text.hpp"

namespace sluice {

namespace {

class ChunkNode final : public Node {
 public:
  ChunkNode(const NodeInit& init, bool sentences)
      : _sentences(sentences), _size(static_cast<size_t>(init.params.integer("size"))),
        _overlap(static_cast<size_t>(init.params.integer("overlap"))),
        _tag(init.params.str("id_tag")) {
    if (_overlap >= _size)
      throw ParamError("overlap", "overlap (" + std::to_string(_overlap) +
                                      ") must be smaller than size (" + std::to_string(_size) +
                                      ")");
    if (!sentences) {
      _separators = init.params.strings("separators");
      if (_separators.empty()) _separators = {"\n\n", "\n", ". ", " ", ""};
    }
  }

  void process(RecordPtr in, Emitter& out) override {
    if (in->text.empty()) {
      out.drop(Outcome::filtered, "empty text");
      return;
    }
    auto spans = _sentences ? text::split_sentences(in->text, _size, _overlap)
                            : text::split_recursive(in->text, _size, _overlap, _separators);
    out.outputs().reserve(spans.size());
    std::string prefix = in->id + "#" + _tag;
    for (size_t n = 0; n < spans.size(); ++n) {
      auto c = in->derive(prefix + std::to_string(n));
      c->text.assign(in->text, spans[n].begin, spans[n].end - spans[n].begin);
      c->seq = static_cast<uint32_t>(n);
      out.emit(std::move(c));
    }
    if (spans.empty()) out.drop(Outcome::filtered, "no text to chunk");
  }

 private:
  bool _sentences;
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

}  // namespace

NodeTypeInfo chunk_recursive_info() {
  NodeTypeInfo info;
  info.type = "chunk.recursive";
  info.role = NodeRole::chunker;
  info.description =
      "Splits text at the first separator that occurs (paragraphs, lines, sentences, words, then "
      "characters), merging pieces up to size. Without overlap the chunks re-concatenate to the "
      "text.";
  info.params = common_params();
  info.params.push_back(param("separators", ParamType::string_list,
                              "[\"\\n\\n\", \"\\n\", \". \", \" \", \"\"]",
                              "separators tried in order; \"\" splits between characters"));
  info.make_node = [](const NodeInit& init) { return std::make_unique<ChunkNode>(init, false); };
  info.cost = chunk_cost;
  return info;
}

NodeTypeInfo chunk_sentence_info() {
  NodeTypeInfo info;
  info.type = "chunk.sentence";
  info.role = NodeRole::chunker;
  info.description = "Groups whole sentences (ending in '.', '!' or '?', or at a blank line) up to "
                     "size; a longer sentence "
                     "is split like chunk.recursive. Overlap repeats whole trailing sentences.";
  info.params = common_params();
  info.make_node = [](const NodeInit& init) { return std::make_unique<ChunkNode>(init, true); };
  info.cost = chunk_cost;
  return info;
}

}  // namespace sluice
