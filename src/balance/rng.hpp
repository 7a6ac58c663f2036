#pragma once
// A small, fast per-instance random source for the pick path (tie-breaks, power-of-two choices):
// SplitMix64, a few cycles per draw. Not for anything secret.
#include <cstdint>

#include "balance/hash.hpp"

namespace weir::balance {

class FastRng {
 public:
  explicit FastRng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return mix64(state_ += 0x9e3779b97f4a7c15ULL); }
  // Uniform in [0, n), n > 0.
  uint64_t below(uint64_t n) { return reduce(next(), n); }

 private:
  uint64_t state_;
};

}  // namespace weir::balance
