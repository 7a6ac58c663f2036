#pragma once
// ip_hash and consistent_hash: a key picks its server through a Maglev table (maglev.hpp) built
// from the servers' names and weights only, so every worker and every weir instance agrees.
//
// The table never changes with health. When the key's server is down, already tried or (with a
// balance factor) overloaded, the key probes further slots of its own fixed sequence (its hash
// re-mixed with the probe number) until one names a usable server. A key whose server is fine
// therefore never moves, and the keys of a server that leaves spread over the others in
// proportion to their weights, then come back with it. After kProbes misses (most servers gone)
// a rendezvous hash over the usable servers answers, which is still a function of the key alone.
//
// Keys: ip_hash hashes ctx.client_ip itself; consistent_hash takes ctx.hash, filled by the proxy
// from the backend's hash_key. A request without a key (no such cookie, no client IP) gets the
// slot of a per-worker counter: spread over the servers in proportion to their weights, like
// weighted round robin but without its O(n) pick.
//
// Bounded load (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2018),
// when balance_factor c > 0: a server holding more than c x (in-flight + 1) x weight / (available
// weight) in-flight requests is passed over for the key's next candidate, so a hot key spills to
// a second server instead of overloading its own. The counts are this worker's own (kept by
// on_taken/on_released, O(1) to read): as every worker keeps its own servers under the bound, the
// sum over W workers stays under c x (all in-flight + W) x weight / (available weight).
#include <vector>

#include "balance/balancer.hpp"
#include "balance/maglev.hpp"

namespace weir::balance {

class ConsistentHash final : public Balancer {
 public:
  enum class Key { ClientIp, Context };
  static constexpr int kProbes = 32;

  ConsistentHash(std::span<const ServerInfo> servers, Key key, double balance_factor);
  int pick(const PickContext& ctx, const TriedSet& tried) override;
  void on_taken(int idx) override;
  void on_released(int idx) override;

  const MaglevTable& table() const { return table_; }

 private:
  bool usable(int idx, const TriedSet& tried) const;
  double capacity(int idx) const;
  int rendezvous(uint64_t hash, const TriedSet& tried) const;
  void refresh_available_weight();

  std::vector<ServerInfo> servers_;
  std::vector<uint64_t> identity_;  // hash of each server's name, for the rendezvous fallback
  MaglevTable table_;
  Key key_;
  double factor_;
  uint64_t no_key_counter_ = 0;
  // Bounded load only.
  std::vector<int64_t> in_flight_;
  int64_t total_in_flight_ = 0;
  double available_weight_ = 0;
  uint32_t picks_since_refresh_ = 0;
};

}  // namespace weir::balance
