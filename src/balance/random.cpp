#include "balance/random.hpp"

namespace weir::balance {

Random::Random(std::span<const ServerInfo> servers, uint64_t seed)
    : servers_(servers.begin(), servers.end()), rng_(seed) {}

int Random::pick(const PickContext&, const TriedSet& tried) {
  // One pass to total the available weight, a second to find the drawn server: O(n), no
  // allocation, and correct whatever subset is up or already tried.
  uint64_t total = 0;
  Weights weights;  // the same clock reading for both passes
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (servers_[i].available() && !tried.contains(static_cast<int>(i)))
      total += weights(servers_[i]);
  }
  if (total == 0) return -1;
  uint64_t r = rng_() % total;
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (!servers_[i].available() || tried.contains(static_cast<int>(i))) continue;
    uint32_t w = weights(servers_[i]);
    if (r < w) return static_cast<int>(i);
    r -= w;
  }
  return -1;
}

}  // namespace weir::balance
