#include "nodes/index_jsonl.hpp"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <unordered_set>

#include "engine/graph/batcher.hpp"
#include "engine/json/json.hpp"
#include "engine/state/file_lock.hpp"

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

namespace fs = std::filesystem;

// A regular file (or a path to be created) is written as part files and merged; /dev/null, a
// FIFO or a terminal is written directly.
bool uses_parts(const std::string& path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  return ec || !fs::exists(st) || fs::is_regular_file(st);
}

std::string parts_dir(const std::string& path) { return path + ".parts"; }
// Left in the parts directory by a fresh run: the merge then replaces PATH instead of adding to
// it, however many runs (--resume) it takes to finish.
constexpr const char* kFreshMark = ".fresh";

// The id of a line index.jsonl wrote ({"id":"...",...}), escapes kept; empty if it is not one.
std::string_view line_id(std::string_view line) {
  constexpr std::string_view head = "{\"id\":\"";
  if (line.substr(0, head.size()) != head || line.back() != '}') return {};
  for (size_t i = head.size(); i < line.size(); ++i) {
    if (line[i] == '\\') ++i;
    else if (line[i] == '"') return line.substr(head.size(), i - head.size());
  }
  return {};
}

std::string part_prefix(const ShardSpec& shard) { return shard.file_tag() + '.'; }

// Shards that share a filesystem may merge into one path at the same time: one at a time, under
// a lock file in the parts directory that the last merge removes with the directory.
constexpr const char* kMergeLock = ".merge.lock";

}  // namespace

uint64_t merge_jsonl_parts(const std::string& path, const ShardSpec& shard, bool finished) {
  const fs::path dir = parts_dir(path);
  if (!fs::is_directory(dir)) return 0;
  FileLock lock((dir / kMergeLock).string(), FileLock::Wait::block);
  // A fresh run replaces the file: it is read only when no fresh run left its mark. A fresh run
  // that did not finish must not replace an earlier file: its parts wait for the --resume that
  // finishes it. With no earlier file there is nothing to keep: merge what it did.
  const bool fresh = fs::exists(dir / kFreshMark);
  if (!finished && fresh && fs::exists(path)) return 0;
  // This shard's parts first, then what earlier merges wrote: the first copy of an id wins, so
  // a fresh run's chunks replace a previous run's.
  const std::string prefix = part_prefix(shard);
  std::vector<fs::path> parts;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (e.is_regular_file() && e.path().extension() == ".jsonl" && name.rfind(prefix, 0) == 0)
      parts.push_back(e.path());
  }
  std::sort(parts.begin(), parts.end());
  std::vector<fs::path> inputs = parts;
  if (!fresh && fs::is_regular_file(path)) inputs.emplace_back(path);

  const std::string tmp = path + ".merging";
  FILE* out = std::fopen(tmp.c_str(), "w");
  if (!out) throw std::runtime_error("cannot write \"" + tmp + "\": " + std::strerror(errno));
  std::unordered_set<std::string> seen;
  uint64_t lines = 0;
  bool ok = true;
  for (const auto& f : inputs) {
    std::ifstream in(f, std::ios::binary);
    std::string line;
    while (ok && std::getline(in, line)) {
      if (in.eof()) break;  // no newline: the torn last line of a killed writer
      std::string_view id = line_id(line);
      if (id.empty() || !seen.emplace(id).second) continue;
      line += '\n';
      ok = std::fwrite(line.data(), 1, line.size(), out) == line.size();
      ++lines;
    }
  }
  if (std::fclose(out) != 0) ok = false;
  if (!ok) {
    fs::remove(tmp);
    throw std::runtime_error("writing \"" + tmp + "\" failed: " + std::strerror(errno));
  }
  fs::rename(tmp, path);
  for (const auto& p : parts) fs::remove(p);
  // Other shards may still write parts here; a job of one shard owns the directory. The last
  // shard to merge finds only the lock and removes it with the directory (under the lock).
  if (shard.count <= 1) {
    fs::remove_all(dir);
  } else {
    bool only_lock = true;
    for (const auto& e : fs::directory_iterator(dir))
      only_lock = only_lock && e.path().filename() == kMergeLock;
    if (only_lock) {
      lock.remove_file();
      std::error_code ec;
      fs::remove(dir, ec);
    }
  }
  return lines;
}

