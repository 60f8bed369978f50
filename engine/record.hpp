// The one message type on every edge: a shared pointer to a Record. A document and every record
// derived from it share one completion Ticket; the document is done when every record path that
// started from it reached an explicit outcome (indexed, filtered, dead-lettered).
// Thread-safety: a Record is owned by one node body at a time unless fanned out; a node that
// wants to change a record it does not own alone must copy it (Record::clone / own()).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice {

enum class Outcome : uint8_t { indexed, filtered, dead_lettered, lost };
const char* outcome_name(Outcome o);

// Small JSON metadata: name → JSON text of the value, in insertion order.
class Meta {
 public:
  void set_json(std::string_view key, std::string json_text);
  void set_string(std::string_view key, std::string_view value);
  void set_int(std::string_view key, int64_t value);
  const std::string* get_json(std::string_view key) const;
  // The value as text: strings decoded, other JSON as written; "" when absent.
  std::string get_text(std::string_view key) const;
  bool empty() const { return _items.empty(); }
  std::string to_json() const;  // {"k":v,...}
  const std::vector<std::pair<std::string, std::string>>& items() const { return _items; }

 private:
  std::vector<std::pair<std::string, std::string>> _items;
};

class Ticket;

// Receives document completions. Implemented by the graph runner; called on whatever thread
// finished the last record of a document. Must not block.
class CompletionListener {
 public:
  virtual ~CompletionListener() = default;
  virtual void on_doc_done(Ticket& ticket) = 0;
};

// Counts record paths still open for one document.
class Ticket {
 public:
  Ticket(CompletionListener* listener, std::string doc_id, int gate, int64_t initial)
      : _listener(listener), _doc_id(std::move(doc_id)), _gate(gate), _pending(initial) {}
  ~Ticket();
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;

  // A node is about to hand `n` more record paths downstream (n may be negative: net change).
  void add(int64_t n);
  // One record path reached `o`.
  void finish(Outcome o);

  const std::string& doc_id() const { return _doc_id; }
  int gate() const { return _gate; }
  // Bit set of outcomes seen (1 << Outcome).
  unsigned outcomes() const { return _outcomes.load(std::memory_order_acquire); }
  Outcome doc_outcome() const;
  bool done() const { return _pending.load(std::memory_order_acquire) == 0; }

 private:
  void on_zero();
  CompletionListener* _listener;
  std::string _doc_id;
  int _gate;  // which source admitted the document (its in-flight limiter)
  std::atomic<int64_t> _pending;
  std::atomic<unsigned> _outcomes{0};
  std::atomic<bool> _closed{false};
};

struct Record;
using RecordPtr = std::shared_ptr<Record>;

struct Record {
  std::string id;      // document id, or chunk id `<doc_id>#<tag><n>`
  std::string doc_id;  // id of the source document
  std::string text;
  std::string body;  // raw payload (e.g. an HTTP response) when a node needs it
  Meta meta;
  std::vector<float> vector;
  // Which embedder made `vector`, as JSON ({"type":"embed.hash","dim":256}); shared by all records.
  std::shared_ptr<const std::string> embedder;
  uint32_t seq = 0;   // chunk number within the document
  std::string error;  // set by a source for an input it could not read: dead-lettered on admission
  std::shared_ptr<Ticket> ticket;

  // A new record of the same document (same ticket and meta), with a new id.
  RecordPtr derive(std::string new_id) const;
  RecordPtr clone() const { return std::make_shared<Record>(*this); }
};

// For Node::process: returns `in` itself when nobody else can see the record, else a copy the
// node may change. During process() the engine's task holds one reference and the parameter the
// other; a fanned-out or batched record has more.
inline RecordPtr own(const RecordPtr& in) { return in.use_count() <= 2 ? in : in->clone(); }

}  // namespace sluice
