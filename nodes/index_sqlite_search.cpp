// `sluice search` over an index.sqlite file: BM25 through FTS5, vectors by brute force, and
// their weighted fusion.
#include "nodes/index_sqlite_search.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <unordered_set>

#include <rapidjson/document.h>

#include "engine/vector/float16.hpp"
#include "nodes/embed_fasttext.hpp"
#include "nodes/embed_hash.hpp"
#include "nodes/index_sqlite_ann.hpp"
#include "nodes/index_sqlite_bm25.hpp"
#include "nodes/index_sqlite_db.hpp"

namespace sluice {

namespace {

using namespace sqlite_index;
using sqlite::column_text;

std::string fts_query(const std::string& q, std::string* note,
                      std::vector<std::string>* words_out = nullptr, bool* phrase_out = nullptr) {
  // A query in double quotes is a phrase; otherwise any of its words (BM25 ranks documents
  // with more of them first). Words are quoted so FTS5 syntax characters cannot break the query.
  // Repeated words are searched once and at most kMaxQueryTerms: FTS5's cost grows with the
  // product of a query's terms and their matches, so 200 x "the" took 16 s.
  std::string t = q;
  while (!t.empty() && t.back() == ' ') t.pop_back();
  const bool phrase = t.size() >= 2 && t.front() == '"' && t.back() == '"';
  std::vector<std::string> words;
  std::set<std::string> seen;
  size_t distinct = 0;
  std::string cur;
  auto add = [&](std::string w) {
    std::string key = w;
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    // A phrase keeps its repeats ("the ... the"): they are part of what it matches.
    if (!seen.insert(key).second && !phrase) return;
    ++distinct;
    if (words.size() < kMaxQueryTerms) words.push_back(std::move(w));
  };
  for (unsigned char c : t) {
    if (std::isalnum(c) || c >= 0x80) {
      cur += static_cast<char>(c);
    } else if (!cur.empty()) {
      add(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) add(std::move(cur));
  if (words_out) *words_out = words;
  if (phrase_out) *phrase_out = phrase;
  if (note && distinct > words.size())
    *note = "the query has " + std::to_string(distinct) + (phrase ? "" : " distinct") +
            " words; searched the first " + std::to_string(words.size());
  std::string out;
  if (phrase) {
    out = "\"";
    for (size_t i = 0; i < words.size(); ++i) out += (i ? " " : "") + words[i];
    return out + "\"";
  }
  for (size_t i = 0; i < words.size(); ++i) out += (i ? " OR \"" : "\"") + words[i] + "\"";
  return out;
}

// Top k by the index's bm25 postings, when it has current ones and every word of the query is
// one FTS5 token (else a phrase, which needs positions: nullopt, and FTS5 answers).
std::optional<std::vector<SearchHit>> postings_top(Db& db, const std::string& db_path,
                                                   const std::vector<std::string>& words,
                                                   const std::string& fts, int k,
                                                   std::string* note) {
  std::string why;
  auto p = open_bm25(db, db_path, &why);
  if (!p) {
    // An index that has postings but cannot use them now: say why FTS5 answered (slower).
    if (note && !why.empty() && note->empty())
      *note = why + ": FTS5 ranked every match; `sluice build-search " + db_path +
              "` writes them again (as does the end of a run whose sink keeps them)";
    return std::nullopt;
  }
  Fts5Tokens tokens(db.get());
  std::vector<std::string> terms;
  for (const auto& w : words) {
    int n = 0;
    tokens.each(w, true, [&](std::string_view t) {
      if (++n == 1 && std::find(terms.begin(), terms.end(), t) == terms.end())
        terms.emplace_back(t);
    });
    if (n > 1) return std::nullopt;
  }
  std::vector<SearchHit> hits;
  sqlite3_stmt* s = db.prepare("SELECT c.id, c.doc_id, snippet(chunks_fts, 0, '[', ']', '...', 16) "
                               "FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid "
                               "WHERE chunks_fts MATCH ?1 AND chunks_fts.rowid = ?2");
  for (const auto& [score, rowid] : p->search(terms, static_cast<size_t>(k))) {
    sqlite3_bind_text(s, 1, fts.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, rowid);
    if (db.step(s) == SQLITE_ROW) {
      SearchHit h;
      h.id = column_text(s, 0);
      h.doc_id = column_text(s, 1);
      h.score = score;
      h.snippet = column_text(s, 2);
      hits.push_back(std::move(h));
    }
    sqlite3_reset(s);
  }
  return hits;
}

std::vector<SearchHit> bm25(Db& db, const std::string& db_path, const std::string& query, int k,
                            std::string* note, bool exact = false) {
  std::vector<SearchHit> hits;
  std::vector<std::string> words;
  bool phrase = false;
  std::string q = fts_query(query, note, &words, &phrase);
  if (q.empty() || q == "\"\"") return hits;
  if (!phrase && !exact)
    if (auto top = postings_top(db, db_path, words, q, k, note)) return *top;
  sqlite3_stmt* s = db.prepare("SELECT c.id, c.doc_id, -bm25(chunks_fts) AS score, "
                               "snippet(chunks_fts, 0, '[', ']', '...', 16) "
                               "FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid "
                               "WHERE chunks_fts MATCH ?1 ORDER BY bm25(chunks_fts) LIMIT ?2");
  sqlite3_bind_text(s, 1, q.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(s, 2, k);
  while (db.step(s) == SQLITE_ROW) {  // an error (a damaged file) throws, never "no results"
    SearchHit h;
    h.id = column_text(s, 0);
    h.doc_id = column_text(s, 1);
    h.score = sqlite3_column_double(s, 2);
    h.snippet = column_text(s, 3);
    hits.push_back(std::move(h));
  }
  sqlite3_reset(s);
  return hits;
}

std::string short_snippet(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  if (s.size() > 160) {
    size_t cut = 160;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s = s.substr(0, cut) + "...";
  }
  return s;
}

// The query's vector, from the embedder the index records.
std::vector<float> embed_query(const IndexEmbedder& e, const std::string& query,
                               const QueryEmbedder& embed) {
  std::vector<float> q;
  if (e.type == "embed.hash") {
    q = hash_embed(query, e.dim);
  } else if (e.type == "embed.fasttext") {
    // The model the index names, loaded as the node loaded it (a missing or foreign file is an
    // error naming it; libfasttext checks a .bin's magic number and version first).
    q = load_fasttext(e.model)->embed(query);
  } else if (embed) {
    q = embed(e.spec, query);
  } else {
    throw std::runtime_error("the index was embedded with " + e.spec +
                             ": give the graph that built it (--graph PATH) so its endpoint and "
                             "key embed the query, or use --mode bm25");
  }
  if (q.size() != static_cast<size_t>(e.dim))
    throw std::runtime_error("the query's vector has " + std::to_string(q.size()) +
                             " dimensions where the index's have " + std::to_string(e.dim) +
                             (e.model.empty() ? "" : " (was the model " + e.model + " replaced?)"));
  return q;
}

float dot(const std::vector<float>& a, const std::vector<float>& b) {
  float s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Top k by the nearest-neighbour graph: rows changed since it last took them in (the log) are
// left out of its answer and scored exactly instead. nullopt, with `note` saying why, when the
// index has no usable graph or too many rows wait in the log.
std::optional<std::vector<std::pair<float, int64_t>>> graph_top(Db& db, const std::string& db_path,
                                                                int dim, bool half,
                                                                const std::vector<float>& q, int k,
                                                                int ef, std::string* note) {
  std::string why;
  auto g = open_ann(db, db_path, dim, &why);
  if (!g) {
    if (note && !why.empty() && note->empty())
      *note = why + ": scanned every vector; `sluice build-search " + db_path + "` rebuilds it";
    return std::nullopt;
  }
  sqlite3_stmt* s = db.prepare(
      "SELECT DISTINCT rowid FROM ann_log WHERE seq > CAST((SELECT value FROM sluice_meta WHERE "
      "key = 'ann_seq') AS INTEGER) LIMIT ?1");
  sqlite3_bind_int64(s, 1, kAnnMaxPending + 1);
  std::unordered_set<int64_t> pending;
  while (db.step(s) == SQLITE_ROW) pending.insert(sqlite3_column_int64(s, 0));
  sqlite3_reset(s);
  if (static_cast<int64_t>(pending.size()) > kAnnMaxPending) {
    if (note && note->empty())
      *note = "more than " + std::to_string(kAnnMaxPending) +
              " rows changed since the nearest-neighbour graph took them in: scanned every vector "
              "(the next run's end updates the graph, or `sluice build-search " +
              db_path + "`)";
    return std::nullopt;
  }
  const size_t want = static_cast<size_t>(k) + pending.size();
  const size_t beam = std::max(want, ef > 0 ? static_cast<size_t>(ef) : g->default_ef());
  // The graph's nodes are distinct vectors; each stands for every row that has it.
  std::vector<std::pair<float, int64_t>> top;
  sqlite3_stmt* rows_of = db.prepare("SELECT rowid FROM ann_key WHERE key = ?1 ORDER BY rowid");
  for (auto& [score, key] : g->search(q.data(), want, beam)) {
    sqlite3_bind_int64(rows_of, 1, key);
    while (top.size() < want && db.step(rows_of) == SQLITE_ROW)
      if (const int64_t rowid = sqlite3_column_int64(rows_of, 0); !pending.count(rowid))
        top.emplace_back(score, rowid);
    sqlite3_reset(rows_of);
  }
  sqlite3_stmt* get = db.prepare("SELECT vector FROM chunks WHERE rowid = ?1");
  std::vector<float> v;
  for (int64_t rowid : pending) {
    sqlite3_bind_int64(get, 1, rowid);
    if (db.step(get) == SQLITE_ROW && column_vector(get, 0, dim, half, v))
      top.emplace_back(dot(q, v), rowid);
    sqlite3_reset(get);
  }
  std::sort(top.begin(), top.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  if (top.size() > static_cast<size_t>(k)) top.resize(static_cast<size_t>(k));
  return top;
}

// Exact top k: every vector's inner product with the query.
std::vector<std::pair<float, int64_t>> scan_top(Db& db, int dim, bool half,
                                                const std::vector<float>& q, int k) {
  sqlite3_stmt* s = db.prepare("SELECT rowid, vector FROM chunks WHERE vector IS NOT NULL");
  std::vector<std::pair<float, int64_t>> top;  // a min-heap of the best k
  auto worse = [](const auto& a, const auto& b) { return a.first > b.first; };
  const int width = half ? 2 : 4;
  while (db.step(s) == SQLITE_ROW) {
    const void* blob = sqlite3_column_blob(s, 1);
    if (!blob || sqlite3_column_bytes(s, 1) != dim * width) continue;
    float d = 0;
    if (half) {
      const auto* v = static_cast<const uint16_t*>(blob);
      for (int i = 0; i < dim; ++i) d += half_to_float(v[i]) * q[static_cast<size_t>(i)];
    } else {
      const auto* v = static_cast<const float*>(blob);
      for (int i = 0; i < dim; ++i) d += v[i] * q[static_cast<size_t>(i)];
    }
    if (static_cast<int>(top.size()) == k && d <= top.front().first) continue;
    top.emplace_back(d, sqlite3_column_int64(s, 0));
    std::push_heap(top.begin(), top.end(), worse);
    if (static_cast<int>(top.size()) > k) {
      std::pop_heap(top.begin(), top.end(), worse);
      top.pop_back();
    }
  }
  sqlite3_reset(s);
  std::sort(top.begin(), top.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  return top;
}

std::vector<SearchHit> vector_search(Db& db, const std::string& db_path, const IndexEmbedder& e,
                                     const std::string& query, int k, const QueryEmbedder& embed,
                                     const VectorOptions& opt, std::string* note) {
  const std::vector<float> q = embed_query(e, query, embed);
  const bool half = stores_halves(db);
  std::optional<std::vector<std::pair<float, int64_t>>> top;
  if (!opt.exact) top = graph_top(db, db_path, e.dim, half, q, k, opt.ef, note);
  if (!top) top = scan_top(db, e.dim, half, q, k);
  sqlite3_stmt* s = db.prepare("SELECT id, doc_id, text FROM chunks WHERE rowid = ?1");
  std::vector<SearchHit> hits;
  for (const auto& [score, rowid] : *top) {
    sqlite3_bind_int64(s, 1, rowid);
    if (db.step(s) == SQLITE_ROW) {
      SearchHit h;
      h.score = score;
      h.id = column_text(s, 0);
      h.doc_id = column_text(s, 1);
      h.snippet = short_snippet(column_text(s, 2));
      hits.push_back(std::move(h));
    }
    sqlite3_reset(s);
  }
  return hits;
}

// The hits' whole text and meta (a damaged row gives "" and "{}", never a crash).
void fill_details(Db& db, std::vector<SearchHit>& hits) {
  sqlite3_stmt* s = db.prepare("SELECT text, meta FROM chunks WHERE id = ?1");
  for (auto& h : hits) {
    sqlite3_bind_text(s, 1, h.id.c_str(), static_cast<int>(h.id.size()), SQLITE_TRANSIENT);
    if (db.step(s) == SQLITE_ROW) {
      h.text = column_text(s, 0);
      h.meta = column_text(s, 1);
    }
    sqlite3_reset(s);
    rapidjson::Document d;
    d.Parse<rapidjson::kParseValidateEncodingFlag>(h.meta.c_str(), h.meta.size());
    if (d.HasParseError() || !d.IsObject()) h.meta = "{}";
  }
}

// The vector list's weight in hybrid mode when the caller gives none. embed.hash's vectors are
// hashed words with no word weights and no synonyms: on both question sets
// (scripts/bench-retrieval) any weight from 0.05 up ranked keyword answers lower than bm25 alone
// (MRR 0.873 at 0.05, 0.833 at 0.2, against 0.893), so they only break near-ties among what bm25
// found. embed.fasttext's (a model trained on the corpus) find what words miss, but weigh
// 0.1 at best: on both sets 0.1 beat bm25 (recall@10 0.71 vs 0.69, MRR 0.557 vs 0.544; keywords
// MRR 0.907 vs 0.893) and 0.2 already lost keyword answers (recall 0.96). An HTTP embedder's
// model cannot be measured here (none runs offline), so it gets the one weight a semantic model
// was measured safe at: 0.5, which weighs vectors as much as words, lost answers on both sets
// with fastText (recall 0.67 and 0.92). A user whose model is better raises --vector-weight after
// measuring it on their own questions (scripts/bench-retrieval with QUESTIONS and WEIGHTS).
constexpr double kHashVectorWeight = 0.02;
constexpr double kVectorWeight = 0.1;
double default_vector_weight(const std::string& type) {
  return type == "embed.hash" ? kHashVectorWeight : kVectorWeight;
}

std::vector<SearchHit> search_in(Db& db, const std::string& db_path, const std::string& query,
                                 int k, SearchMode mode, std::string* note, double vector_weight,
                                 const QueryEmbedder& embed, const VectorOptions& opt) {
  if (mode == SearchMode::bm25) return bm25(db, db_path, query, k, note, opt.exact);
  if (mode == SearchMode::vector)
    return vector_search(db, db_path, index_embedder(db), query, k, embed, opt, note);
  // Hybrid: a weighted sum of the two lists' scores, each divided by its list's best so the top
  // of each counts 1 (a negative vector score counts 0, a chunk missing from a list 0 there).
  // Reciprocal rank fusion, the usual choice, let a weak vector list pull lexical matches down:
  // on the question set (scripts/bench-retrieval) it took recall@10 from bm25's 0.69 to 0.60.
  const IndexEmbedder e = index_embedder(db);
  const double w =
      vector_weight >= 0 ? std::min(vector_weight, 1.0) : default_vector_weight(e.type);
  auto a = bm25(db, db_path, query, k * 4, note, opt.exact);
  auto b = vector_search(db, db_path, e, query, k * 4, embed, opt, note);
  std::map<std::string, SearchHit> fused;
  auto add = [&](std::vector<SearchHit>& list, double weight) {
    double best = 0;
    for (const auto& h : list) best = std::max(best, h.score);
    for (auto& h : list) {
      const double part = best > 0 ? weight * std::max(0.0, h.score) / best : 0.0;
      auto [it, inserted] = fused.try_emplace(h.id, std::move(h));
      if (inserted) it->second.score = 0;
      it->second.score += part;
    }
  };
  add(a, 1 - w);
  add(b, w);
  std::vector<SearchHit> out;
  for (auto& [id, h] : fused) out.push_back(std::move(h));
  std::sort(out.begin(), out.end(), [](const SearchHit& x, const SearchHit& y) {
    return x.score != y.score ? x.score > y.score : x.id < y.id;
  });
  if (static_cast<int>(out.size()) > k) out.resize(static_cast<size_t>(k));
  return out;
}

}  // namespace

std::vector<SearchHit> search_index(const std::string& db_path, const std::string& query, int k,
                                    SearchMode mode, std::string* note, double vector_weight,
                                    const QueryEmbedder& embed, const VectorOptions& vector) {
  if (!std::filesystem::exists(db_path))
    throw std::runtime_error("no index at \"" + db_path +
                             "\" (run a graph with an index.sqlite sink first)");
  Db db;
  db.open(db_path, SQLITE_OPEN_READONLY, kBusyTimeoutMs, "the index");
  check_foreign(db, db_path);
  if (!db.has_table("chunks"))
    throw std::runtime_error("\"" + db_path + "\" is not a sluice index");
  check_schema_version(db, db_path);
  k = std::clamp(k, 1, kMaxK);
  // One snapshot for the whole search: the graph's or postings' record, the pending rows and the
  // rows themselves agree even while a run or an upkeep commits.
  db.exec("BEGIN");
  try {
    auto hits = search_in(db, db_path, query, k, mode, note, vector_weight, embed, vector);
    fill_details(db, hits);
    db.exec("COMMIT");
    return hits;
  } catch (...) {
    db.rollback();
    throw;
  }
}

uint64_t chunks_awaiting_full_text(const std::string& db_path) {
  Db db;
  db.open(db_path, SQLITE_OPEN_READONLY, kBusyTimeoutMs, "the index");
  std::string mark = meta(db, "fts_rowid");
  if (mark.empty()) return 0;  // version 2: always in step
  int64_t rowid = 0;
  auto [end, ec] = std::from_chars(mark.data(), mark.data() + mark.size(), rowid);
  if (ec != std::errc() || end != mark.data() + mark.size())
    throw std::runtime_error("the index is damaged: its fts_rowid mark is \"" + mark.substr(0, 40) +
                             "\"");
  sqlite3_stmt* s = db.prepare("SELECT count(*) FROM chunks WHERE rowid > ?1");
  sqlite3_bind_int64(s, 1, rowid);
  db.step(s);
  auto behind = static_cast<uint64_t>(std::max<int64_t>(0, sqlite3_column_int64(s, 0)));
  sqlite3_reset(s);
  return behind;
}

}  // namespace sluice
