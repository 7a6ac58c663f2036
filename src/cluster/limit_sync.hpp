#pragma once
// The merge of `client_limits` with `shared: true` across a fleet (fleet.md), without Redis
// itself: what one sync round sends and what it does with the answer. RedisSync (redis_sync.hpp)
// runs a round every cluster.sync_interval on its own thread; tests drive this against a fake.
//
// The fleet keeps one GCRA bucket per shared key in Redis, like the local one (model/
// client_table.hpp) but in Redis's clock: `PREFIX rl:LISTENER:KEYHEX` holds the fleet's tat in
// µs of Redis's TIME. A round, for every key this instance granted tokens to since the last
// round (ClientTable::drain_taken), charges them to the fleet's bucket (tat = max(tat, now) +
// tokens·T) and reads back the fleet's debt (tat - now: what every instance together took
// beyond the refill). The local bucket is then set at least that empty (ClientTable::charge:
// tat = max(tat, now + debt + tokens taken here since the drain · T)), so every instance sees
// the others' requests within one round. Everything is in one EVAL (kScript) a round: one round
// trip, atomic per key, the fleet's clock (TIME) so that instances' clocks do not matter.
//
// Overshoot: between two rounds an instance limits on its own bucket, so it passes at most what
// that bucket holds (burst) plus what refills in the interval (rate × sync_interval) without
// knowing the others' requests; the fleet's total over any window exceeds rate × window + burst
// by at most that much per instance. Those extra tokens are charged to the fleet's bucket too
// (its debt may exceed burst), so they are paid back by refusing later: over a long window the
// fleet's total converges on the rate. Capping the debt at burst would forgive them every round
// and let N instances pass N × rate for ever. The debt is capped at kDebtCapInstances blind
// overshoots (16 × (burst + rate × sync_interval) tokens) only so that no key can be blocked
// for longer than that by a misconfigured instance.
//
// Keys in Redis expire once their bucket is full again (PX = debt + 1 s): a key holds memory in
// Redis only while it is in debt. At most kMaxKeysPerSync keys go out a round; the others keep
// their counts for the next one (drain_taken goes on where it stopped).
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace weir::model {
class ClientTable;
}

namespace weir::cluster {

// One listener's shared client_limits, as the snapshot has them.
struct SharedLimit {
  std::string listener;
  std::shared_ptr<model::ClientTable> table;
  double rate = 0;   // tokens a second
  double burst = 0;  // bucket size
};

// One round: the EVAL's arguments and where the answers go back.
struct SyncBatch {
  struct Entry {
    size_t limit = 0;  // index in `limits`
    uint32_t slot = 0;
    uint64_t key = 0;
    uint32_t tokens = 0;
  };
  std::vector<SharedLimit> limits;  // copies: the tables live until the answer is applied
  std::vector<Entry> entries;
  std::vector<std::string> args;  // "EVAL", script, numkeys, keys..., then 3 values a key
  int64_t sent_ns = 0;            // steady clock, when the round went out
};

class LimitSync {
 public:
  static constexpr size_t kMaxKeysPerSync = 1024;
  static constexpr double kDebtCapInstances = 16;
  // KEYS: the fleet's buckets; ARGV, three a key: tokens granted since the last round, T in µs,
  // the debt cap in µs. Returns the debt of every key in µs (0: full bucket).
  static const std::string_view kScript;

  LimitSync(std::string prefix, std::chrono::milliseconds interval)
      : prefix_(std::move(prefix)), interval_(interval) {}

  void set_limits(std::vector<SharedLimit> limits) { limits_ = std::move(limits); }
  const std::vector<SharedLimit>& limits() const { return limits_; }

  // Drains the tables' counts into a new round (empty entries: nothing to share, the EVAL still
  // goes out as the fleet's heartbeat).
  void collect(SyncBatch& batch);
  // Redis unreachable: drains the counts and forgets them (local limits only; counts held back
  // would charge old requests as new debt once Redis is back).
  void discard();
  // The answer: the fleet's debt of each entry in µs, in order. `now_ns`: steady clock.
  static void apply(const SyncBatch& batch, std::span<const int64_t> debts_us, int64_t now_ns);

  // PREFIX "rl:" LISTENER ":" 16 hex digits of the key's hash.
  static std::string redis_key(std::string_view prefix, std::string_view listener, uint64_t key);

 private:
  std::string prefix_;
  std::chrono::milliseconds interval_;
  std::vector<SharedLimit> limits_;
  size_t first_ = 0;  // the table a round starts with, rotated so none is starved
};

}  // namespace weir::cluster
