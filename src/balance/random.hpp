#pragma once
// Weighted random: a server is chosen with probability weight / (sum of available weights).
#include <random>
#include <vector>

#include "balance/balancer.hpp"

namespace weir::balance {

class Random final : public Balancer {
 public:
  Random(std::span<const ServerInfo> servers, uint64_t seed);
  int pick(const PickContext& ctx, const TriedSet& tried) override;

 private:
  std::vector<ServerInfo> servers_;
  std::mt19937_64 rng_;
};

}  // namespace weir::balance
