#include "cluster/limit_sync.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "model/client_table.hpp"

namespace weir::cluster {

// Lua numbers are doubles: µs of TIME (about 2^51 today) are exact, and tat is written with
// %.0f (tostring would round it to 14 digits). TIME before a write needs effects replication,
// the default since Redis 5 (replicate_commands() turns it on in older ones).
const std::string_view LimitSync::kScript = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local tokens = tonumber(ARGV[3 * i - 2])
  local interval = tonumber(ARGV[3 * i - 1])
  local cap = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key) or 0) or 0
  if tat < now then tat = now end
  if tokens > 0 then
    tat = math.min(tat + tokens * interval, now + cap)
    redis.call('SET', key, string.format('%.0f', tat), 'PX',
               string.format('%.0f', math.floor((tat - now) / 1000) + 1000))
  end
  out[i] = math.floor(tat - now)
end
return out
)lua";

std::string LimitSync::redis_key(std::string_view prefix, std::string_view listener, uint64_t key) {
  return fmt::format("{}rl:{}:{:016x}", prefix, listener, key);
}

void LimitSync::collect(SyncBatch& batch) {
  batch.limits = limits_;
  batch.entries.clear();
  batch.args.clear();
  std::vector<model::ClientTable::Taken> taken;
  const size_t n = limits_.size();
  for (size_t k = 0; k < n && batch.entries.size() < kMaxKeysPerSync; ++k) {
    size_t li = (first_ + k) % n;
    const SharedLimit& l = limits_[li];
    if (!l.table || !l.table->shared()) continue;
    taken.clear();
    l.table->drain_taken(taken, kMaxKeysPerSync - batch.entries.size());
    for (const auto& t : taken)
      batch.entries.push_back({li, t.slot, t.key, t.tokens});
  }
  if (n > 0) first_ = (first_ + 1) % n;

  batch.args.reserve(3 + batch.entries.size() * 4);
  batch.args.emplace_back("EVAL");
  batch.args.emplace_back(kScript);
  batch.args.push_back(std::to_string(batch.entries.size()));
  for (const auto& e : batch.entries)
    batch.args.push_back(redis_key(prefix_, limits_[e.limit].listener, e.key));
  const double interval_us = static_cast<double>(interval_.count()) * 1000;
  for (const auto& e : batch.entries) {
    const SharedLimit& l = limits_[e.limit];
    double t_us = 1e6 / std::max(l.rate, 1e-6);
    double cap_us = kDebtCapInstances * (std::max(l.burst, 1.0) * t_us + interval_us);
    batch.args.push_back(std::to_string(e.tokens));
    batch.args.push_back(fmt::format("{:.3f}", t_us));
    batch.args.push_back(fmt::format("{:.0f}", cap_us));
  }
}

void LimitSync::discard() {
  std::vector<model::ClientTable::Taken> taken;
  for (const SharedLimit& l : limits_) {
    if (!l.table || !l.table->shared()) continue;
    for (size_t i = 0; i < l.table->capacity(); i += kMaxKeysPerSync) {
      taken.clear();
      if (l.table->drain_taken(taken, kMaxKeysPerSync) == 0) break;
    }
  }
}

void LimitSync::apply(const SyncBatch& batch, std::span<const int64_t> debts_us, int64_t now_ns) {
  const size_t n = std::min(batch.entries.size(), debts_us.size());
  for (size_t i = 0; i < n; ++i) {
    const SyncBatch::Entry& e = batch.entries[i];
    const SharedLimit& l = batch.limits[e.limit];
    int64_t debt_us = std::clamp<int64_t>(debts_us[i], 0, int64_t{1} << 50);
    l.table->charge(e.slot, e.key, debt_us * 1000, l.rate, now_ns);
  }
}

}  // namespace weir::cluster
