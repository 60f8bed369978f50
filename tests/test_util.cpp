#include "tests/test_util.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
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

std::string make_pdf(const std::vector<std::vector<std::string>>& pages, const std::string& title) {
  auto literal = [](const std::string& s) {
    std::string out = "(";
    for (char c : s) {
      if (c == '(' || c == ')' || c == '\\') out += '\\';
      out += c;
    }
    return out + ")";
  };
  // Objects: 1 catalog, 2 pages, 3 font, 4 info, then a page and its content per page.
  std::vector<std::string> objects(4);
  std::string kids;
  for (size_t i = 0; i < pages.size(); ++i) {
    const size_t page = 5 + 2 * i, content = page + 1;
    kids += std::to_string(page) + " 0 R ";
    std::string stream = "BT /F1 12 Tf 14 TL 72 720 Td";
    for (const auto& line : pages[i]) stream += " " + literal(line) + " Tj T*";
    stream += " ET";
    objects.push_back("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents " +
                      std::to_string(content) + " 0 R /Resources << /Font << /F1 3 0 R >> >> >>");
    objects.push_back("<< /Length " + std::to_string(stream.size()) + " >>\nstream\n" + stream +
                      "\nendstream");
  }
  objects[0] = "<< /Type /Catalog /Pages 2 0 R >>";
  objects[1] =
      "<< /Type /Pages /Kids [" + kids + "] /Count " + std::to_string(pages.size()) + " >>";
  objects[2] = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>";
  objects[3] = "<< /Title " + literal(title) + " >>";
  std::string pdf = "%PDF-1.4\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (size_t off : offsets) {
    char entry[32];
    std::snprintf(entry, sizeof entry, "%010zu 00000 n \n", off);
    pdf += entry;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) +
         " /Root 1 0 R /Info 4 0 R >>\nstartxref\n" + std::to_string(xref) + "\n%%EOF\n";
  return pdf;
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

int64_t sql_int(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, sql.c_str(), -1, &s, nullptr);
  int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  sqlite3_close(h);
  return v;
}

namespace {

size_t append_body(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

}  // namespace

Got http_get(const std::string& url, bool head) {
  Got g;
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &g.body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (head) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &g.status);
    char* ct = nullptr;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ct) g.content_type = ct;
  }
  curl_easy_cleanup(c);
  return g;
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

double metric_value(const std::string& text, const std::string& series) {
  const std::string key = series + " ";
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1))
    if (at == 0 || text[at - 1] == '\n')
      return std::strtod(text.c_str() + at + key.size(), nullptr);
  return -1;
}

}  // namespace sluice::test
