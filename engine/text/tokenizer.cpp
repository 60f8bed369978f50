// Byte-pair encoding over a ranks file (tokenizer.hpp). PCRE2 (Debian's libpcre2, JIT) runs the
// encodings' pre-tokenizer patterns: they need Unicode properties (\p{L}, \p{N}, \p{Lu}, ...) and
// a lookahead, which std::regex lacks.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "engine/text/tokenizer.hpp"

#include <pcre2.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <queue>
#include <stdexcept>

#include <rapidjson/document.h>

namespace sluice::text {

namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();
// A ranks file bigger than this is not one (o200k_base's is 2.3 MB).
constexpr size_t kMaxRanksFile = 64u << 20;
// Pieces up to this many bytes merge by scanning for the lowest pair (quadratic, fastest for the
// short pieces text is made of); longer ones through a heap, so a 1 MB run of letters stays
// n log n.
constexpr size_t kScanMergeMax = 96;

// cl100k_base's and o200k_base's patterns as tiktoken defines them (for .tiktoken files, which
// carry no pattern); js-tiktoken's ranks modules carry the same as `pat_str`.
const char* builtin_pattern(std::string_view name) {
  if (name == "cl100k_base")
    return R"p((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)p";
  if (name == "o200k_base")
    return R"p([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)p";
  if (name == "r50k_base" || name == "p50k_base" || name == "p50k_edit" || name == "gpt2")
    return R"p('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)p";
  return nullptr;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Appends the bytes `b64` encodes to out; false when it is not base64.
bool base64_decode(std::string_view b64, std::string& out) {
  uint32_t acc = 0;
  int bits = 0;
  size_t i = 0;
  for (; i < b64.size() && b64[i] != '='; ++i) {
    const int v = base64_value(b64[i]);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  for (; i < b64.size(); ++i)
    if (b64[i] != '=') return false;
  return true;
}

// Splits s at `sep`, skipping empty fields.
template <class F>
void each_field(std::string_view s, char sep, F&& f) {
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t next = s.find(sep, pos);
    if (next == std::string_view::npos) next = s.size();
    if (next > pos) f(s.substr(pos, next - pos));
    pos = next + 1;
  }
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// One thread's PCRE2 match data and JIT stack (a deep `\s+(?!\S)` on a long run of spaces needs
// more than PCRE2's default 32 KiB machine stack).
struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* context = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(4, nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    context = pcre2_match_context_create(nullptr);
    if (!data || !stack || !context) throw std::bad_alloc();
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

std::string read_capped(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::string out;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    out.append(buf, static_cast<size_t>(in.gcount()));
    if (out.size() > kMaxRanksFile)
      throw std::runtime_error(p.string() + " is over " + std::to_string(kMaxRanksFile >> 20) +
                               " MiB: not a ranks file");
  }
  return out;
}

std::vector<std::filesystem::path> data_dirs() {
  std::vector<std::filesystem::path> dirs;
  if (const char* d = std::getenv("SLUICE_DATA_DIR"); d && *d) dirs.emplace_back(d);
#ifdef SLUICE_SOURCE_DATA_DIR
  dirs.emplace_back(SLUICE_SOURCE_DATA_DIR);
#endif
  char exe[PATH_MAX];
  if (ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1); n > 0) {
    exe[n] = '\0';
    dirs.push_back(std::filesystem::path(exe).parent_path().parent_path() / "share" / "sluice");
  }
  return dirs;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_ranks(std::string name, std::string_view file_text,
                                                 std::string pattern) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->_name = std::move(name);
  // Each token's bytes go into one buffer first (its size known only at the end), then the map's
  // keys are made over it, so no key points into a buffer that later grew.
  std::vector<std::pair<size_t, uint32_t>> ends;  // (end in _bytes, rank)
  auto add = [&](std::string_view b64, uint64_t rank, size_t line) {
    if (rank >= kNoRank)
      throw std::runtime_error(t->_name + " ranks: rank " + std::to_string(rank) +
                               " out of range on line " + std::to_string(line));
    if (!base64_decode(b64, t->_bytes))
      throw std::runtime_error(t->_name + " ranks: not base64 on line " + std::to_string(line));
    ends.emplace_back(t->_bytes.size(), static_cast<uint32_t>(rank));
  };
  auto number = [&](std::string_view s, size_t line) {
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size())
      throw std::runtime_error(t->_name + " ranks: bad rank on line " + std::to_string(line));
    return v;
  };
  const size_t brace = file_text.find('{');
  const bool js = brace != std::string_view::npos && brace < 64;
  if (js) {
    // js-tiktoken's module: `export default {"pat_str": ..., "bpe_ranks": "<label> <first rank>
    // <base64> <base64> ...\n..."}`, ranks counting up along each line.
    const size_t close = file_text.rfind('}');
    rapidjson::Document d;
    d.Parse(file_text.data() + brace, close - brace + 1);
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("bpe_ranks") ||
        !d["bpe_ranks"].IsString())
      throw std::runtime_error(t->_name +
                               " ranks: not a js-tiktoken ranks module (no \"bpe_ranks\")");
    if (pattern.empty() && d.HasMember("pat_str") && d["pat_str"].IsString())
      pattern = d["pat_str"].GetString();
    const std::string_view all(d["bpe_ranks"].GetString(), d["bpe_ranks"].GetStringLength());
    size_t line = 0;
    each_field(all, '\n', [&](std::string_view l) {
      ++line;
      size_t field = 0;
      uint64_t rank = 0;
      each_field(l, ' ', [&](std::string_view f) {
        if (field == 1) rank = number(f, line);
        if (field >= 2) add(f, rank++, line);
        ++field;
      });
    });
  } else {
    // tiktoken's own format: "<base64> <rank>" per line.
    size_t line = 0;
    each_field(file_text, '\n', [&](std::string_view l) {
      ++line;
      const size_t sp = l.find(' ');
      if (sp == std::string_view::npos)
        throw std::runtime_error(t->_name + " ranks: expected \"<base64> <rank>\" on line " +
                                 std::to_string(line));
      add(l.substr(0, sp), number(l.substr(sp + 1), line), line);
    });
  }
  t->finish(ends, std::move(pattern));
  return t;
}

