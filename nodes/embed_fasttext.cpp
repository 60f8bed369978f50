#include "nodes/embed_fasttext.hpp"

#include <fasttext/fasttext.h>
#include <fnmatch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engine/json/json.hpp"
#include "engine/text/text.hpp"
#include "nodes/embed_hash.hpp"

namespace sluice {

namespace {

namespace fs = std::filesystem;

// SIF's weight a / (a + p(word)) (Arora et al., 2017): a word seen once in a thousand counts half.
constexpr double kSifA = 1e-3;
constexpr int kMaxDim = 65536;
// Words whose weighted vectors a .bin model keeps ready (at dim 300: 240 MB).
constexpr size_t kCachedWords = 200000;

// Writes w * v / |v| to dst (all zeros when v is), the form in which a word's vector is summed.
void weighted_unit(float* dst, const float* v, size_t n, double w) {
  double norm = 0;
  for (size_t i = 0; i < n; ++i) norm += static_cast<double>(v[i]) * v[i];
  const double k = norm > 0 ? w / std::sqrt(norm) : 0.0;
  for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(k * v[i]);
}

void add_row(std::vector<double>& sum, const float* row) {
  for (size_t i = 0; i < sum.size(); ++i) sum[i] += row[i];
}

std::vector<float> unit(const std::vector<double>& sum) {
  double norm = 0;
  for (double x : sum) norm += x * x;
  std::vector<float> out(sum.size(), 0.0f);
  if (norm > 0) {
    const double inv = 1.0 / std::sqrt(norm);
    for (size_t i = 0; i < sum.size(); ++i) out[i] = static_cast<float>(sum[i] * inv);
  }
  return out;
}

class BinModel final : public FastTextModel {
 public:
  explicit BinModel(const std::string& path) {
    try {
      _ft.loadModel(path);
    } catch (const std::exception& e) {
      throw std::runtime_error("cannot load the fastText model " + path + ": " + e.what());
    }
    _dim = _ft.getDimension();
    if (_dim < 1 || _dim > kMaxDim)
      throw std::runtime_error("the fastText model " + path + " has " + std::to_string(_dim) +
                               " dimensions (1 to " + std::to_string(kMaxDim) + ")");
    _dict = _ft.getDictionary();
    _counts = _dict->getCounts(fasttext::entry_type::word);
    _tokens = std::max<int64_t>(1, _dict->ntokens());
    // The most frequent words' vectors, normalized and weighted once: a word's vector is the sum
    // of its character n-grams' (a dozen lookups and hashes), most of the time of a chunk.
    _cached = std::min<size_t>(_counts.size(), kCachedWords);
    _cache.assign(_cached * static_cast<size_t>(_dim), 0.0f);
    fasttext::Vector v(_dim);
    for (size_t id = 0; id < _cached; ++id) {
      v.zero();
      _ft.getWordVector(v, _dict->getWord(static_cast<int32_t>(id)));
      weighted_unit(_cache.data() + id * static_cast<size_t>(_dim), v.data(),
                    static_cast<size_t>(_dim), weight(static_cast<int32_t>(id)));
    }
  }
  int dim() const override { return _dim; }
  std::vector<float> embed(std::string_view text) const override {
    std::vector<double> sum(static_cast<size_t>(_dim), 0.0);
    fasttext::Vector v(_dim);
    std::vector<float> row(static_cast<size_t>(_dim));
    std::string w;
    each_word(text, [&](std::string_view word) {
      w.assign(word);
      const int32_t id = _dict->getId(w);
      if (id >= 0 && static_cast<size_t>(id) < _cached) {
        add_row(sum, _cache.data() + static_cast<size_t>(id) * _dim);
        return;
      }
      v.zero();
      _ft.getWordVector(v, w);
      weighted_unit(row.data(), v.data(), row.size(), weight(id));
      add_row(sum, row.data());
    });
    return unit(sum);
  }

 private:
  // SIF weight of word `id` (-1: a word the model never saw, weight 1).
  double weight(int32_t id) const {
    const double p =
        id >= 0 && static_cast<size_t>(id) < _counts.size()
            ? static_cast<double>(_counts[static_cast<size_t>(id)]) / static_cast<double>(_tokens)
            : 0.0;
    return kSifA / (kSifA + p);
  }

