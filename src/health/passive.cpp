#include "health/passive.hpp"

#include <algorithm>

#include "core/log.hpp"

namespace weir::health {

void passive_failure(const model::BackendRuntime& b, size_t server, std::string_view reason,
                     uint16_t status) {
  if (!b.cfg->passive) return;
  const config::Passive& p = *b.cfg->passive;
  auto& st = *b.servers[server].state;
  uint32_t n = st.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n < p.failures || st.ejected()) return;
  size_t out = 0;
  for (const auto& s : b.servers)
    out += s.state->ejected() ? 1 : 0;
  if ((out + 1) * 100 > b.servers.size() * p.max_ejected_percent) {
    log::debug("server {}/{}: {} failures, but {}% of the backend is out already", b.cfg->name,
               b.servers[server].name, n, out * 100 / b.servers.size());
    return;
  }
  uint32_t times = st.ejections.fetch_add(1, std::memory_order_relaxed);
  auto cooldown = p.cooldown * (1 << std::min<uint32_t>(times, 5));
  auto until = std::chrono::steady_clock::now() + cooldown;
  st.ejected_until_ns.store(until.time_since_epoch().count(), std::memory_order_relaxed);
  st.ramp_start_ns.store(until.time_since_epoch().count(), std::memory_order_relaxed);
  st.consecutive_failures.store(0, std::memory_order_relaxed);
  log::warn("server {}/{} ejected for {} ms: {} consecutive failures ({})", b.cfg->name,
            b.servers[server].name, cooldown.count(), n,
            status ? fmt::format("{} {}", reason, status) : std::string(reason));
}

void passive_success(const model::BackendRuntime& b, size_t server) {
  auto& st = *b.servers[server].state;
  if (st.consecutive_failures.load(std::memory_order_relaxed) != 0)
    st.consecutive_failures.store(0, std::memory_order_relaxed);
  if (st.ejections.load(std::memory_order_relaxed) != 0 && !st.ejected()) {
    st.ejections.store(0, std::memory_order_relaxed);
    st.ejected_until_ns.store(0, std::memory_order_relaxed);
  }
}

void connect_failure(const model::BackendRuntime& b, size_t server, std::string_view reason) {
  auto& st = *b.servers[server].state;
  st.connect_failures.fetch_add(1, std::memory_order_relaxed);
  int64_t now = model::ServerState::now_ns();
  int64_t until = st.unreachable_until_ns.load(std::memory_order_relaxed);
  if (until != 0 && now < until) return;  // out already: a failure of the same event
  size_t others = 0;
  for (size_t i = 0; i < b.servers.size(); ++i)
    others += i != server && b.servers[i].state->takes_new() ? 1 : 0;
  if (others == 0) {
    log::debug("server {}/{} unreachable ({}), but it is the last one in rotation", b.cfg->name,
               b.servers[server].name, reason);
    return;
  }
  uint32_t streak = st.unreachable_streak.load(std::memory_order_relaxed);
  auto out = std::min<std::chrono::milliseconds>(
      kUnreachableBase * (int64_t{1} << std::min(streak, 8u)), kUnreachableMax);
  int64_t next = now + std::chrono::nanoseconds(out).count();
  // One worker wins the transition; the others saw the same event.
  if (!st.unreachable_until_ns.compare_exchange_strong(until, next, std::memory_order_relaxed))
    return;
  st.unreachable_since_ns.store(now, std::memory_order_relaxed);
  st.unreachable_streak.store(streak + 1, std::memory_order_relaxed);
  log::warn("server {}/{} unreachable ({}): out of rotation for {} ms", b.cfg->name,
            b.servers[server].name, reason, out.count());
}

void connect_success(const model::BackendRuntime& b, size_t server) {
  auto& st = *b.servers[server].state;
  if (st.unreachable_streak.load(std::memory_order_relaxed) == 0 &&
      st.unreachable_until_ns.load(std::memory_order_relaxed) == 0)
    return;
  st.unreachable_until_ns.store(0, std::memory_order_relaxed);
  st.unreachable_streak.store(0, std::memory_order_relaxed);
}

void probe_passed(model::ServerState& st, int64_t started_ns) {
  st.probes_passed.fetch_add(1, std::memory_order_relaxed);
  if (st.unreachable_until_ns.load(std::memory_order_relaxed) == 0) return;
  if (st.unreachable_since_ns.load(std::memory_order_relaxed) > started_ns) return;
  st.unreachable_until_ns.store(0, std::memory_order_relaxed);
  st.unreachable_streak.store(0, std::memory_order_relaxed);
}

}  // namespace weir::health
