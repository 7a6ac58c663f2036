#pragma once
// The Maglev lookup table (Eisenbud et al., NSDI 2016, section 3.4), weighted as Envoy does it:
// a table of a prime number of slots, each naming a server; a key's slot is its hash reduced to
// the table size. Every server walks its own permutation of the slots (offset and skip from the
// hash of its name) and claims the next free one on each of its turns; a server of weight w
// takes a turn w times as often as one of weight 1, so it ends up with ~w shares of the slots,
// and a server of weight 0 with none. Servers take turns in the order of their names, so the
// table depends only on the names and weights: not on the config's order, the worker, the
// process or the machine.
#include <cstdint>
#include <span>
#include <vector>

#include "balance/balancer.hpp"
#include "balance/hash.hpp"

namespace weir::balance {

class MaglevTable {
 public:
  // Servers past this index get no slots (the entries are 16 bits).
  static constexpr size_t kMaxServers = 0xFFFF;
  // The smallest prime >= max(65537, 100 x servers): at least 100 slots a server keeps the shares
  // within about 1% of the weights.
  static uint64_t size_for(size_t servers);

  explicit MaglevTable(std::span<const ServerInfo> servers);

  // The server owning the slot of `hash`, or -1 when no server has a weight.
  int lookup(uint64_t hash) const {
    if (empty_) return -1;
    return slots_[reduce(hash, slots_.size())];
  }
  size_t size() const { return slots_.size(); }
  // How many slots server idx holds (tests, diagnostics).
  size_t share(int idx) const;

 private:
  std::vector<uint16_t> slots_;
  bool empty_ = true;
};

// A server's identity for hashing: its name, or "#<index>" when it has none.
std::string server_identity(std::span<const ServerInfo> servers, size_t idx);

}  // namespace weir::balance