  fasttext::FastText _ft;
  std::shared_ptr<const fasttext::Dictionary> _dict;
  size_t _cached = 0;
  std::vector<float> _cache;  // _cached x _dim
  std::vector<int64_t> _counts;
  int64_t _tokens = 1;
  int _dim = 0;
};

// A .vec file: "N D", then "word x1 .. xD" a line, most frequent words first.
class VecModel final : public FastTextModel {
 public:
  VecModel(const std::string& path, size_t max_words) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path);
    size_t n = 0;
    int dim = 0;
    std::string line;
    if (!std::getline(in, line) || std::sscanf(line.c_str(), "%zu %d", &n, &dim) != 2 || dim < 1 ||
        dim > kMaxDim)
      throw std::runtime_error(path + ":1: expected \"<words> <dimensions>\" (a .vec file)");
    _dim = dim;
    n = std::min(n, max_words);
    _vectors.reserve(n * static_cast<size_t>(dim));
    for (size_t i = 0; i < n && std::getline(in, line); ++i) {
      const size_t sp = line.find(' ');
      if (sp == std::string::npos || sp == 0)
        throw std::runtime_error(path + ":" + std::to_string(i + 2) + ": expected a word and " +
                                 std::to_string(dim) + " numbers");
      const char* p = line.c_str() + sp;
      for (int d = 0; d < dim; ++d) {
        char* end = nullptr;
        const float x = std::strtof(p, &end);
        if (end == p || !std::isfinite(x))
          throw std::runtime_error(path + ":" + std::to_string(i + 2) + ": expected " +
                                   std::to_string(dim) + " numbers after the word");
        _vectors.push_back(x);
        p = end;
      }
      _index.emplace(line.substr(0, sp), static_cast<uint32_t>(i));  // a repeated word: the first
    }
    // Each row normalized and weighted once. Zipf: the word of rank r is about 1 / (r H) of a
    // text.
    const size_t rows = _vectors.size() / static_cast<size_t>(dim);
    const double harmonic = std::log(static_cast<double>(std::max<size_t>(rows, 1))) + 0.5772;
    for (size_t r = 0; r < rows; ++r) {
      float* row = _vectors.data() + r * static_cast<size_t>(dim);
      const double p = 1.0 / ((static_cast<double>(r) + 1.0) * harmonic);
      weighted_unit(row, row, static_cast<size_t>(dim), kSifA / (kSifA + p));
    }
  }
  int dim() const override { return _dim; }
  std::vector<float> embed(std::string_view text) const override {
    std::vector<double> sum(static_cast<size_t>(_dim), 0.0);
    std::string w;
    each_word(text, [&](std::string_view word) {
      w.assign(word);
      if (auto it = _index.find(w); it != _index.end())
        add_row(sum, _vectors.data() + static_cast<size_t>(it->second) * _dim);
    });
    return unit(sum);
  }

 private:
  int _dim = 0;
  std::vector<float> _vectors;  // a weighted unit row per word, in the file's order
  std::unordered_map<std::string, uint32_t> _index;
};

class FastTextEmbed final : public Node {
 public:
  explicit FastTextEmbed(const NodeInit& init) {
    const std::string path = init.params.str("model");
    try {
      _model = load_fasttext(path, static_cast<size_t>(init.params.integer("max_words")));
    } catch (const std::runtime_error& e) {
      throw ParamError("model", e.what());
    }
    std::error_code ec;
    const std::string abs = fs::absolute(path, ec).lexically_normal().string();
    _spec =
        std::make_shared<const std::string>(fasttext_embedder_spec(ec ? path : abs, _model->dim()));
  }

  void process(RecordPtr in, Emitter& out) override {
    RecordPtr r = own(in);
    r->vector = _model->embed(r->text);
    r->embedder = _spec;
    out.emit(std::move(r));
  }

 private:
  std::shared_ptr<const FastTextModel> _model;
  std::shared_ptr<const std::string> _spec;
};

bool is_text(const std::string& s) {
  return s.find('\0') == std::string::npos && text::is_valid_utf8(s);
}

}  // namespace

