// The progress line a run redraws on a TTY, the same for one process (the runner) and for a
// launcher summing its workers. Pure functions: any thread, no blocking.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace sluice {

struct ProgressFigures {
  uint64_t done = 0;              // documents done (indexed, filtered or dead-lettered)
  std::optional<uint64_t> total;  // documents the sources announced, if known
  int64_t in_flight = 0;          // documents admitted and not yet done
  uint64_t chunks = 0;
  double elapsed_s = 0;
  int workers = 0;  // > 0: the line names a launcher's worker processes
  // Source items that expand into documents (Sefaria's books into sections): what the items are
  // called (the source's id) and what they became (the expanding node's id, "" = none), with the
  // documents' count. `done` and `total` stay the items': the ETA comes from the known total.
  std::string unit = "docs";
  std::string expanded_unit;
  uint64_t expanded = 0;
};

// "docs 120/500  in flight 32  chunks 410  95 docs/s  2 workers  1m02s  ETA 4s" (no newline);
// expanded: "books 12/950  sections 340  in flight 32  chunks 1020  28 sections/s  12s  ETA 15m".
std::string progress_text(const ProgressFigures& p);

// "42s", "3m05s", "2h10m": for progress lines and ETAs.
std::string human_duration(double seconds);

}  // namespace sluice
