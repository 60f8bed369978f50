#include "nodes/index_jsonl.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "engine/batcher.hpp"
#include "engine/json.hpp"

namespace sluice {

std::string jsonl_line(const Record& r) {
  std::string line;
  line.reserve(r.text.size() + 64 + r.vector.size() * 12);
  line += "{\"id\":";
  json::append_quoted(line, r.id);
  line += ",\"doc_id\":";
  json::append_quoted(line, r.doc_id);
  line += ",\"seq\":" + std::to_string(r.seq) + ",\"text\":";
  json::append_quoted(line, r.text);
  line += ",\"meta\":" + r.meta.to_json();
  if (!r.vector.empty()) {
    line += ",\"vector\":";
    json::append_floats(line, r.vector);
  }
  line += "}\n";
  return line;
}

namespace {

class JsonlIndex final : public Node {
 public:
  explicit JsonlIndex(const NodeInit& init)
      : _path(init.params.str("path")),
        _batcher(static_cast<size_t>(init.params.integer("batch")), static_cast<int>(init.params.integer("linger_ms"))) {
    if (_path.empty()) throw ParamError("path", "path must not be empty");
  }
  ~JsonlIndex() override {
    if (_file) std::fclose(_file);
  }

  void open(NodeOutput& out) override {
    Node::open(out);
    std::filesystem::path p(_path);
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    _file = std::fopen(_path.c_str(), "w");
    if (!_file) throw std::runtime_error("cannot write \"" + _path + "\": " + std::strerror(errno));
  }

  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    auto batch = _batcher.add(std::move(in));
    if (!batch.empty()) write(batch);
  }
  void flush(bool force) override {
    auto batch = _batcher.take_due(force);
    if (!batch.empty()) write(batch);
  }
  bool has_pending() const override { return _batcher.pending(); }
  void close() override {
    if (_file && std::fclose(_file) != 0) {
      _file = nullptr;
      throw std::runtime_error("closing \"" + _path + "\" failed: " + std::strerror(errno));
    }
    _file = nullptr;
  }

 private:
  void write(std::vector<RecordPtr>& batch) {
    std::lock_guard lock(_mu);
    std::string buf;
    for (const auto& r : batch) buf += jsonl_line(*r);
    bool ok = std::fwrite(buf.data(), 1, buf.size(), _file) == buf.size() && std::fflush(_file) == 0;
    std::string err = ok ? "" : std::string("write failed: ") + std::strerror(errno);
    for (const auto& r : batch) {
      if (ok) _output->finish(r, Outcome::indexed);
      else _output->finish(r, Outcome::dead_lettered, err);
    }
    if (!ok) _output->fail_run("\"" + _path + "\": " + err);
  }

  std::string _path;
  Batcher _batcher;
  std::mutex _mu;
  FILE* _file = nullptr;
};

}  // namespace

NodeTypeInfo index_jsonl_info() {
  NodeTypeInfo info;
  info.type = "index.jsonl";
  info.role = NodeRole::sink;
  info.description =
      "Writes one JSON object per record (id, doc_id, seq, text, meta, vector if present) to a file, "
      "replacing the file at the start of the run.";
  info.params = {
      required_param("path", ParamType::string, "output file (/dev/null to discard)"),
      with_min(param("batch", ParamType::integer, "256", "records per write"), 1),
      with_min(param("linger_ms", ParamType::integer, "50", "write a partial batch after this long"), 0),
  };
  info.default_concurrency = 1;
  info.make_node = [](const NodeInit& init) { return std::make_unique<JsonlIndex>(init); };
  return info;
}

}  // namespace sluice
