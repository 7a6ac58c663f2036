#pragma once
// The balancer interface: pick(context, tried) over one backend's servers, plus hooks for the
// strategies that track load. One instance per worker per backend, built from the immutable
// server list of a config snapshot; shared state (health, in-flight counts) is read through
// ServerState, which every worker sees.
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "config/config.hpp"
#include "model/server_state.hpp"

namespace weir::balance {

using model::ServerInfo;
using model::ServerState;

// Effective weights for one pick: a server that came back less than slow_start ago counts with
// a share of its weight that grows linearly (at least 1). Reads the clock at most once a pick,
// and only when some server has a ramp to follow.
class Weights {
 public:
  uint32_t operator()(const ServerInfo& s) {
    if (s.slow_start_ns == 0 || s.weight == 0) return s.weight;
    int64_t start = s.state->ramp_start_ns.load(std::memory_order_relaxed);
    if (start == 0) return s.weight;
    if (now_ < 0) now_ = std::chrono::steady_clock::now().time_since_epoch().count();
    int64_t elapsed = now_ - start;
    if (elapsed >= s.slow_start_ns) return s.weight;
    if (elapsed <= 0) return 1;
    uint64_t w = static_cast<uint64_t>(s.weight) * static_cast<uint64_t>(elapsed) /
                 static_cast<uint64_t>(s.slow_start_ns);
    return w < 1 ? 1 : static_cast<uint32_t>(w);
  }

 private:
  int64_t now_ = -1;
};

// Servers already tried for this request (retries go elsewhere). Small and allocation-free.
class TriedSet {
 public:
  void add(int idx) {
    if (n_ < kMax) ids_[n_++] = idx;
  }
  bool contains(int idx) const {
    for (size_t i = 0; i < n_; ++i)
      if (ids_[i] == idx) return true;
    return false;
  }
  size_t size() const { return n_; }

 private:
  static constexpr size_t kMax = 16;
  int ids_[kMax] = {};
  size_t n_ = 0;
};

struct PickContext {
  std::string_view client_ip;
  std::string_view path;
  uint64_t hash = 0;      // hash of the backend's hash_key for this request (hashing strategies)
  bool has_hash = false;  // false: the key was absent (e.g. no such cookie)
};

class Balancer {
 public:
  virtual ~Balancer() = default;
  // Index of the chosen server, or -1 when no available server is left untried.
  virtual int pick(const PickContext& ctx, const TriedSet& tried) = 0;
  // A request was sent to / finished on server idx (for load-aware strategies).
  virtual void on_taken(int /*idx*/) {}
  virtual void on_released(int /*idx*/) {}
  // A response head arrived from server idx after `seconds` (load-aware strategies).
  virtual void on_response(int /*idx*/, double /*seconds*/) {}
};

// Knobs some strategies take beyond the server list.
struct BalancerOptions {
  // Bounded-load consistent hashing (ip_hash, consistent_hash): a server holding more than
  // factor x its fair share of in-flight requests is passed over for the key's next candidate.
  // 0 = off; otherwise >= 1.0 (1.25 is a good start).
  double hash_balance_factor = 0;
};

std::unique_ptr<Balancer> make_balancer(config::Balance kind, std::span<const ServerInfo> servers,
                                        uint64_t seed);
std::unique_ptr<Balancer> make_balancer(config::Balance kind, std::span<const ServerInfo> servers,
                                        uint64_t seed, const BalancerOptions& options);

}  // namespace weir::balance
