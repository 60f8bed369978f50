#include "tests/test_util.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace sluice::test {

namespace fs = std::filesystem;

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  _path =
      fs::temp_directory_path() / ("sluice-test-" + std::to_string(getpid()) + "-" +
                                   std::to_string(counter++) + "-" + std::to_string(rd() % 100000));
  fs::create_directories(_path);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(_path, ec);
}

std::string source_dir() { return SLUICE_SOURCE_DIR; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) {
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(line);
  return lines;
}

GraphSpec spec_from(const std::string& json, const Registry& reg,
                    const std::vector<VarOverride>& overrides) {
  return parse_graph(json, "test.json", overrides, reg);
}

RunReport run_json(const std::string& json, int threads, const Registry& reg) {
  GraphSpec spec = spec_from(json, reg);
  RunOptions opts;
  opts.threads = threads;
  return run_graph(spec, opts);
}

RunReport run_with_events(const GraphSpec& spec, const TempDir& dir,
                          std::vector<std::string>& progress) {
  const std::string path = dir / "events.jsonl";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  RunOptions opts;
  opts.events_interval_s = 0.01;
  opts.events_fd = fd;
  RunReport rep = run_graph(spec, opts);
  ::close(fd);
  progress.clear();
  for (auto& line : read_lines(path))
    if (line.find("\"event\":\"progress\"") != std::string::npos) progress.push_back(line);
  return rep;
}

std::string config_errors(const std::string& json, const Registry& reg,
                          const std::vector<VarOverride>& overrides) {
  try {
    parse_graph(json, "test.json", overrides, reg);
    return "";
  } catch (const ConfigError& e) {
    return e.text;
  }
}

std::string ids_file(const TempDir& dir, int n, const std::vector<std::string>& extra) {
  std::string text;
  char buf[32];
  for (int i = 1; i <= n; ++i) {
    std::snprintf(buf, sizeof buf, "doc-%06d\n", i);
    text += buf;
  }
  for (const auto& e : extra) text += e + "\n";
  write_file(dir / "ids.txt", text);
  return dir / "ids.txt";
}

CommandResult run_sluice(const std::string& args, const std::string& cwd) {
  TempDir tmp;
  std::string out = tmp / "stdout", err = tmp / "stderr";
  std::string cmd = "cd '" + (cwd.empty() ? source_dir() : cwd) + "' && '" +
                    std::string(SLUICE_BIN) + "' " + args + " </dev/null >'" + out + "' 2>'" + err +
                    "'";
  int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

void align_to_second() {
  using namespace std::chrono_literals;
  const auto into = std::chrono::system_clock::now().time_since_epoch() % 1s;
  std::this_thread::sleep_for(1s - into + 5ms);
}

}  // namespace sluice::test
