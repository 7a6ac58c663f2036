#pragma once
// Smooth weighted round robin (the NGINX algorithm): weights 3:1 give a a b a, interleaved.
#include <vector>

#include "balance/balancer.hpp"

namespace weir::balance {

class RoundRobin final : public Balancer {
 public:
  explicit RoundRobin(std::span<const ServerInfo> servers);
  int pick(const PickContext& ctx, const TriedSet& tried) override;

 private:
  std::vector<ServerInfo> servers_;
  std::vector<int64_t> current_;
};

}  // namespace weir::balance
