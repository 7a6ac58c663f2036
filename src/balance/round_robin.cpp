#include "balance/round_robin.hpp"

namespace weir::balance {

RoundRobin::RoundRobin(std::span<const ServerInfo> servers)
    : servers_(servers.begin(), servers.end()), current_(servers.size(), 0) {}

int RoundRobin::pick(const PickContext&, const TriedSet& tried) {
  int best = -1;
  int64_t total = 0;
  Weights weights;
  for (size_t i = 0; i < servers_.size(); ++i) {
    const ServerInfo& s = servers_[i];
    if (!s.available() || tried.contains(static_cast<int>(i))) continue;
    uint32_t w = weights(s);
    current_[i] += w;
    total += w;
    if (best < 0 || current_[i] > current_[static_cast<size_t>(best)]) best = static_cast<int>(i);
  }
  if (best >= 0) current_[static_cast<size_t>(best)] -= total;
  return best;
}

}  // namespace weir::balance