std::shared_ptr<const FastTextModel> load_fasttext(const std::string& path, size_t max_words) {
  static std::mutex mu;
  static std::map<std::pair<std::string, size_t>, std::shared_ptr<const FastTextModel>> loaded;
  std::lock_guard lock(mu);
  const auto key = std::make_pair(path, max_words);
  if (auto it = loaded.find(key); it != loaded.end()) return it->second;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw std::runtime_error("no fastText model at \"" + path +
                             "\" (a .bin or .vec file; `sluice train-embedder DIR --out PATH` "
                             "makes one from your text)");
  std::shared_ptr<const FastTextModel> m;
  if (fs::path(path).extension() == ".vec")
    m = std::make_shared<VecModel>(path, max_words ? max_words : SIZE_MAX);
  else m = std::make_shared<BinModel>(path);
  loaded.emplace(key, m);
  return m;
}

std::string fasttext_embedder_spec(const std::string& model_path, int dim) {
  return "{\"type\":\"embed.fasttext\",\"model\":" + json::quoted(model_path) +
         ",\"dim\":" + std::to_string(dim) + "}";
}

TrainEmbedderResult train_fasttext(const TrainEmbedderOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  TrainEmbedderResult r;
  std::error_code ec;
  if (!fs::is_directory(o.dir, ec)) throw std::runtime_error("no folder at \"" + o.dir + "\"");
  r.model = o.out;
  if (fs::path(r.model).extension() != ".bin") r.model += ".bin";
  if (auto parent = fs::path(r.model).parent_path(); !parent.empty())
    fs::create_directories(parent, ec);
  const std::string corpus = r.model + ".train.txt";
  {
    std::ofstream text_out(corpus, std::ios::binary | std::ios::trunc);
    if (!text_out) throw std::runtime_error("cannot write " + corpus);
    std::vector<fs::path> files;
    for (auto it = fs::recursive_directory_iterator(o.dir, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      const std::string name = it->path().filename().string();
      if (!o.glob.empty() && fnmatch(o.glob.c_str(), name.c_str(), 0) != 0) continue;
      files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!is_text(s)) {
        ++r.skipped;
        continue;
      }
      ++r.files;
      r.bytes += s.size();
      size_t pos = 0;
      while (pos < s.size()) {
        size_t nl = s.find('\n', pos);
        if (nl == std::string::npos) nl = s.size();
        std::string line;
        each_word(std::string_view(s).substr(pos, nl - pos), [&](std::string_view w) {
          if (!line.empty()) line += ' ';
          line += w;
        });
        if (!line.empty()) text_out << line << '\n';
        pos = nl + 1;
      }
    }
  }
  if (r.files == 0) {
    fs::remove(corpus, ec);
    throw std::runtime_error("no text files under \"" + o.dir + "\"" +
                             (o.glob.empty() ? "" : " matching \"" + o.glob + "\""));
  }
  fasttext::Args a;
  a.input = corpus;
  a.output = r.model;
  a.model = fasttext::model_name::sg;
  a.loss = fasttext::loss_name::ns;
  a.dim = o.dim;
  a.epoch = o.epoch;
  a.minCount = o.min_count;
  a.bucket = 200000;  // subword buckets: 2M (fastText's default) is 800 MB at dim 100
  a.thread = o.threads > 0 ? o.threads
                           : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  a.seed = o.seed;
  a.verbose = o.verbose ? 2 : 0;
  fasttext::FastText ft;
  try {
    ft.train(a);
    ft.saveModel(r.model);
  } catch (const std::exception& e) {
    fs::remove(corpus, ec);
    throw std::runtime_error(std::string("training failed: ") + e.what());
  }
  fs::remove(corpus, ec);
  r.words = ft.getDictionary()->nwords();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

NodeTypeInfo embed_fasttext_info() {
  NodeTypeInfo info;
  info.type = "embed.fasttext";
  info.role = NodeRole::embedder;
  info.description =
      "Local embeddings from a fastText model (.bin, or .vec text vectors): the frequency-"
      "weighted average of its words' vectors. Offline; semantic as far as the model's training "
      "text taught it (`sluice train-embedder` makes one from yours).";
  info.params = {
      param("model", ParamType::string, "", "path of the .bin or .vec model"),
      with_min(param("max_words", ParamType::integer, "0",
                     "a .vec file: read only its first (most frequent) words; 0 reads all"),
               0),
  };
  info.params[0].required = true;
  info.make_node = [](const NodeInit& init) { return std::make_unique<FastTextEmbed>(init); };
  return info;
}

}  // namespace sluice
