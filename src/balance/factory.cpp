// The table of strategies: one line per `balance:` value.
#include "balance/balancer.hpp"
#include "balance/consistent_hash.hpp"
#include "balance/least_connections.hpp"
#include "balance/least_response_time.hpp"
#include "balance/random.hpp"
#include "balance/round_robin.hpp"

namespace weir::balance {

std::unique_ptr<Balancer> make_balancer(config::Balance kind, std::span<const ServerInfo> servers,
                                        uint64_t seed, const BalancerOptions& options) {
  using B = config::Balance;
  switch (kind) {
    case B::Random:
      return std::make_unique<Random>(servers, seed);
    case B::RoundRobin:
      return std::make_unique<RoundRobin>(servers);
    case B::LeastConnections:
      return std::make_unique<LeastConnections>(servers, seed);
    case B::LeastResponseTime:
      return std::make_unique<LeastResponseTime>(servers, seed);
    case B::IpHash:
      return std::make_unique<ConsistentHash>(servers, ConsistentHash::Key::ClientIp,
                                              options.hash_balance_factor);
    case B::ConsistentHash:
      return std::make_unique<ConsistentHash>(servers, ConsistentHash::Key::Context,
                                              options.hash_balance_factor);
  }
  return std::make_unique<RoundRobin>(servers);
}

std::unique_ptr<Balancer> make_balancer(config::Balance kind, std::span<const ServerInfo> servers,
                                        uint64_t seed) {
  return make_balancer(kind, servers, seed, BalancerOptions{});
}

}  // namespace weir::balance
