#pragma once
// Least connections: the server with the fewest in-flight requests (all workers, from
// ServerState::active) relative to its weight, counting the request being placed: cost =
// (active + 1) / weight, so among idle servers the heavier one goes first, and with equal load
// weights 2:1 settle at 2:1 of the in-flight requests. Ties are broken uniformly at random.
#include <vector>

#include "balance/balancer.hpp"
#include "balance/rng.hpp"

namespace weir::balance {

class LeastConnections final : public Balancer {
 public:
  LeastConnections(std::span<const ServerInfo> servers, uint64_t seed);
  int pick(const PickContext& ctx, const TriedSet& tried) override;

 private:
  std::vector<ServerInfo> servers_;
  FastRng rng_;
};

}  // namespace weir::balance
