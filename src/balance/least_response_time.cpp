#include "balance/least_response_time.hpp"

#include <algorithm>

namespace weir::balance {

LeastResponseTime::LeastResponseTime(std::span<const ServerInfo> servers, uint64_t seed)
    : servers_(servers.begin(), servers.end()), rng_(seed) {}

bool LeastResponseTime::usable(int idx, const TriedSet& tried) const {
  return servers_[static_cast<size_t>(idx)].available() && !tried.contains(idx);
}

double LeastResponseTime::cost(int idx, double unsampled_latency) const {
  const ServerInfo& s = servers_[static_cast<size_t>(idx)];
  double latency = s.state->latency();
  if (latency <= 0) latency = unsampled_latency;
  auto active = std::max<int64_t>(s.state->active.load(std::memory_order_relaxed), 0);
  Weights weights;
  return latency * static_cast<double>(active + 1) / weights(s);
}

// A random usable server other than `other`, or -1 after a few misses (most servers down or
// tried: the caller scans instead).
int LeastResponseTime::draw(const TriedSet& tried, int other) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    int idx = static_cast<int>(rng_.below(servers_.size()));
    if (idx != other && usable(idx, tried)) return idx;
  }
  return -1;
}

int LeastResponseTime::scan(const TriedSet& tried) {
  double best_known = 0;
  for (size_t i = 0; i < servers_.size(); ++i) {
    double l = servers_[i].state->latency();
    if (l > 0 && usable(static_cast<int>(i), tried) && (best_known == 0 || l < best_known))
      best_known = l;
  }
  if (best_known == 0) best_known = 1;  // no samples at all: plain least connections
  int best = -1;
  double best_cost = 0;
  uint64_t ties = 0;
  for (size_t i = 0; i < servers_.size(); ++i) {
    int idx = static_cast<int>(i);
    if (!usable(idx, tried)) continue;
    double c = cost(idx, best_known);
    if (best < 0 || c < best_cost) {
      best = idx;
      best_cost = c;
      ties = 1;
    } else if (c == best_cost && rng_.below(++ties) == 0) {
      best = idx;
    }
  }
  return best;
}

int LeastResponseTime::pick(const PickContext&, const TriedSet& tried) {
  if (servers_.size() <= kFullScanMax) return scan(tried);
  int a = draw(tried, -1);
  int b = a < 0 ? -1 : draw(tried, a);
  if (b < 0) return scan(tried);
  double la = servers_[static_cast<size_t>(a)].state->latency();
  double lb = servers_[static_cast<size_t>(b)].state->latency();
  double best_known = la > 0 && lb > 0 ? std::min(la, lb) : std::max(la, lb);
  if (best_known <= 0) best_known = 1;
  double ca = cost(a, best_known), cb = cost(b, best_known);
  if (ca == cb) return (rng_.next() & 1) != 0 ? a : b;
  return ca < cb ? a : b;
}

}  // namespace weir::balance