void Tokenizer::finish(const std::vector<std::pair<size_t, uint32_t>>& ends, std::string pattern) {
  if (pattern.empty()) {
    const char* p = builtin_pattern(_name);
    if (!p)
      throw std::runtime_error("encoding \"" + _name +
                               "\": the ranks file has no pattern and sluice knows none for it");
    pattern = p;
  }
  _ranks.reserve(ends.size());
  size_t begin = 0;
  for (auto [end, rank] : ends) {
    _ranks.emplace(std::string_view(_bytes).substr(begin, end - begin), rank);
    begin = end;
  }
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const uint32_t r = rank_of(std::string_view(&c, 1));
    if (r == kNoRank)
      throw std::runtime_error(_name + " ranks: no token for byte " + std::to_string(b) +
                               " (every byte needs one)");
    _byte_rank[b] = r;
  }
  int err = 0;
  PCRE2_SIZE at = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, nullptr);
  if (!code)
    throw std::runtime_error("encoding \"" + _name + "\": its pattern does not compile (" +
                             pcre2_message(err) + " at offset " + std::to_string(at) + ")");
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // without JIT (unsupported CPU) it only is slower
  _code = code;
}

std::unique_ptr<Tokenizer> Tokenizer::from_tokens(std::string name,
                                                  const std::vector<std::string>& tokens,
                                                  std::string pattern) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->_name = std::move(name);
  std::vector<std::pair<size_t, uint32_t>> ends;
  for (const auto& tok : tokens) {
    t->_bytes += tok;
    ends.emplace_back(t->_bytes.size(), static_cast<uint32_t>(ends.size()));
  }
  t->finish(ends, std::move(pattern));
  return t;
}

Tokenizer::~Tokenizer() { pcre2_code_free(static_cast<pcre2_code*>(_code)); }

