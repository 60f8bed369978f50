#include "nodes/source_lines.hpp"

namespace sluice {

ParamSpec max_line_param() {
  return with_min(param("max_line_mb", ParamType::integer, "16",
                        "a longer line is dead-lettered (with its number), not read"),
                  1);
}

size_t max_line_bytes(const Params& params) {
  return static_cast<size_t>(params.integer("max_line_mb")) << 20;
}

RecordPtr too_long_line(const LineReader& in, const std::string& path) {
  auto r = std::make_shared<Record>();
  r->id = r->doc_id = "line:" + std::to_string(in.line_number());
  r->error = "line " + std::to_string(in.line_number()) + " of \"" + path +
             "\" is longer than max_line_mb";
  return r;
}

namespace {

class LinesSource final : public Source {
 public:
  explicit LinesSource(const NodeInit& init)
      : _path(init.params.str("path")), _max_line(max_line_bytes(init.params)) {}
  void open() override { _in.open(_path, _max_line, stopping_check()); }
  RecordPtr next() override {
    std::string line;
    for (;;) {
      auto status = _in.next(line);
      if (status == LineReader::Status::end) return nullptr;
      if (status == LineReader::Status::too_long) return too_long_line(_in, _path);
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
  info.params = {required_param("path", ParamType::string, "text file to read"), max_line_param()};
  info.make_source = [](const NodeInit& init) { return std::make_unique<LinesSource>(init); };
  return info;
}

}  // namespace sluice
