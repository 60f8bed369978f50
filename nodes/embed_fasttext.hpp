// embed.fasttext: local embeddings from a fastText model (Debian's libfasttext), offline. A chunk's
// vector is the average of its words' vectors (each L2-normalized, then weighted a / (a + p(w))
// by the word's frequency p in the model's training text, so "the" and "and" count little),
// L2-normalized. Words are read as embed.hash reads them (lowercased runs of letters and
// digits). A .bin model knows subwords (a word it never saw still gets a vector from its
// character n-grams) and its words' counts; a .vec file (text vectors) gives known words only,
// weighted by their rank (.vec files list words by frequency).
// `sluice train-embedder` trains a model on a folder of text (skipgram).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/node.hpp"

namespace sluice {

NodeTypeInfo embed_fasttext_info();

class FastTextModel {
 public:
  virtual ~FastTextModel() = default;
  virtual int dim() const = 0;
  // The text's vector (all zeros when no word has one). Thread-safe.
  virtual std::vector<float> embed(std::string_view text) const = 0;
};

// The model at `path` (.bin, or .vec: text vectors, the first `max_words` of them), loaded once
// per process and path. Throws std::runtime_error naming the file and what is wrong.
std::shared_ptr<const FastTextModel> load_fasttext(const std::string& path, size_t max_words = 0);

// The index's record of an embed.fasttext node: {"type":"embed.fasttext","model":PATH,"dim":D}.
std::string fasttext_embedder_spec(const std::string& model_path, int dim);

struct TrainEmbedderOptions {
  std::string dir;   // folder of text files (read recursively)
  std::string glob;  // file names to read ("*")
  std::string out;   // model path; ".bin" is added when missing
  int dim = 100;
  int epoch = 10;
  int min_count = 2;
  int threads = 0;  // 0: every core
  int seed = 0;
  bool verbose = true;  // progress on stderr
};
struct TrainEmbedderResult {
  std::string model;  // the .bin written
  size_t files = 0, bytes = 0, skipped = 0;
  int64_t words = 0;  // distinct words in the model
  double seconds = 0;
};
// Trains a skipgram model on the folder's text (lowercased words, as embed.fasttext reads them).
// Binary files (a NUL byte or invalid UTF-8) are skipped. Throws std::runtime_error.
TrainEmbedderResult train_fasttext(const TrainEmbedderOptions& o);

}  // namespace sluice
