#include "cluster/limit_sync.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "model/client_table.hpp"

namespace weir::cluster {

// Lua numbers are doubles: µs of TIME (about 2^51 today) are exact, and tat is written with
// %.0f (tostring would round it to 14 digits). TIME before a write needs effects replication,
// the default since Redis 5 (replicate_commands() turns it on in older ones).
const std::string_view LimitSync::kScript = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local id = ARGV[1]
local nrate = tonumber(ARGV[2])
local nconn = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local out = {}
for i = 1, nrate do
  local key = KEYS[i]
  local tokens = tonumber(ARGV[2 + 3 * i])
  local interval = tonumber(ARGV[3 + 3 * i])
  local cap = tonumber(ARGV[4 + 3 * i])
  local tat = tonumber(redis.call('GET', key) or 0) or 0
  if tat < now then tat = now end
  if tokens > 0 then
    tat = math.min(tat + tokens * interval, now + cap)
    redis.call('SET', key, string.format('%.0f', tat), 'PX',
               string.format('%.0f', math.floor((tat - now) / 1000) + 1000))
  end
  out[i] = math.floor(tat - now)
end
local now_ms = math.floor(now / 1000)
local deadline = string.format('%.0f', now_ms + ttl)
local base = 4 + 3 * nrate
for j = 1, nconn do
  local key = KEYS[nrate + j]
  local conns = tonumber(ARGV[base + 3 * j - 2])
  local max = tonumber(ARGV[base + 3 * j - 1])
  local full = KEYS[nrate + nconn + tonumber(ARGV[base + 3 * j])]
  if conns > 0 then
    redis.call('HSET', key, id, string.format('%d:', conns) .. deadline)
    if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  else
    redis.call('HDEL', key, id)
  end
  local others = 0
  local all = redis.call('HGETALL', key)
  for k = 1, #all, 2 do
    if all[k] ~= id then
      local c, at = string.match(all[k + 1], '^(%d+):(%d+)$')
      if c and tonumber(at) > now_ms then
        others = others + tonumber(c)
      else
        redis.call('HDEL', key, all[k])
      end
    end
  end
  out[nrate + j] = others
  if conns + others >= max then
    redis.call('ZADD', full, deadline, string.sub(key, -16))
    if redis.call('PTTL', full) < ttl then redis.call('PEXPIRE', full, ttl) end
  else
    redis.call('ZREM', full, string.sub(key, -16))
  end
end
for f = nrate + nconn + 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[f], '-inf', now_ms)
  out[f] = redis.call('ZRANGE', KEYS[f], 0, 1023)
end
return out
)lua";

namespace {

uint64_t random_id() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0)
    id = (uint64_t{rd()} << 32) ^ rd();
  return id;
}

}  // namespace

LimitSync::LimitSync(std::string prefix, std::chrono::milliseconds interval, uint64_t instance_id)
    : prefix_(std::move(prefix)),
      interval_(interval),
      id_(fmt::format("{:016x}", instance_id != 0 ? instance_id : random_id())) {}

std::string LimitSync::conn_key(std::string_view prefix, std::string_view listener, uint64_t key) {
  return fmt::format("{}cn:{}:{:016x}", prefix, listener, key);
}

std::string LimitSync::full_key(std::string_view prefix, std::string_view listener) {
  return fmt::format("{}cf:{}", prefix, listener);
}

