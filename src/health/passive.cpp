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

}  // namespace weir::health
