#pragma once
// Shared checks for the fuzz drivers. Every failed check aborts, which libFuzzer reports as a
// crash with the input saved.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

namespace weir::fuzz {

// An exact-size heap copy, so ASan flags a read one byte past the end.
struct Buffer {
  std::unique_ptr<char[]> bytes;
  size_t size = 0;
  explicit Buffer(std::string_view s) : bytes(new char[s.size()]), size(s.size()) {
    if (size != 0) std::memcpy(bytes.get(), s.data(), size);
  }
  std::string_view view() const { return {bytes.get(), size}; }
};

inline bool inside(std::string_view part, std::string_view buf) {
  if (part.empty()) return true;
  return part.data() >= buf.data() && part.data() + part.size() <= buf.data() + buf.size();
}

// A small deterministic generator for split points.
struct Rng {
  uint64_t state;
  uint64_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  }
};

}  // namespace weir::fuzz
