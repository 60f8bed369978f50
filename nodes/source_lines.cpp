#include "nodes/source_lines.hpp"

#include <fstream>

namespace sluice {

namespace {

class LinesSource final : public Source {
 public:
  explicit LinesSource(const NodeInit& init) : _path(init.params.str("path")) {}
  void open() override {
    _in.open(_path);
    if (!_in) throw std::runtime_error("cannot open \"" + _path + "\"");
  }
  RecordPtr next() override {
    std::string line;
    while (std::getline(_in, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
        line.pop_back();
      size_t start = line.find_first_not_of(" \t");
      if (start == std::string::npos || line[start] == '#') continue;
      auto r = std::make_shared<Record>();
      r->id = r->doc_id = line.substr(start);
      r->text = r->id;
      return r;
    }
    return nullptr;
  }

 private:
  std::string _path;
  std::ifstream _in;
};

}  // namespace

NodeTypeInfo source_lines_info() {
  NodeTypeInfo info;
  info.type = "source.lines";
  info.role = NodeRole::source;
  info.description = "One document per non-empty line of a file (lines starting with # are "
                     "skipped); id and text are the "
                     "line, e.g. a URL or an id for fetch.http's {id}.";
  info.params = {required_param("path", ParamType::string, "text file to read")};
  info.make_source = [](const NodeInit& init) { return std::make_unique<LinesSource>(init); };
  return info;
}

}  // namespace sluice
