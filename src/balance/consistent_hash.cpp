#include "balance/consistent_hash.hpp"

#include <algorithm>
#include <cmath>

#include "balance/hash.hpp"

namespace weir::balance {

ConsistentHash::ConsistentHash(std::span<const ServerInfo> servers, Key key, double balance_factor)
    : servers_(servers.begin(), servers.end()),
      table_(servers),
      key_(key),
      factor_(balance_factor > 0 ? std::max(balance_factor, 1.0) : 0),
      in_flight_(servers.size(), 0) {
  for (size_t i = 0; i < servers.size(); ++i)
    identity_.push_back(hash_key(server_identity(servers, i)));
  refresh_available_weight();
}

bool ConsistentHash::usable(int idx, const TriedSet& tried) const {
  return servers_[static_cast<size_t>(idx)].available() && !tried.contains(idx);
}

void ConsistentHash::refresh_available_weight() {
  available_weight_ = 0;
  for (const ServerInfo& s : servers_)
    if (s.available()) available_weight_ += s.weight;
  picks_since_refresh_ = 0;
}

// This server's fair share of (in-flight + 1) requests, times the balance factor.
double ConsistentHash::capacity(int idx) const {
  double weight = servers_[static_cast<size_t>(idx)].weight;
  return factor_ * static_cast<double>(total_in_flight_ + 1) * weight /
         std::max(available_weight_, weight);
}

// Highest random weight (weighted rendezvous hashing): a function of the key and the usable set,
// O(n), reached only when kProbes slots in a row named unusable servers.
int ConsistentHash::rendezvous(uint64_t hash, const TriedSet& tried) const {
  int best = -1;
  double best_score = 0;
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (!usable(static_cast<int>(i), tried)) continue;
    // u in (0, 1); -w / ln(u) is the weighted score whose argmax is chosen with probability
    // w / (sum of w).
    double u = (static_cast<double>(mix64(hash ^ identity_[i]) >> 11) + 0.5) * 0x1.0p-53;
    double score = -static_cast<double>(servers_[i].weight) / std::log(u);
    if (best < 0 || score > best_score) {
      best = static_cast<int>(i);
      best_score = score;
    }
  }
  return best;
}

int ConsistentHash::pick(const PickContext& ctx, const TriedSet& tried) {
  uint64_t hash;
  if (key_ == Key::ClientIp && !ctx.client_ip.empty())
    hash = hash_key(ctx.client_ip);
  else if (key_ == Key::Context && ctx.has_hash)
    hash = ctx.hash;
  else
    hash = mix64(++no_key_counter_);

  // Health changes are not pushed to balancers: the bound's denominator is re-read every
  // max(64, servers) picks, which keeps the pick amortized O(1).
  if (factor_ > 0 && ++picks_since_refresh_ >= std::max<size_t>(64, servers_.size()))
    refresh_available_weight();

  int least = -1;  // bounded load: the least overloaded candidate seen, if all are over
  double least_ratio = 0;
  for (int probe = 0; probe < kProbes; ++probe) {
    uint64_t h =
        probe == 0 ? hash : mix64(hash + static_cast<uint64_t>(probe) * 0x9e3779b97f4a7c15ULL);
    int idx = table_.lookup(h);
    if (idx < 0) return -1;  // every weight is 0
    if (!usable(idx, tried)) continue;
    if (factor_ == 0) return idx;
    double load = static_cast<double>(in_flight_[static_cast<size_t>(idx)]);
    double cap = capacity(idx);
    if (load <= cap) return idx;
    if (least < 0 || load / cap < least_ratio) {
      least = idx;
      least_ratio = load / cap;
    }
  }
  return least >= 0 ? least : rendezvous(hash, tried);
}

void ConsistentHash::on_taken(int idx) {
  if (idx < 0 || static_cast<size_t>(idx) >= in_flight_.size()) return;
  ++in_flight_[static_cast<size_t>(idx)];
  ++total_in_flight_;
}

void ConsistentHash::on_released(int idx) {
  if (idx < 0 || static_cast<size_t>(idx) >= in_flight_.size()) return;
  if (in_flight_[static_cast<size_t>(idx)] > 0) {
    --in_flight_[static_cast<size_t>(idx)];
    --total_in_flight_;
  }
}

}  // namespace weir::balance
