#include "nodes/chunk.hpp"

#include <algorithm>
#include <cmath>

#include "engine/text/measure.hpp"
#include "engine/text/text.hpp"
#include "engine/text/tokenizer.hpp"

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
    if (init.params.str("size_unit") == "tokens") {
      try {
        _tok = text::Tokenizer::named(init.params.str("encoding"));
      } catch (const std::runtime_error& e) {
        throw ParamError("encoding", e.what());
      }
    }
  }

  void process(RecordPtr in, Emitter& out) override {
    if (in->text.empty()) {
      out.drop(Outcome::filtered, "empty text");
      return;
    }
    const std::string prefix = in->id + "#" + _tag;
    std::unique_ptr<text::Measure> m;
    if (_tok) m = std::make_unique<text::TokenMeasure>(*_tok, in->text);
    else m = std::make_unique<text::CodePointMeasure>(in->text);
    size_t made = 0;
    if (_splitter == Splitter::markdown) {
      // A chunk's heading path: the record's own (an extractor's section), then the headings
      // found in its text below it.
      const auto spans = text::split_markdown(in->text, _size, _overlap, *m);
      const std::string outer = in->meta.get_text("heading");
      out.outputs().reserve(spans.size());
      for (const text::MarkdownSpan& s : spans) {
        for (text::Span piece : fit(in->text, s.span)) {
          RecordPtr c = chunk(*in, prefix, made++, piece);
          if (!s.heading.empty())
            c->meta.set_string("heading", outer.empty() ? s.heading : outer + " > " + s.heading);
          out.emit(std::move(c));
        }
      }
    } else {
      const auto spans = _splitter == Splitter::sentence
                             ? text::split_sentences(in->text, _size, _overlap, *m)
                             : text::split_recursive(in->text, _size, _overlap, _separators, *m);
      out.outputs().reserve(spans.size());
      for (const text::Span& s : spans)
        for (text::Span piece : fit(in->text, s)) out.emit(chunk(*in, prefix, made++, piece));
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

  // Token sizes were measured in the whole text's tokenization; encoded alone, a chunk can come
  // out a token or two longer at its edges. Each is checked and, when over, split again in its
  // own tokenization (recursively, on ever smaller ranges) so every chunk holds at most size
  // tokens, unless it is a single character of more.
  std::vector<text::Span> fit(std::string_view doc, text::Span s) const {
    if (!_tok) return {s};
    std::vector<text::Span> out;
    fit_into(doc, s, out);
    return out;
  }
  void fit_into(std::string_view doc, text::Span s, std::vector<text::Span>& out) const {
    const std::string_view sub = doc.substr(s.begin, s.end - s.begin);
    if (_tok->count(sub) <= _size || text::advance_code_points(sub, 0, 1) >= sub.size()) {
      out.push_back(s);
      return;
    }
    const text::TokenMeasure m(*_tok, sub);
    for (text::Span p : text::split_range(sub, 0, sub.size(), _size, text::default_separators(), m))
      fit_into(doc, {s.begin + p.begin, s.begin + p.end}, out);
  }

  Splitter _splitter;
  size_t _size, _overlap;
  std::string _tag;
  std::vector<std::string> _separators;
  std::shared_ptr<const text::Tokenizer> _tok;  // size_unit tokens
};

std::vector<ParamSpec> common_params() {
  return {
      with_min(param("size", ParamType::integer, "1000",
                     "maximum chunk size in size_unit (characters are code points)"),
               1),
      with_min(param("overlap", ParamType::integer, "0",
                     "size_unit a chunk repeats from the end of the previous one (< size)"),
               0),
      with_choices(param("size_unit", ParamType::string, "\"characters\"",
                         "characters, or tokens of `encoding` (what embedding APIs limit)"),
                   {"characters", "tokens"}),
      with_choices(param("encoding", ParamType::string, "\"cl100k_base\"",
                         "with size_unit tokens: cl100k_base (OpenAI's embedding models) or "
                         "o200k_base; ranks from the data directory (README, \"Token sizes\")"),
                   {"cl100k_base", "o200k_base"}),
      param("id_tag", ParamType::string, "\"\"",
            "inserted in chunk ids (<doc_id>#<tag><n>) to keep two chunkers' ids apart"),
  };
}

// A document of doc_chars makes ceil((doc_chars - overlap) / (size - overlap)) chunks of at most
// size (a token taken as 4 characters).
NodeCost chunk_cost(const Params& p, const CostInput& in) {
  const double unit = p.str("size_unit") == "tokens" ? 4 : 1;
  const double size = p.number("size") * unit, overlap = p.number("overlap") * unit;
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
