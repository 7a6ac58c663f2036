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
//
// max_connections: nothing may wait for Redis at accept, so every instance publishes its open
// connections per key and limits on its own count plus the others' as last read
// (ClientTable::collect_conns / set_others, "Shared tables" in model/client_table.hpp). In the
// same EVAL, for each key listed this round, `PREFIX cn:LISTENER:KEYHEX` is a hash of
// instance id (16 hex digits, random at start) → "COUNT:DEADLINE" (DEADLINE in ms of Redis's
// TIME); a count of 0 deletes the instance's field (a hash with no field is gone). The script
// sums the other instances' fields whose deadline has not passed and deletes the expired ones
// (an instance that died or lost Redis), and keeps the hash's PEXPIRE at least the TTL. TTL:
// the time by which the instance publishes again: max(1 s, 3 × sync_interval) (a round may be
// that late before it counts as failed) plus a sync_interval per extra round the rotation
// needs when more than kMaxKeysPerSync keys are listed.
//
// An instance lists only keys it has (or had) connections of, so it would not know of a key
// that is at its limit through the other instances. Hence the "full" keys: when the fleet's
// total of a key (this instance's count + the others') is at or above its max_connections, the
// script adds KEYHEX to the sorted set `PREFIX cf:LISTENER` (score: the DEADLINE), and removes
// it once below; every round reads each listener's set (expired members removed first; at most
// kMaxKeysPerSync of them) and the instance adopts the keys it does not list yet
// (ClientTable::adopt: inserted if need be, `others` = max_connections, listed from then on, so
// the next round reads the true count). The set expires by PEXPIRE like the hashes.
//
// Connection overshoot: an instance admits while its own count plus the others' (as of its
// last answered round) is below max_connections. What it learns late is what the others
// admitted since their last round: so the fleet's total for a key exceeds max_connections by at
// most what the instances admit between two of their rounds, each at most max_connections
// minus the total it knew of. For a key an instance does not list yet (no connection of it
// there) it knew of nothing: up to max_connections blind until its next round, unless the key
// was already full (then it was adopted and is refused). Worst case, N instances each offered
// a new key's connections within one interval: N × max_connections. Connections already
// admitted are never closed; the total falls back as they end.
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
  double rate = 0;               // tokens a second
  double burst = 0;              // bucket size
  uint32_t max_connections = 0;  // 0: connections are not shared (no max_connections)
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
  struct Conn {
    size_t limit = 0;  // index in `limits`
    uint32_t slot = 0;
    uint64_t key = 0;
    uint32_t conns = 0;
  };
  std::vector<Entry> entries;
  std::vector<Conn> conns;
  std::vector<size_t> fulls;  // the limits (index) whose set of full keys is read
  // "EVAL", script, numkeys, the rate keys, the connection hashes, the full sets; instance id,
  // number of rate keys, number of hashes, TTL in ms, 3 values a rate key, 3 a hash.
  std::vector<std::string> args;
  int64_t sent_ns = 0;  // steady clock, when the round went out
};

class LimitSync {
 public:
  static constexpr size_t kMaxKeysPerSync = 1024;  // rate keys a round; as many connection keys
  static constexpr double kDebtCapInstances = 16;
  // KEYS: the fleet's buckets, the connection hashes, the sets of full keys. ARGV: this
  // instance's id, the number of buckets, the number of hashes, the TTL of this round's counts
  // in ms, three a bucket (tokens granted since the last round, T in µs, the debt cap in µs),
  // three a hash (this instance's open connections, max_connections, the index of its
  // listener's set among the sets, from 1). Returns the debt of every bucket in µs (0: full),
  // the other instances' connections of every hash, then every set's members (KEYHEX).
  static const std::string_view kScript;

  // instance_id 0: a random one.
  LimitSync(std::string prefix, std::chrono::milliseconds interval, uint64_t instance_id = 0);

  void set_limits(std::vector<SharedLimit> limits) { limits_ = std::move(limits); }
  const std::vector<SharedLimit>& limits() const { return limits_; }

  // Drains the tables' counts into a new round (empty entries: nothing to share, the EVAL still
  // goes out as the fleet's heartbeat).
  void collect(SyncBatch& batch);
  // Redis unreachable: drains the counts and forgets them (local limits only; counts held back
  // would charge old requests as new debt once Redis is back), and forgets the other
  // instances' connections (each instance limits on its own).
  void discard();
  // The answer: the fleet's debt of each entry in µs, in order, then the others' connections
  // of each `conns` entry; `full`: the full keys of each of `fulls` (KEYHEX parsed). `now_ns`:
  // steady clock.
  static void apply(const SyncBatch& batch, std::span<const int64_t> answer,
                    std::span<const std::vector<uint64_t>> full, int64_t now_ns);
  static void apply(const SyncBatch& batch, std::span<const int64_t> answer, int64_t now_ns) {
    apply(batch, answer, {}, now_ns);
  }
  // How many values the answer to `batch` has: answer_numbers() integers, then one array of
  // strings per `fulls` entry.
  static size_t answer_numbers(const SyncBatch& batch) {
    return batch.entries.size() + batch.conns.size();
  }
  static size_t answer_size(const SyncBatch& batch) {
    return answer_numbers(batch) + batch.fulls.size();
  }
  // 16 hex digits → the key; false if it is not that.
  static bool parse_key(std::string_view hex, uint64_t& key);

  // PREFIX "rl:" LISTENER ":" 16 hex digits of the key's hash.
  static std::string redis_key(std::string_view prefix, std::string_view listener, uint64_t key);
  // PREFIX "cn:" LISTENER ":" 16 hex digits of the key's hash.
  static std::string conn_key(std::string_view prefix, std::string_view listener, uint64_t key);
  // PREFIX "cf:" LISTENER: the listener's full keys.
  static std::string full_key(std::string_view prefix, std::string_view listener);
  const std::string& instance_id() const { return id_; }

 private:
  std::string prefix_;
  std::chrono::milliseconds interval_;
  std::string id_;  // 16 hex digits
  std::vector<SharedLimit> limits_;
  size_t first_ = 0;       // the table a round starts with, rotated so none is starved
  size_t first_conn_ = 0;  // the same for connections
};

}  // namespace weir::cluster
