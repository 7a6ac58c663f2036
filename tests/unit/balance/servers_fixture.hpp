#pragma once
// A backend's servers for balancer tests: shared states plus the infos a balancer is built from.
#include <cstdint>
#include <memory>
#include <vector>

#include "balance/balancer.hpp"

namespace weir::balance::test {

struct Servers {
  std::vector<std::unique_ptr<ServerState>> states;
  std::vector<ServerInfo> infos;
  explicit Servers(std::vector<uint32_t> weights) {
    for (uint32_t w : weights) {
      states.push_back(std::make_unique<ServerState>());
      infos.push_back({w, states.back().get()});
    }
  }
};

}  // namespace weir::balance::test
