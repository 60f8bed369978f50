// Reads the string at one JSON pointer out of a document without parsing all of it: values off
// the pointer's path are skipped, not built. It serves the HTTP loop thread, which follows a
// `next` field through large responses and must not spend a DOM parse on each (the record's full
// parse happens later, on a worker).
// It checks the structure it walks through and the nesting of what it skips; it does not check
// every value it skips, so `found` does not mean the whole document is valid JSON.
// Thread-safety: find_string is const and keeps no state.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sluice {

// The deepest an untrusted body may nest arrays and objects: the scan here refuses to skip deeper
// values, and parse_untrusted (engine/json_value.hpp) to build them.
constexpr int kMaxUntrustedDepth = 256;

class JsonPointerScan {
 public:
  enum class Result {
    found,      // a string at the pointer, decoded into `out`
    absent,     // no value at the pointer, or one that is not a string
    malformed,  // the document broke off or was not JSON where the scan went through it
  };

  // An RFC 6901 pointer ("" is the whole document; "/a/0/b~1c" is a -> 0 -> "b/c").
  explicit JsonPointerScan(std::string_view pointer);

  // Like the first member of a name, as RapidJSON's pointers pick it.
  Result find_string(std::string_view doc, std::string& out) const;

  const std::string& pointer() const { return _pointer; }  // as given

 private:
  std::string _pointer;
  std::vector<std::string> _tokens;
};

}  // namespace sluice
