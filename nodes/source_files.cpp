#include "nodes/source_files.hpp"

#include "engine/json/value.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/text/text.hpp"
#include "nodes/source_jsonl.hpp"

namespace sluice {

namespace {

namespace fs = std::filesystem;

std::string lower_ext(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  return e;
}

class FilesSource final : public Source {
 public:
  explicit FilesSource(const NodeInit& init)
      : _dir(init.params.str("dir")), _glob(init.params.str("glob")),
        _recursive(init.params.boolean("recursive")), _id_field(init.params.str("id_field")),
        _text_field(init.params.str("text_field")),
        _max_bytes(static_cast<uint64_t>(init.params.integer("max_file_mb")) << 20) {}

  void open() override {
    std::error_code ec;
    if (!fs::is_directory(_dir, ec))
      throw std::runtime_error("directory \"" + _dir + "\" does not exist or is not a directory");
    const bool match_path = _glob.find('/') != std::string::npos;
    auto consider = [&](const fs::directory_entry& e) {
      if (!e.is_regular_file()) return;
      std::string rel = fs::relative(e.path(), _dir).generic_string();
      std::string subject = match_path ? rel : e.path().filename().string();
      if (fnmatch(_glob.c_str(), subject.c_str(), 0) == 0) _files.push_back(rel);
    };
    if (_recursive) {
      for (const auto& e : fs::recursive_directory_iterator(
               _dir, fs::directory_options::skip_permission_denied, ec))
        consider(e);
    } else {
      for (const auto& e : fs::directory_iterator(_dir, ec)) consider(e);
    }
    if (ec) throw std::runtime_error("cannot list \"" + _dir + "\": " + ec.message());
    std::sort(_files.begin(), _files.end());  // deterministic order and ids
  }

  std::optional<uint64_t> total() const override {
    // Known when no file expands into several documents.
    for (const auto& f : _files) {
      std::string e = lower_ext(f);
      if (e == ".json" || e == ".jsonl" || e == ".ndjson") return std::nullopt;
    }
    return _files.size();
  }

  RecordPtr next() override {
    for (;;) {
      if (_pending_pos < _pending.size()) return std::move(_pending[_pending_pos++]);
      _pending.clear();
      _pending_pos = 0;
      if (_next_file >= _files.size()) return nullptr;
      load(_files[_next_file++]);
    }
  }

 private:
  void load(const std::string& rel) {
    fs::path full = fs::path(_dir) / rel;
    std::string ext = lower_ext(full);
    auto fail = [&](std::string why) {
      auto r = std::make_shared<Record>();
      r->id = r->doc_id = rel;
      r->meta.set_string("path", rel);
      r->error = std::move(why);
      _pending.push_back(std::move(r));
    };
    // A file that is one document (not json/jsonl) is skipped unread when it is not wanted.
    if (ext != ".jsonl" && ext != ".ndjson" && ext != ".json" && !wanted(rel)) return;
    std::error_code ec;
    uint64_t size = fs::file_size(full, ec);
    if (ec) return fail("cannot stat: " + ec.message());
    if (size > _max_bytes) return fail("file is larger than max_file_mb");
    std::ifstream in(full, std::ios::binary);
    if (!in) return fail("cannot open file");
    std::string data(size, '\0');
    in.read(data.data(), static_cast<std::streamsize>(size));
    data.resize(static_cast<size_t>(in.gcount()));

    if (ext == ".jsonl" || ext == ".ndjson") {
      size_t line_no = 0, pos = 0;
      while (pos < data.size()) {
        size_t nl = data.find('\n', pos);
        if (nl == std::string::npos) nl = data.size();
        ++line_no;
        std::string_view line(data.data() + pos, nl - pos);
        pos = nl + 1;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        auto r =
            record_from_json(line, rel + ":" + std::to_string(line_no), _id_field, _text_field);
        r->meta.set_string("path", rel);
        _pending.push_back(std::move(r));
      }
      return;
    }
    if (ext == ".json") {
      rapidjson::Document d;
      if (!parse_untrusted(d, data)) return fail("malformed JSON");
      auto add = [&](const rapidjson::Value& v, const std::string& fallback) {
        auto r = record_from_json(json_text(v), fallback, _id_field, _text_field);
        r->meta.set_string("path", rel);
        _pending.push_back(std::move(r));
      };
      if (d.IsArray()) {
        for (rapidjson::SizeType i = 0; i < d.Size(); ++i) add(d[i], rel + ":" + std::to_string(i));
      } else {
        add(d, rel);
      }
      return;
    }
    auto r = std::make_shared<Record>();
    r->id = r->doc_id = rel;
    r->meta.set_string("path", rel);
    if (!text::is_valid_utf8(data)) data = text::sanitize_utf8(data);
    if (ext == ".html" || ext == ".htm" || ext == ".xhtml") {
      r->text = text::html_to_text(data);
    } else {
      r->text = std::move(data);
    }
    _pending.push_back(std::move(r));
  }

  std::string _dir, _glob;
  bool _recursive;
  std::string _id_field, _text_field;
  uint64_t _max_bytes;
  std::vector<std::string> _files;
  size_t _next_file = 0;
  std::vector<RecordPtr> _pending;
  size_t _pending_pos = 0;
};

}  // namespace

NodeTypeInfo source_files_info() {
  NodeTypeInfo info;
  info.type = "source.files";
  info.role = NodeRole::source;
  info.description =
      "Documents from files under a directory, in sorted path order. .html/.htm: tags stripped; "
      ".json (object or array) and .jsonl: one document per object; anything else: text as is. "
      "Document id = path relative to dir (path:N for JSON items without an id).";
  info.params = {
      required_param("dir", ParamType::string, "directory to read"),
      param("glob", ParamType::string, "\"*\"",
            "fnmatch pattern on the file name (on the relative path if it contains '/')"),
      param("recursive", ParamType::boolean, "true", "descend into subdirectories"),
      param("text_field", ParamType::string, "\"text\"", "JSON files: field holding the text"),
      param("id_field", ParamType::string, "\"id\"", "JSON files: field holding the document id"),
      with_min(param("max_file_mb", ParamType::integer, "64",
                     "larger files are dead-lettered instead of read"),
               1),
  };
  info.make_source = [](const NodeInit& init) { return std::make_unique<FilesSource>(init); };
  return info;
}

}  // namespace sluice
