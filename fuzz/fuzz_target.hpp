// One entry point per fuzz target. With -DSLUICE_FUZZ=ON (clang-14 and libFuzzer) each target
// file is its own fuzzer executable; in the default build the same functions are registered by
// name, and the test FuzzCorpus replays every file of fuzz/corpus/<name>/ through them.
// A target returns 0; a crash, a sanitizer report, an uncaught exception or a failed check()
// is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

namespace sluice::fuzz {

using Target = int (*)(const uint8_t*, size_t);
inline std::map<std::string, Target>& targets() {
  static std::map<std::string, Target> all;
  return all;
}
struct Register {
  Register(const char* name, Target t) { targets()[name] = t; }
};

// An invariant the code promises: a finding when it does not hold.
inline void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz check failed: %s\n", what);
  std::abort();
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace sluice::fuzz

#ifdef SLUICE_LIBFUZZER
#define SLUICE_FUZZ_TARGET(name)                                                                   \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#else
#define SLUICE_FUZZ_TARGET(name)                                                                   \
  static int fuzz_##name(const uint8_t* data, size_t size);                                        \
  static const ::sluice::fuzz::Register register_##name(#name, fuzz_##name);                       \
  static int fuzz_##name(const uint8_t* data, size_t size)
#endif
