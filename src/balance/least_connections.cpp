#include "balance/least_connections.hpp"

#include <algorithm>

namespace weir::balance {

LeastConnections::LeastConnections(std::span<const ServerInfo> servers, uint64_t seed)
    : servers_(servers.begin(), servers.end()), rng_(seed) {}

int LeastConnections::pick(const PickContext&, const TriedSet& tried) {
  int best = -1;
  uint64_t best_load = 0, best_weight = 1;
  uint64_t ties = 0;
  Weights weights;
  for (size_t i = 0; i < servers_.size(); ++i) {
    const ServerInfo& s = servers_[i];
    if (!s.available() || tried.contains(static_cast<int>(i))) continue;
    // Clamped so the cross-multiplication below cannot overflow: (2^32) * (2^32 - 1) < 2^64.
    int64_t active = s.state->active.load(std::memory_order_relaxed);
    uint64_t load =
        static_cast<uint64_t>(std::clamp<int64_t>(active, 0, (int64_t{1} << 32) - 1)) + 1;
    uint64_t weight = weights(s);
    // load / weight < best_load / best_weight, without a division.
    uint64_t lhs = load * best_weight, rhs = best_load * weight;
    if (best < 0 || lhs < rhs) {
      best = static_cast<int>(i);
      best_load = load;
      best_weight = weight;
      ties = 1;
    } else if (lhs == rhs && rng_.below(++ties) == 0) {
      // Reservoir sampling: each of the k tied servers ends up chosen with probability 1/k.
      best = static_cast<int>(i);
      best_load = load;
      best_weight = weight;
    }
  }
  return best;
}

}  // namespace weir::balance