namespace {

class JsonlIndex final : public Node {
 public:
  explicit JsonlIndex(const NodeInit& init)
      : _path(init.params.str("path")), _part_tag(part_prefix(init.shard) + init.part_tag),
        _batcher(static_cast<size_t>(init.params.integer("batch")),
                 static_cast<int>(init.params.integer("linger_ms"))) {
    if (_path.empty()) throw ParamError("path", "path must not be empty");
  }
  ~JsonlIndex() override {
    if (_file) std::fclose(_file);
  }

  void open(NodeOutput& out) override {
    Node::open(out);
    std::string target = _path;
    if (uses_parts(_path)) {
      // Each process writes its own part; the run's end (or the launcher) merges them into _path.
      fs::create_directories(parts_dir(_path));
      target = (fs::path(parts_dir(_path)) / (_part_tag + ".jsonl")).string();
    }
    _file = std::fopen(target.c_str(), "w");
    if (!_file)
      throw std::runtime_error("cannot write \"" + target + "\": " + std::strerror(errno));
  }

  // Lines are formatted in parallel (formatting 256 floats as text is most of the cost); only
  // appending to the batch and writing the file are serialized.
  void process(RecordPtr in, Emitter& out) override {
    out.defer();
    std::string line = jsonl_line(*in);
    auto full = _batcher.add(std::move(in), std::string_view(line));
    if (!full.empty()) write(full);
  }
  void flush(bool force) override {
    auto due = _batcher.take_due(force);
    if (!due.empty()) write(due);
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
  // Acknowledges after the bytes reached the kernel (fflush): a kill -9 cannot lose them.
  void write(Batcher::Batch& batch) {
    bool ok;
    std::string err;
    {
      std::lock_guard lock(_file_mu);
      const std::string& buf = batch.text;
      ok = std::fwrite(buf.data(), 1, buf.size(), _file) == buf.size() && std::fflush(_file) == 0;
      if (!ok) err = std::string("write failed: ") + std::strerror(errno);
    }
    for (const auto& r : batch.items) {
      if (ok) _output->finish(r, Outcome::indexed);
      else _output->finish(r, Outcome::dead_lettered, err);
    }
    if (!ok) _output->fail_run("\"" + _path + "\": " + err);
    _batcher.recycle(std::move(batch.text));
  }

  std::string _path;
  std::string _part_tag;
  Batcher _batcher;
  std::mutex _file_mu;
  FILE* _file = nullptr;
};

}  // namespace

NodeTypeInfo index_jsonl_info() {
  NodeTypeInfo info;
  info.type = "index.jsonl";
  info.role = NodeRole::sink;
  info.description = "Writes one JSON object per record (id, doc_id, seq, text, meta, vector if "
                     "present) to a file. "
                     "Each process writes a part file under PATH.parts/; the end of the run merges "
                     "them into PATH with "
                     "each chunk id once, so many processes and a resume after kill -9 end as one "
                     "file. A fresh run replaces PATH once it finishes (a failed or interrupted "
                     "one keeps an earlier PATH whole, its lines waiting for --resume); --resume "
                     "adds to it.";
  info.params = {
      required_param("path", ParamType::string, "output file (/dev/null to discard)"),
      with_min(param("batch", ParamType::integer, "256", "records per write"), 1),
      with_min(
          param("linger_ms", ParamType::integer, "50", "write a partial batch after this long"), 0),
  };
  info.default_concurrency = 0;  // lines are formatted in parallel; writes are serialized
  info.make_node = [](const NodeInit& init) { return std::make_unique<JsonlIndex>(init); };
  info.reset_outputs = [](const Params& p, const ShardSpec& shard) {
    std::string path = p.str("path");
    if (!uses_parts(path)) return;
    if (shard.count <= 1) {
      // PATH itself stays until this run's merge replaces it: a run that fails keeps it whole.
      fs::remove_all(parts_dir(path));
      fs::create_directories(parts_dir(path));
      std::ofstream(fs::path(parts_dir(path)) / kFreshMark)
          << "a fresh run: its merge replaces " << path << "\n";
      return;
    }
    // Shards sharing the path: forget only this shard's parts; the merged file is everyone's.
    std::error_code ec;
    const std::string prefix = part_prefix(shard);
    for (const auto& e : fs::directory_iterator(parts_dir(path), ec))
      if (e.path().filename().string().rfind(prefix, 0) == 0) fs::remove(e.path());
  };
  info.merge_outputs = [](const Params& p, const ShardSpec& shard, bool finished) {
    merge_jsonl_parts(p.str("path"), shard, finished);
  };
  info.output_file = [](const Params& p) { return p.str("path"); };
  return info;
}

}  // namespace sluice
