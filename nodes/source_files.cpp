#include "nodes/source_files.hpp"

#include "engine/json/value.hpp"

#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "engine/text/text.hpp"
#include "nodes/document.hpp"
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
        _text_field(init.params.str("text_field")), _template(text_template_param(init.params)),
        _max_bytes(static_cast<uint64_t>(init.params.integer("max_file_mb")) << 20),
        _links(init.params.str("links")) {}

  void open() override {
    std::error_code ec;
    if (!fs::is_directory(_dir, ec))
      throw std::runtime_error("directory \"" + _dir + "\" does not exist or is not a directory");
    _root = fs::canonical(_dir, ec);
    if (ec) throw std::runtime_error("cannot resolve \"" + _dir + "\": " + ec.message());
    walk();
    // Deterministic order and ids.
    std::sort(_entries.begin(), _entries.end(),
              [](const Entry& a, const Entry& b) { return a.rel < b.rel; });
    // Known when no file expands into several documents.
    _total = _entries.size();
    for (const auto& f : _entries) {
      std::string e = lower_ext(f.rel);
      if (e == ".json" || e == ".jsonl" || e == ".ndjson") _total.reset();
    }
  }

  std::optional<uint64_t> total() const override { return _total; }

  RecordPtr next() override {
    for (;;) {
      if (_pending_pos < _pending.size()) return std::move(_pending[_pending_pos++]);
      _pending.clear();
      _pending_pos = 0;
      if (_next_file >= _entries.size()) return nullptr;
      const Entry& e = _entries[_next_file++];
      if (e.error.empty()) {
        load(e.rel);
      } else {
        fail(e.rel, e.error);
      }
    }
  }

 private:
  // One listed path under dir: a file to read, or an entry that could not be listed or read
  // (dead-lettered under its path with `error`, so the run goes on and the report counts it).
  struct Entry {
    std::string rel;
    std::string error;
  };

  // Lists dir; only dir itself failing to list throws. Ids are the listed path under dir, never
  // a link's target. Links are followed while their target stays inside dir ("inside", the
  // default), always ("all") or never ("none"). Real subdirectories are listed first; a
  // directory reached through a link is then listed only if it was not listed already (so a
  // link loop ends, and ids do not depend on the order the file system lists entries in).
  void walk() {
    std::set<std::pair<dev_t, ino_t>> seen_dirs;
    auto first_visit = [&](const fs::path& p) {
      struct stat st {};
      return ::stat(p.c_str(), &st) == 0 && seen_dirs.emplace(st.st_dev, st.st_ino).second;
    };
    const bool match_path = _glob.find('/') != std::string::npos;
    // rel ("" for dir itself, else "sub/") -> path; ordered, so links are taken in path order.
    std::vector<std::pair<std::string, fs::path>> todo{{"", fs::path(_dir)}};
    std::map<std::string, fs::path> linked_dirs;
    first_visit(_root);
    for (;;) {
      if (todo.empty()) {
        if (linked_dirs.empty()) break;
        auto first = linked_dirs.begin();
        if (first_visit(first->second)) todo.emplace_back(first->first, first->second);
        linked_dirs.erase(first);
        continue;
      }
      auto [dir_rel, dir_path] = std::move(todo.back());
      todo.pop_back();
      std::error_code ec;
      fs::directory_iterator it(dir_path, ec);
      for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const fs::directory_entry& e = *it;
        std::string name = e.path().filename().string();
        std::string rel = dir_rel + name;
        std::error_code sec;
        bool is_link = fs::is_symlink(e.symlink_status(sec));
        if (is_link && _links == "none") continue;
        fs::file_status st = e.status(sec);
        if (sec) {
          if (matches(rel, name, match_path))
            _entries.push_back(
                {rel, (is_link ? "broken symlink: " : "cannot stat: ") + sec.message()});
          continue;
        }
        if (is_link && _links == "inside" && !inside_root(e.path())) {
          if (matches(rel, name, match_path))
            _entries.push_back(
                {rel, "symlink leads outside dir; set \"links\": \"all\" to follow it"});
          continue;
        }
        if (fs::is_directory(st)) {
          if (!_recursive) continue;
          if (is_link) {
            linked_dirs.emplace(rel + "/", e.path());
          } else if (first_visit(e.path())) {
            todo.emplace_back(rel + "/", e.path());
          }
          continue;
        }
        if (!matches(rel, name, match_path)) continue;
        _entries.push_back({rel, fs::is_regular_file(st) ? "" : "not a regular file"});
      }
      if (ec) {
        if (dir_rel.empty())
          throw std::runtime_error("cannot list \"" + _dir + "\": " + ec.message());
        _entries.push_back({dir_rel, "cannot list directory: " + ec.message()});
      }
    }
  }

  bool matches(const std::string& rel, const std::string& name, bool match_path) const {
    const std::string& subject = match_path ? rel : name;
    return fnmatch(_glob.c_str(), subject.c_str(), 0) == 0;
  }

  bool inside_root(const fs::path& p) const {
    std::error_code ec;
    fs::path target = fs::canonical(p, ec);
    if (ec) return false;
    auto [r, t] = std::mismatch(_root.begin(), _root.end(), target.begin(), target.end());
    return r == _root.end();
  }

  void fail(const std::string& rel, std::string why) {
    auto r = std::make_shared<Record>();
    r->id = r->doc_id = rel;
    r->meta.set_string("path", rel);
    r->error = std::move(why);
    _pending.push_back(std::move(r));
  }

  void load(const std::string& rel) {
    fs::path full = fs::path(_dir) / rel;
    std::string ext = lower_ext(full);
    auto fail = [&](std::string why) { this->fail(rel, std::move(why)); };
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
    if (in.bad()) return fail("read error");
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
        auto r = record_from_json(line, rel + ":" + std::to_string(line_no), _id_field, _text_field,
                                  _template ? &*_template : nullptr);
        r->meta.set_string("path", rel);
        _pending.push_back(std::move(r));
      }
      return;
    }
    if (ext == ".json") {
      rapidjson::Document d;
      if (!parse_untrusted(d, data)) return fail("malformed JSON");
      auto add = [&](const rapidjson::Value& v, const std::string& fallback) {
        auto r = record_from_json(json_text(v), fallback, _id_field, _text_field,
                                  _template ? &*_template : nullptr);
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
    const doc::Format format = doc::detect(rel, "", data);
    switch (format) {
      case doc::Format::pdf:
      case doc::Format::binary:
        // No text without an extractor: the bytes go on in the body for extract.auto, and a
        // chunker or embedder reached with nothing else dead-letters the document.
        r->meta.set_string("content_type", format == doc::Format::pdf ? "application/pdf"
                                                                      : "application/octet-stream");
        r->body = std::move(data);
        break;
      case doc::Format::html:
        // The tags stripped for a graph without an extractor; the page as it is for one with.
        if (!text::is_valid_utf8(data)) data = text::sanitize_utf8(data);
        r->text = text::html_to_text(data);
        r->body = std::move(data);
        break;
      case doc::Format::markdown:
      case doc::Format::text:
        if (!text::is_valid_utf8(data)) data = text::sanitize_utf8(data);
        r->text = std::move(data);
        break;
    }
    _pending.push_back(std::move(r));
  }

  std::string _dir, _glob;
  bool _recursive;
  std::string _id_field, _text_field;
  std::optional<TextTemplate> _template;
  uint64_t _max_bytes;
  std::string _links;
  fs::path _root;  // dir, canonical
  std::vector<Entry> _entries;
  std::optional<uint64_t> _total;  // set by open()
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
      "Documents from files under a directory, in sorted path order. .json (object or array) "
      "and .jsonl: one document per object. HTML: the tags stripped in the text, the page as it "
      "is in the body (for extract.auto). PDF and other binary content (NUL bytes, invalid "
      "UTF-8): no text, the bytes in the body and meta.content_type, for extract.auto; a "
      "chunker or embedder it reaches without one dead-letters it. Anything else: text as is. "
      "Document id = the listed path under dir (path:N for JSON items without an id). Entries "
      "that cannot be read (broken links, unreadable files or subdirectories) are dead-lettered "
      "and the run goes on.";
  info.params = {
      required_param("dir", ParamType::string, "directory to read"),
      param("glob", ParamType::string, "\"*\"",
            "fnmatch pattern on the file name (on the relative path if it contains '/')"),
      param("recursive", ParamType::boolean, "true", "descend into subdirectories"),
      param("text_field", ParamType::string, "\"text\"", "JSON files: field holding the text"),
      param("text_template", ParamType::string, "null", "JSON files: " + text_template_doc()),
      param("id_field", ParamType::string, "\"id\"", "JSON files: field holding the document id"),
      with_choices(param("links", ParamType::string, "\"inside\"",
                         "symlinks: \"inside\" follows those whose target is under dir and "
                         "dead-letters the rest, \"all\" follows every one, \"none\" skips "
                         "them"),
                   {"inside", "all", "none"}),
      with_min(param("max_file_mb", ParamType::integer, "64",
                     "larger files are dead-lettered instead of read"),
               1),
  };
  info.make_source = [](const NodeInit& init) { return std::make_unique<FilesSource>(init); };
  return info;
}

}  // namespace sluice
