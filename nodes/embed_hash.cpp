#include "nodes/embed_hash.hpp"

#include <cmath>

#include "engine/text/text.hpp"

namespace sluice {

std::vector<float> hash_embed(std::string_view text, int dim) {
  std::vector<float> v(static_cast<size_t>(dim), 0.0f);
  each_word(text, [&](std::string_view w) {
    uint64_t h = text::stable_hash64(w, 0x5eed);
    float sign = (h >> 63) ? -1.0f : 1.0f;
    v[(h & 0x7fffffffffffffffull) % static_cast<uint64_t>(dim)] += sign;
  });
  double norm = 0;
  for (float x : v) norm += static_cast<double>(x) * x;
  if (norm > 0) {
    float inv = static_cast<float>(1.0 / std::sqrt(norm));
    for (float& x : v) x *= inv;
  }
  return v;
}

std::string hash_embedder_spec(int dim) {
  return "{\"type\":\"embed.hash\",\"dim\":" + std::to_string(dim) + "}";
}

namespace {

class HashEmbed final : public Node {
 public:
  explicit HashEmbed(const NodeInit& init)
      : _dim(static_cast<int>(init.params.integer("dim"))),
        _spec(std::make_shared<const std::string>(hash_embedder_spec(_dim))) {
    if (_dim > 65536) throw ParamError("dim", "dim must be at most 65536");
  }

  void process(RecordPtr in, Emitter& out) override {
    RecordPtr r = own(in);
    r->vector = hash_embed(r->text, _dim);
    r->embedder = _spec;
    out.emit(std::move(r));
  }

 private:
  int _dim;
  std::shared_ptr<const std::string> _spec;
};

}  // namespace

NodeTypeInfo embed_hash_info() {
  NodeTypeInfo info;
  info.type = "embed.hash";
  info.role = NodeRole::embedder;
  info.description = "Local feature-hashing embeddings (signed token hashes, L2-normalized). "
                     "Lexical, not semantic: "
                     "it matches shared words, not meaning. Offline and fast; use embed.openai for "
                     "semantic vectors.";
  info.params = {with_min(param("dim", ParamType::integer, "256", "vector dimensions"), 1)};
  info.make_node = [](const NodeInit& init) { return std::make_unique<HashEmbed>(init); };
  return info;
}

}  // namespace sluice
