// The table of strategies: one line per `balance:` value. Strategies not built yet fall back to
// round robin with a warning at load time (see app/runtime.cpp), so configs stay valid.
#include "balance/balancer.hpp"
#include "balance/random.hpp"
#include "balance/round_robin.hpp"

namespace weir::balance {

std::unique_ptr<Balancer> make_balancer(config::Balance kind, std::span<const ServerInfo> servers,
                                        uint64_t seed) {
  switch (kind) {
    case config::Balance::Random: return std::make_unique<Random>(servers, seed);
    case config::Balance::RoundRobin:
    default: return std::make_unique<RoundRobin>(servers);
  }
}

}  // namespace weir::balance
