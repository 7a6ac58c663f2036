#pragma once
// The state of one server that every worker sees and that survives reloads (health, in-flight
// count, latency, passive ejection, slow-start ramp), and ServerInfo, what a balancer reads of a
// server. Owned by the ServerRegistry; snapshots and probes hold shared_ptrs to it.
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace weir::model {

// What an operator set through the runtime API (kept across reloads with the rest of the state):
// drain takes no new clients (sticky ones and requests in flight go on), maint takes no new
// request at all.
enum class AdminState : uint8_t { Ready, Drain, Maint };
inline std::string_view admin_state_name(AdminState s) {
  return s == AdminState::Drain ? "drain" : s == AdminState::Maint ? "maint" : "ready";
}

// Per-server state shared by all workers and kept across reloads (same backend/server/address).
// Written with relaxed atomics only: a lost update of the latency average is harmless, a lock
// on the request path is not.
struct ServerState {
  std::atomic<bool> up{true};
  std::atomic<int64_t> active{0};  // in-flight requests, all workers
  // Decaying average of response time in seconds (stored as double bits; 0 = no sample yet),
  // fed by live responses and by health-check probes.
  std::atomic<uint64_t> latency_bits{0};

  void observe_latency(double seconds, double weight = 0.3) {
    double old = latency();
    double next = old == 0 ? seconds : old + weight * (seconds - old);
    latency_bits.store(std::bit_cast<uint64_t>(next), std::memory_order_relaxed);
  }
  double latency() const {
    return std::bit_cast<double>(latency_bits.load(std::memory_order_relaxed));
  }

  // Passive health (live traffic): out of rotation until this steady-clock time in ns
  // (0 = not ejected). Separate from `up`, which belongs to the active health checker.
  std::atomic<int64_t> ejected_until_ns{0};
  std::atomic<uint32_t> consecutive_failures{0};
  std::atomic<uint32_t> ejections{0};  // ejections in a row: each doubles the cooldown
  // slow_start: when the server last came back into rotation (steady-clock ns; 0 = never).
  std::atomic<int64_t> ramp_start_ns{0};

  // Unreachable (connect refused, reset before any response byte, connect timeout): out of
  // rotation until this steady-clock time in ns, without any `passive:` config. The interval
  // grows with each failure in a row; a successful connect or a passing probe that started
  // after the failure ends it (health/passive.hpp).
  std::atomic<int64_t> unreachable_until_ns{0};
  std::atomic<int64_t> unreachable_since_ns{0};  // when the last connect failure was seen
  std::atomic<uint32_t> unreachable_streak{0};   // connect failures in a row

  std::atomic<AdminState> admin{AdminState::Ready};
  // A weight set through the runtime API (-1: the config's); snapshots are rebuilt on a change.
  std::atomic<int64_t> weight_override{-1};

  // Counters for the admin API and metrics (never reset; kept across reloads).
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> probes_passed{0};
  std::atomic<uint64_t> probes_failed{0};

  static int64_t now_ns() { return std::chrono::steady_clock::now().time_since_epoch().count(); }
  bool ejected(int64_t now = now_ns()) const {
    int64_t until = ejected_until_ns.load(std::memory_order_relaxed);
    return until != 0 && now < until;
  }
  bool unreachable(int64_t now = now_ns()) const {
    int64_t until = unreachable_until_ns.load(std::memory_order_relaxed);
    return until != 0 && now < until;
  }
  // Up by the health checks, not ejected by passive checks, not found unreachable.
  bool in_rotation() const {
    if (!up.load(std::memory_order_relaxed)) return false;
    if (ejected_until_ns.load(std::memory_order_relaxed) == 0 &&
        unreachable_until_ns.load(std::memory_order_relaxed) == 0)
      return true;  // the common case reads no clock
    int64_t now = now_ns();
    return !ejected(now) && !unreachable(now);
  }
  // May take a request of a client it already serves (sticky cookie, a replay of the same
  // request): in rotation and not in maintenance.
  bool takes_known() const {
    return admin.load(std::memory_order_relaxed) != AdminState::Maint && in_rotation();
  }
  // May be picked for a new client: in rotation and ready.
  bool takes_new() const {
    return admin.load(std::memory_order_relaxed) == AdminState::Ready && in_rotation();
  }
};

struct ServerInfo {
  uint32_t weight = 1;
  ServerState* state = nullptr;
  // Stable identity (the config's server name): the consistent hashes place a server by its name,
  // never by its position, so every worker and every weir instance builds the same table.
  // Empty = "#<index>".
  std::string_view name;
  int64_t slow_start_ns = 0;  // the backend's slow_start (0 = off)
  bool available() const { return weight > 0 && state->takes_new(); }
};

}  // namespace weir::model
