// The values a graph config took from the environment (${env:NAME}: API keys, passwords), so that
// no message, report, event or dead-letter line ever prints one. Filled while the config is read
// (single thread); read-only afterwards, so redact() may run on any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sluice {

class Secrets {
 public:
  // Values shorter than this are not masked: an env var holding "8" or "true" is a setting, and
  // masking every "8" in every message would hide more than it protects.
  static constexpr size_t kMinLength = 6;

  void add(std::string_view value);
  bool empty() const { return _values.empty(); }
  // `text` with every secret replaced by "***", and the password of any URL's userinfo
  // ("scheme://user:PASSWORD@host") too, secret or not.
  std::string redact(std::string_view text) const;

 private:
  std::vector<std::string> _values;  // longest first, so a secret containing another goes whole
};

}  // namespace sluice