bool LimitSync::parse_key(std::string_view hex, uint64_t& key) {
  if (hex.size() != 16) return false;
  uint64_t v = 0;
  for (char ch : hex) {
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  key = v;
  return true;
}

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
    if (!l.table || !l.table->shared() || l.rate <= 0) continue;
    taken.clear();
    l.table->drain_taken(taken, kMaxKeysPerSync - batch.entries.size());
    for (const auto& t : taken)
      batch.entries.push_back({li, t.slot, t.key, t.tokens});
  }
  if (n > 0) first_ = (first_ + 1) % n;

  // Connections: each table's listed slots (every table is asked, with no room left too: it
  // still maintains its list and says how long it is), and its full keys.
  batch.conns.clear();
  batch.fulls.clear();
  std::vector<size_t> full_index(n, 0);  // 1-based among the sets
  std::vector<model::ClientTable::ConnCount> counts;
  size_t listed = 0;
  for (size_t k = 0; k < n; ++k) {
    size_t li = (first_conn_ + k) % n;
    const SharedLimit& l = limits_[li];
    if (!l.table || !l.table->shared() || l.max_connections == 0) continue;
    batch.fulls.push_back(li);
    full_index[li] = batch.fulls.size();
    counts.clear();
    listed += l.table->collect_conns(counts, kMaxKeysPerSync - batch.conns.size());
    for (const auto& c : counts)
      batch.conns.push_back({li, c.slot, c.key, c.conns});
  }
  if (n > 0) first_conn_ = (first_conn_ + 1) % n;

  // The TTL of this round's counts: when this instance will have published them again at the
  // latest. A round may be max(1 s, 3 × interval) late before it counts as failed; a table's
  // rotation through its listed slots takes ceil(listed / kMaxKeysPerSync) of the rounds it
  // comes first in, one in n.
  const int64_t interval_ms = std::max<int64_t>(interval_.count(), 1);
  const int64_t cycle = static_cast<int64_t>((listed + kMaxKeysPerSync - 1) / kMaxKeysPerSync);
  const int64_t ttl_ms = std::max<int64_t>(1000, 3 * interval_ms) +
                         interval_ms * std::max<int64_t>(static_cast<int64_t>(n) * cycle - 1, 0);

  batch.args.reserve(7 + batch.entries.size() * 4 + batch.conns.size() * 4 + batch.fulls.size());
  batch.args.emplace_back("EVAL");
  batch.args.emplace_back(kScript);
  batch.args.push_back(
      std::to_string(batch.entries.size() + batch.conns.size() + batch.fulls.size()));
  for (const auto& e : batch.entries)
    batch.args.push_back(redis_key(prefix_, limits_[e.limit].listener, e.key));
  for (const auto& c : batch.conns)
    batch.args.push_back(conn_key(prefix_, limits_[c.limit].listener, c.key));
  for (size_t li : batch.fulls)
    batch.args.push_back(full_key(prefix_, limits_[li].listener));
  batch.args.push_back(id_);
  batch.args.push_back(std::to_string(batch.entries.size()));
  batch.args.push_back(std::to_string(batch.conns.size()));
  batch.args.push_back(std::to_string(ttl_ms));
  const double interval_us = static_cast<double>(interval_.count()) * 1000;
  for (const auto& e : batch.entries) {
    const SharedLimit& l = limits_[e.limit];
    double t_us = 1e6 / std::max(l.rate, 1e-6);
    double cap_us = kDebtCapInstances * (std::max(l.burst, 1.0) * t_us + interval_us);
    batch.args.push_back(std::to_string(e.tokens));
    batch.args.push_back(fmt::format("{:.3f}", t_us));
    batch.args.push_back(fmt::format("{:.0f}", cap_us));
  }
  for (const auto& c : batch.conns) {
    batch.args.push_back(std::to_string(c.conns));
    batch.args.push_back(std::to_string(limits_[c.limit].max_connections));
    batch.args.push_back(std::to_string(full_index[c.limit]));
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
    l.table->clear_others();
  }
}

void LimitSync::apply(const SyncBatch& batch, std::span<const int64_t> answer,
                      std::span<const std::vector<uint64_t>> full, int64_t now_ns) {
  const size_t n = std::min(batch.entries.size(), answer.size());
  for (size_t i = 0; i < n; ++i) {
    const SyncBatch::Entry& e = batch.entries[i];
    const SharedLimit& l = batch.limits[e.limit];
    int64_t debt_us = std::clamp<int64_t>(answer[i], 0, int64_t{1} << 50);
    l.table->charge(e.slot, e.key, debt_us * 1000, l.rate, now_ns);
  }
  if (answer.size() < batch.entries.size()) return;
  const auto others = answer.subspan(batch.entries.size());
  const size_t m = std::min(batch.conns.size(), others.size());
  for (size_t i = 0; i < m; ++i) {
    const SyncBatch::Conn& c = batch.conns[i];
    batch.limits[c.limit].table->set_others(
        c.slot, c.key, static_cast<uint32_t>(std::clamp<int64_t>(others[i], 0, UINT32_MAX)));
  }
  // Keys at their limit through the other instances: refused here too from now on.
  const size_t f = std::min(batch.fulls.size(), full.size());
  for (size_t i = 0; i < f; ++i) {
    const SharedLimit& l = batch.limits[batch.fulls[i]];
    for (uint64_t key : full[i])
      l.table->adopt(key, l.max_connections, now_ns);
  }
}

}  // namespace weir::cluster
