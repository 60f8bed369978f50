#include "engine/record.hpp"

#include <cassert>
#include <cstdlib>

#include <rapidjson/document.h>

#include "engine/json/json.hpp"

namespace sluice {

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::indexed: return "indexed";
    case Outcome::filtered: return "filtered";
    case Outcome::dead_lettered: return "dead_lettered";
    case Outcome::lost: return "lost";
  }
  return "?";
}

void Meta::set_json(std::string_view key, std::string json_text) {
  for (auto& [k, v] : _items)
    if (k == key) {
      v = std::move(json_text);
      return;
    }
  _items.emplace_back(std::string(key), std::move(json_text));
}

void Meta::set_string(std::string_view key, std::string_view value) {
  set_json(key, json::quoted(value));
}

void Meta::set_int(std::string_view key, int64_t value) { set_json(key, std::to_string(value)); }

const std::string* Meta::get_json(std::string_view key) const {
  for (const auto& [k, v] : _items)
    if (k == key) return &v;
  return nullptr;
}

std::string Meta::get_text(std::string_view key) const {
  const std::string* j = get_json(key);
  if (!j) return {};
  if (j->empty() || (*j)[0] != '"') return *j;
  rapidjson::Document d;
  d.Parse(j->c_str(), j->size());
  if (d.HasParseError() || !d.IsString()) return *j;
  return std::string(d.GetString(), d.GetStringLength());
}

std::string Meta::to_json() const {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : _items) {
    if (!first) out += ',';
    first = false;
    json::append_quoted(out, k);
    out += ':';
    out += v;
  }
  out += '}';
  return out;
}

Ticket::~Ticket() {
  // Every record of this document is gone: anything still open vanished without an outcome.
  int64_t left = _pending.load(std::memory_order_acquire);
  if (left > 0) {
    _outcomes.fetch_or(1u << static_cast<unsigned>(Outcome::lost), std::memory_order_acq_rel);
    _pending.store(0, std::memory_order_release);
    on_zero();
  }
}

void Ticket::add(int64_t n) {
  if (n == 0) return;
  int64_t after = _pending.fetch_add(n, std::memory_order_acq_rel) + n;
  assert(after >= 0 && "ticket went negative");
  if (after == 0) on_zero();
}

void Ticket::finish(Outcome o) {
  _outcomes.fetch_or(1u << static_cast<unsigned>(o), std::memory_order_acq_rel);
  add(-1);
}

Outcome Ticket::doc_outcome() const {
  unsigned bits = outcomes();
  if (bits & (1u << static_cast<unsigned>(Outcome::lost))) return Outcome::lost;
  if (bits & (1u << static_cast<unsigned>(Outcome::dead_lettered))) return Outcome::dead_lettered;
  if (bits & (1u << static_cast<unsigned>(Outcome::indexed))) return Outcome::indexed;
  return Outcome::filtered;
}

void Ticket::on_zero() {
  bool expected = false;
  if (!_closed.compare_exchange_strong(expected, true)) return;
  if (_listener) _listener->on_doc_done(*this);
}

RecordPtr Record::derive(std::string new_id) const {
  auto r = std::make_shared<Record>();
  r->id = std::move(new_id);
  r->doc_id = doc_id;
  r->meta = meta;
  r->ticket = ticket;
  return r;
}

}  // namespace sluice