std::shared_ptr<const Tokenizer> Tokenizer::named(const std::string& name) {
  if (name.empty() || name.size() > 64 || !std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
      }))
    throw std::runtime_error("unknown encoding \"" + name +
                             "\" (cl100k_base or o200k_base: lowercase letters, digits, '_')");
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const Tokenizer>> loaded;
  std::lock_guard lock(mu);
  if (auto it = loaded.find(name); it != loaded.end()) return it->second;
  std::string looked;
  for (const auto& dir : data_dirs()) {
    for (const auto& rel :
         {std::filesystem::path("tokenizers") / (name + ".tiktoken"),
          std::filesystem::path("tokenizers") / (name + ".js"),
          std::filesystem::path("tokenizers/node_modules/js-tiktoken/dist/ranks") /
              (name + ".js")}) {
      const auto p = dir / rel;
      std::error_code ec;
      if (!std::filesystem::is_regular_file(p, ec)) {
        looked += "\n  " + p.string();
        continue;
      }
      std::shared_ptr<const Tokenizer> t = from_ranks(name, read_capped(p));
      loaded.emplace(name, t);
      return t;
    }
  }
  throw std::runtime_error("no ranks for encoding \"" + name + "\"; looked at:" + looked +
                           "\nhint: scripts/setup installs them (js-tiktoken's ranks, into "
                           "data/tokenizers), or set SLUICE_DATA_DIR to a folder with "
                           "tokenizers/" +
                           name + ".tiktoken");
}

std::string Tokenizer::encoding_of_model(std::string_view model) {
  if (model.starts_with("text-embedding-3-") || model == "text-embedding-ada-002")
    return "cl100k_base";
  return "";
}

uint32_t Tokenizer::rank_of(std::string_view bytes) const {
  auto it = _ranks.find(bytes);
  return it == _ranks.end() ? kNoRank : it->second;
}

template <class F>
void Tokenizer::each_piece_token(std::string_view piece, size_t at, F&& f) const {
  if (piece.size() == 1) {
    f(_byte_rank[static_cast<unsigned char>(piece[0])], at + 1);
    return;
  }
  if (uint32_t r = rank_of(piece); r != kNoRank) {
    f(r, at + piece.size());
    return;
  }
  const size_t n = piece.size();
  if (n <= kScanMergeMax) {
    // tiktoken's merge: parts[i] starts a part; rank[i] is the rank of parts i and i+1 merged.
    // Merge the lowest (leftmost on ties) until no adjacent pair is a token.
    size_t starts[kScanMergeMax + 1];
    uint32_t ranks[kScanMergeMax + 1];
    size_t parts = n + 1;
    for (size_t i = 0; i <= n; ++i) starts[i] = i;
    auto pair_rank = [&](size_t i) {
      return i + 2 < parts ? rank_of(piece.substr(starts[i], starts[i + 2] - starts[i])) : kNoRank;
    };
    for (size_t i = 0; i + 1 < parts; ++i) ranks[i] = pair_rank(i);
    for (;;) {
      size_t best = parts;
      uint32_t best_rank = kNoRank;
      for (size_t i = 0; i + 2 < parts; ++i)
        if (ranks[i] < best_rank) {
          best_rank = ranks[i];
          best = i;
        }
      if (best == parts) break;
      std::copy(starts + best + 2, starts + parts, starts + best + 1);
      std::copy(ranks + best + 2, ranks + parts, ranks + best + 1);
      --parts;
      ranks[best] = pair_rank(best);
      if (best > 0) ranks[best - 1] = pair_rank(best - 1);
    }
    for (size_t i = 0; i + 1 < parts; ++i)
      f(rank_of(piece.substr(starts[i], starts[i + 1] - starts[i])), at + starts[i + 1]);
    return;
  }
  // The same merges in n log n: parts as a linked list over their start bytes, candidate pairs
  // in a heap by (rank, start); a popped pair whose parts changed since is stale and skipped.
  std::vector<size_t> next(n + 1), prev(n + 1);
  std::vector<char> alive(n + 1, 1);
  for (size_t i = 0; i <= n; ++i) {
    next[i] = i + 1;
    prev[i] = i == 0 ? n + 1 : i - 1;
  }
  using Cand = std::pair<uint32_t, size_t>;
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto pair_rank = [&](size_t s) {
    if (s > n || next[s] >= n) return kNoRank;
    return rank_of(piece.substr(s, next[next[s]] - s));
  };
  auto push = [&](size_t s) {
    if (uint32_t r = pair_rank(s); r != kNoRank) heap.emplace(r, s);
  };
  for (size_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    auto [r, s] = heap.top();
    heap.pop();
    if (!alive[s] || pair_rank(s) != r) continue;
    const size_t gone = next[s];
    alive[gone] = 0;
    next[s] = next[gone];
    if (next[s] <= n) prev[next[s]] = s;
    if (prev[s] <= n) push(prev[s]);
    push(s);
  }
  for (size_t s = 0; s < n; s = next[s]) f(rank_of(piece.substr(s, next[s] - s)), at + next[s]);
}

