#include "nodes/source_lines.hpp"

#include "engine/text/line_reader.hpp"

namespace sluice {

namespace {

class LinesSource final : public Source {
 public:
  explicit LinesSource(const NodeInit& init)
      : _path(init.params.str("path")),
        _max_line(static_cast<size_t>(init.params.integer("max_line_mb")) << 20) {}
  void open() override { _in.open(_path, _max_line); }
  RecordPtr next() override {
    std::string line;
    for (;;) {
      auto status = _in.next(line);
      if (status == LineReader::Status::end) return nullptr;
      if (status == LineReader::Status::too_long) {
        auto r = std::make_shared<Record>();
        r->id = r->doc_id = "line:" + std::to_string(_in.line_number());
        r->error = "line " + std::to_string(_in.line_number()) + " of \"" + _path +
                   "\" is longer than max_line_mb";
        return r;
      }
      while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
      size_t start = line.find_first_not_of(" \t");
      if (start == std::string::npos || line[start] == '#') continue;
      auto r = std::make_shared<Record>();
      r->id = r->doc_id = line.substr(start);
      r->text = r->id;
      return r;
    }
  }

 private:
  std::string _path;
  size_t _max_line;
  LineReader _in;
};

}  // namespace

NodeTypeInfo source_lines_info() {
  NodeTypeInfo info;
  info.type = "source.lines";
  info.role = NodeRole::source;
  info.description = "One document per non-empty line of a file (lines starting with # are "
                     "skipped); id and text are the "
                     "line, e.g. a URL or an id for fetch.http's {id}.";
  info.params = {required_param("path", ParamType::string, "text file to read"),
                 with_min(param("max_line_mb", ParamType::integer, "16",
                                "a longer line is dead-lettered (with its number), not read"),
                          1)};
  info.make_source = [](const NodeInit& init) { return std::make_unique<LinesSource>(init); };
  return info;
}

}  // namespace sluice
