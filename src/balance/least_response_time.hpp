#pragma once
// Least response time, peak-EWMA style: cost = latency x (active + 1) / weight, where latency is
// the server's decaying average of response time (ServerState::latency(), fed by live responses
// and health probes) and active its in-flight requests across all workers. The in-flight factor
// is what keeps a fast server from being flooded: 5 ms with 9 requests in flight costs as much
// as 50 ms idle. A server without a sample yet counts as the best latency among the servers being
// compared, so a new server gets tried without being flooded before its first answer.
//
// With more than kFullScanMax servers the choice is power of two random choices (P2C): draw two
// distinct available servers at random and take the cheaper, which is O(1) and, unlike "always
// the best", keeps the workers from herding onto one server between latency updates. With
// kFullScanMax or fewer, P2C would almost always compare the same pair anyway, so every server is
// compared. Ties go either way at random.
#include <vector>

#include "balance/balancer.hpp"
#include "balance/rng.hpp"

namespace weir::balance {

class LeastResponseTime final : public Balancer {
 public:
  static constexpr size_t kFullScanMax = 3;

  LeastResponseTime(std::span<const ServerInfo> servers, uint64_t seed);
  int pick(const PickContext& ctx, const TriedSet& tried) override;

 private:
  bool usable(int idx, const TriedSet& tried) const;
  int draw(const TriedSet& tried, int other);
  double cost(int idx, double unsampled_latency) const;
  int scan(const TriedSet& tried);

  std::vector<ServerInfo> servers_;
  FastRng rng_;
};

}  // namespace weir::balance