template <class F>
void Tokenizer::each_token(std::string_view text, F&& f) const {
  auto* code = static_cast<pcre2_code*>(_code);
  MatchScratch& ms = scratch();
  auto bytes = [&](size_t b, size_t e) {  // what no piece covered: one token a byte
    for (size_t i = b; i < e; ++i) f(_byte_rank[static_cast<unsigned char>(text[i])], i + 1);
  };
  size_t pos = 0;
  while (pos < text.size()) {
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos, 0,
                               ms.data, ms.context);
    if (rc < 0) break;  // no match (only bytes left), or a limit hit: bytes, never a crash
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(ms.data);
    size_t b = ov[0], e = ov[1];
    bytes(pos, b);
    if (e <= b) {  // an empty match (no known pattern makes one): step one byte
      pos = b;
      bytes(pos, pos + 1);
      ++pos;
      continue;
    }
    each_piece_token(text.substr(b, e - b), b, f);
    pos = e;
  }
  bytes(pos, text.size());
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<uint32_t> out;
  out.reserve(text.size() / 4 + 1);
  each_token(text, [&](uint32_t r, size_t) { out.push_back(r); });
  return out;
}

size_t Tokenizer::count(std::string_view text) const {
  size_t n = 0;
  each_token(text, [&](uint32_t, size_t) { ++n; });
  return n;
}

void Tokenizer::ends(std::string_view text, std::vector<size_t>& out) const {
  each_token(text, [&](uint32_t, size_t e) { out.push_back(e); });
}

// ---- TokenMeasure ------------------------------------------------------------------------------
// _ends holds 0 then each token's end: token i spans [_ends[i], _ends[i+1]). A range's count is
// the tokens that start in it, so counts of adjacent ranges add up.

TokenMeasure::TokenMeasure(const Tokenizer& tok, std::string_view text) : _text(text) {
  _ends.reserve(text.size() / 3 + 2);
  _ends.push_back(0);
  tok.ends(text, _ends);
}

size_t TokenMeasure::count(size_t b, size_t e) const {
  if (b >= e) return 0;
  // Token starts are _ends[0 .. size-2].
  const auto first = std::lower_bound(_ends.begin(), _ends.end() - 1, b);
  const auto last = std::lower_bound(first, _ends.end() - 1, e);
  return static_cast<size_t>(last - first);
}

size_t TokenMeasure::advance(size_t b, size_t e, size_t n) const {
  n = std::max<size_t>(n, 1);
  const size_t first =
      static_cast<size_t>(std::lower_bound(_ends.begin(), _ends.end() - 1, b) - _ends.begin());
  size_t p = first + n < _ends.size() ? _ends[first + n] : _text.size();
  p = std::min(p, e);
  while (p > b && !is_boundary(_text, p)) --p;
  if (p <= b) p = std::min(e, advance_code_points(_text, b, 1));
  return p;
}

size_t TokenMeasure::retreat(size_t b, size_t n, size_t floor) const {
  // Starts before b: _ends[0 .. k-1].
  const size_t k =
      static_cast<size_t>(std::lower_bound(_ends.begin(), _ends.end() - 1, b) - _ends.begin());
  const size_t p = n == 0 ? b : (k >= n ? _ends[k - n] : 0);
  return std::max(p, floor);
}

}  // namespace sluice::text
