// cluster::LimitSync, the merge of shared client limits, against a fake Redis that runs the
// script's arithmetic in C++ (no Redis needed): the fleet's total converges on the shared rate
// within the stated overshoot, instances without a sync pass the rate each, counts taken while
// Redis is away are forgotten, at most kMaxKeysPerSync keys go out a round and none is lost,
// and the per-slot counts stay exact under concurrent takes. Shared max_connections
// (SharedConnections): instances see each other's open connections after a round, a key full
// elsewhere is refused before any connection of it, a vanished instance's counts expire, nothing
// stays in Redis or in the lists once every connection is closed, Redis down means local
// counts, a reclaimed slot inherits nothing, keys a round stay bounded.
#include "cluster/limit_sync.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "model/client_table.hpp"

namespace weir::cluster {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kT0 = 5'000 * kSec;

// The script's arithmetic (LimitSync::kScript) over the EVAL's arguments, in Redis's own clock
// (deliberately unrelated to the instances' steady clocks): the rate buckets, the connection
// hashes (instance id → "COUNT:DEADLINE_MS", expiring as a whole by PEXPIRE) and the sets of
// full keys (KEYHEX → DEADLINE_MS).
class FakeRedis {
 public:
  std::vector<int64_t> eval(const SyncBatch& b, int64_t local_ns) {
    EXPECT_EQ(b.args.at(0), "EVAL");
    EXPECT_EQ(b.args.at(1), LimitSync::kScript);
    const size_t nkeys = std::stoul(b.args.at(2));
    const std::string id = b.args.at(3 + nkeys);
    const size_t n = std::stoul(b.args.at(4 + nkeys));
    const size_t nconn = std::stoul(b.args.at(5 + nkeys));
    const int64_t ttl = std::stoll(b.args.at(6 + nkeys));
    EXPECT_LE(n + nconn, nkeys);
    EXPECT_EQ(b.args.size(), 7 + nkeys + 3 * n + 3 * nconn);
    EXPECT_EQ(id.size(), 16u);
    const double now = static_cast<double>(local_ns / 1000 + kClockOffsetUs);
    const int64_t now_ms = static_cast<int64_t>(now / 1000);
    expire(now_ms);
    if (nconn > 0) ttls_.push_back(ttl);
    std::vector<int64_t> out;
    const size_t argv = 7 + nkeys;  // ARGV[5]
    for (size_t i = 0; i < n; ++i) {
      const std::string& key = b.args[3 + i];
      double tokens = std::stod(b.args[argv + 3 * i]);
      double interval = std::stod(b.args[argv + 3 * i + 1]);
      double cap = std::stod(b.args[argv + 3 * i + 2]);
      auto it = tat_.find(key);
      double tat = it == tat_.end() || it->second.expires <= now ? 0 : it->second.tat;
      tat = std::max(tat, now);
      if (tokens > 0) {
        tat = std::min(tat + tokens * interval, now + cap);
        tat_[key] = {std::round(tat), now + std::floor((tat - now) / 1000) * 1000 + 1'000'000};
      }
      out.push_back(static_cast<int64_t>(std::floor(tat - now)));
    }
    for (size_t j = 0; j < nconn; ++j) {
      const std::string& key = b.args[3 + n + j];
      const int64_t conns = std::stoll(b.args[argv + 3 * n + 3 * j]);
      const int64_t max = std::stoll(b.args[argv + 3 * n + 3 * j + 1]);
      const size_t fi = std::stoul(b.args[argv + 3 * n + 3 * j + 2]);
      EXPECT_GE(fi, 1u);
      EXPECT_LE(n + nconn + fi, nkeys);
      const std::string& full = b.args[3 + n + nconn + fi - 1];
      if (conns > 0) {
        Hash& h = hashes_[key];
        h.fields[id] = std::to_string(conns) + ":" + std::to_string(now_ms + ttl);
        if (h.expires_ms < now_ms + ttl) h.expires_ms = now_ms + ttl;  // PTTL < ttl: PEXPIRE
      } else if (auto it = hashes_.find(key); it != hashes_.end()) {
        it->second.fields.erase(id);
      }
      int64_t others = 0;
      if (auto it = hashes_.find(key); it != hashes_.end()) {
        for (auto f = it->second.fields.begin(); f != it->second.fields.end();) {
          if (f->first == id) {
            ++f;
            continue;
          }
          size_t colon = f->second.find(':');
          int64_t deadline = std::stoll(f->second.substr(colon + 1));
          if (deadline > now_ms) {
            others += std::stoll(f->second.substr(0, colon));
            ++f;
          } else {
            f = it->second.fields.erase(f);
          }
        }
        if (it->second.fields.empty()) hashes_.erase(it);  // Redis drops an empty hash
      }
      out.push_back(others);
      const std::string member = key.substr(key.size() - 16);
      if (conns + others >= max) {
        Set& z = sets_[full];
        z.members[member] = now_ms + ttl;
        if (z.expires_ms < now_ms + ttl) z.expires_ms = now_ms + ttl;
      } else if (auto it = sets_.find(full); it != sets_.end()) {
        it->second.members.erase(member);
        if (it->second.members.empty()) sets_.erase(it);
      }
    }
    full_.clear();
    for (size_t f = n + nconn; f < nkeys; ++f) {
      std::vector<uint64_t> keys;
      if (auto it = sets_.find(b.args[3 + f]); it != sets_.end()) {
        std::erase_if(it->second.members, [&](const auto& m) { return m.second <= now_ms; });
        for (const auto& [member, deadline] : it->second.members) {
          uint64_t k = 0;
          EXPECT_TRUE(LimitSync::parse_key(member, k)) << member;
          keys.push_back(k);
        }
        if (it->second.members.empty()) sets_.erase(it);
      }
      full_.push_back(std::move(keys));
    }
    return out;
  }
  // The full keys read by the last eval(), one list a set.
  const std::vector<std::vector<uint64_t>>& full() const { return full_; }
  size_t keys() const { return tat_.size() + hashes_.size() + sets_.size(); }
  size_t conn_keys() const { return hashes_.size(); }
  size_t fields(const std::string& key) const {
    auto it = hashes_.find(key);
    return it == hashes_.end() ? 0 : it->second.fields.size();
  }
  size_t full_members(const std::string& key) const {
    auto it = sets_.find(key);
    return it == sets_.end() ? 0 : it->second.members.size();
  }
  const std::vector<int64_t>& ttls() const { return ttls_; }
  void expire(int64_t now_ms) {
    std::erase_if(hashes_, [&](const auto& h) { return h.second.expires_ms <= now_ms; });
    std::erase_if(sets_, [&](const auto& z) { return z.second.expires_ms <= now_ms; });
  }
  void flush() {  // a restarted Redis (no persistence)
    tat_.clear();
    hashes_.clear();
    sets_.clear();
  }

 private:
  static constexpr int64_t kClockOffsetUs = 1'700'000'000'000'000 - 5'000'000'000;
  struct Entry {
    double tat;
    double expires;
  };
  struct Hash {
    std::map<std::string, std::string> fields;
    int64_t expires_ms = 0;
  };
  struct Set {
    std::map<std::string, int64_t> members;
    int64_t expires_ms = 0;
  };
  std::map<std::string, Entry> tat_;
  std::map<std::string, Hash> hashes_;
  std::map<std::string, Set> sets_;
  std::vector<int64_t> ttls_;
  std::vector<std::vector<uint64_t>> full_;
};

struct Instance {
  std::shared_ptr<model::ClientTable> table;
  LimitSync sync;
  uint64_t allowed = 0;

  Instance(double rate, double burst, std::chrono::milliseconds interval)
      : table(std::make_shared<model::ClientTable>(1024, std::chrono::seconds(60), true)),
        sync("weir:", interval) {
    sync.set_limits({{"web", table, rate, burst}});
  }
};

struct Scenario {
  double rate = 20;
  double burst = 20;
  int instances = 2;
  int64_t interval_ms = 100;
  int64_t request_every_ns = 5 * kMs;  // 200 requests a second, well above the rate
  int64_t seconds = 10;
  bool redis_up = true;
};

// A client alternating its requests over the instances; each instance syncs every interval
// (staggered). Returns the requests allowed by each instance.
std::vector<uint64_t> run(const Scenario& sc, FakeRedis& redis, int64_t start = kT0) {
  std::vector<std::unique_ptr<Instance>> fleet;
  for (int i = 0; i < sc.instances; ++i)
    fleet.push_back(
        std::make_unique<Instance>(sc.rate, sc.burst, std::chrono::milliseconds(sc.interval_ms)));
  const int64_t interval = sc.interval_ms * kMs;
  std::vector<int64_t> next_sync;
  for (int i = 0; i < sc.instances; ++i)
    next_sync.push_back(start + interval * (i + 1) / sc.instances);
  int turn = 0;
  for (int64_t now = start; now < start + sc.seconds * kSec; now += sc.request_every_ns) {
    for (int i = 0; i < sc.instances; ++i) {
      while (next_sync[i] <= now) {
        SyncBatch b;
        if (sc.redis_up) {
          fleet[i]->sync.collect(b);
          LimitSync::apply(b, redis.eval(b, next_sync[i]), next_sync[i]);
        } else {
          fleet[i]->sync.discard();
        }
        next_sync[i] += interval;
      }
    }
    Instance& in = *fleet[turn++ % sc.instances];
    if (in.table->take(42, sc.rate, sc.burst, now).allowed) ++in.allowed;
  }
  std::vector<uint64_t> out;
  for (auto& in : fleet)
    out.push_back(in->allowed);
  return out;
}

uint64_t sum(const std::vector<uint64_t>& v) {
  uint64_t s = 0;
  for (uint64_t x : v)
    s += x;
  return s;
}

TEST(LimitSync, TwoInstancesShareTheRate) {
  Scenario sc;
  FakeRedis redis;
  auto allowed = run(sc, redis);
  const double ideal = sc.rate * static_cast<double>(sc.seconds) + sc.burst;  // 220
  // The bound: each instance may pass blind what its own bucket holds between two rounds.
  const double overshoot = sc.instances * (sc.burst + sc.rate * sc.interval_ms / 1000.0);
  double total = static_cast<double>(sum(allowed));
  EXPECT_GE(total, ideal - sc.rate * sc.interval_ms / 1000.0) << allowed[0] << "+" << allowed[1];
  EXPECT_LE(total, ideal + overshoot) << allowed[0] << "+" << allowed[1];
  // Both instances served (the client spread its requests over both).
  EXPECT_GT(allowed[0], 0u);
  EXPECT_GT(allowed[1], 0u);
}

TEST(LimitSync, LongRunConvergesOnTheRate) {
  // Over a long window the blind overshoot is paid back: the rate, not N × the rate.
  Scenario sc;
  sc.seconds = 60;
  sc.instances = 3;
  FakeRedis redis;
  double total = static_cast<double>(sum(run(sc, redis)));
  double ideal = sc.rate * 60 + sc.burst;
  EXPECT_LE(total, ideal + sc.instances * (sc.burst + sc.rate * 0.1));
  EXPECT_GE(total, ideal - sc.rate * 0.1);
}

TEST(LimitSync, WithoutRedisEachInstancePassesTheRate) {
  Scenario sc;
  sc.redis_up = false;
  FakeRedis redis;
  auto allowed = run(sc, redis);
  for (uint64_t a : allowed) {
    EXPECT_GE(a, 215u);  // rate × 10 s + burst, each
    EXPECT_LE(a, 221u);
  }
  EXPECT_EQ(redis.keys(), 0u);
}

TEST(LimitSync, CountsTakenWhileRedisWasAwayAreForgotten) {
  Instance a(20, 20, std::chrono::milliseconds(100));
  int64_t now = kT0;
  for (int i = 0; i < 20; ++i)
    EXPECT_TRUE(a.table->take(7, 20, 20, now).allowed);
  a.sync.discard();  // Redis down at the round
  SyncBatch b;
  a.sync.collect(b);
  EXPECT_TRUE(b.entries.empty());
  // The round still goes out: EVAL, script, 0 keys, id, 0 buckets, 0 hashes, TTL.
  EXPECT_EQ(b.args.size(), 7u);
  EXPECT_EQ(b.args[2], "0");
  EXPECT_EQ(b.args[4], "0");
  EXPECT_EQ(b.args[5], "0");
}

TEST(LimitSync, OthersRequestsAreChargedLocally) {
  FakeRedis redis;
  Instance a(10, 10, std::chrono::milliseconds(100));
  Instance b(10, 10, std::chrono::milliseconds(100));
  int64_t now = kT0;
  // B spends the whole burst; A has not seen the key yet.
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(b.table->take(9, 10, 10, now).allowed);
  SyncBatch rb;
  b.sync.collect(rb);
  ASSERT_EQ(rb.entries.size(), 1u);
  EXPECT_EQ(rb.entries[0].tokens, 10u);
  LimitSync::apply(rb, redis.eval(rb, now), now);
  // A learns of it at its next round (it takes one token blind, which is charged too).
  ASSERT_TRUE(a.table->take(9, 10, 10, now).allowed);
  SyncBatch ra;
  a.sync.collect(ra);
  auto debts = redis.eval(ra, now);
  ASSERT_EQ(debts.size(), 1u);
  EXPECT_EQ(debts[0], 1'100'000);  // 11 tokens at 100 ms each, in µs
  LimitSync::apply(ra, debts, now);
  auto t = a.table->take(9, 10, 10, now + 50 * kMs);
  EXPECT_FALSE(t.allowed);
  EXPECT_EQ(t.retry_after_s, 1u);
  // The debt runs out at the rate: 200 ms later one token is back (tat - now ≤ 900 ms).
  EXPECT_TRUE(a.table->take(9, 10, 10, now + 200 * kMs).allowed);
}

TEST(LimitSync, ChargeOnlyMovesForwardAndOnlyItsKey) {
  model::ClientTable t(1024, std::chrono::seconds(60), true);
  int64_t now = kT0;
  ASSERT_TRUE(t.take(5, 1, 1, now).allowed);  // tat = now + 1 s
  std::vector<model::ClientTable::Taken> taken;
  ASSERT_EQ(t.drain_taken(taken, 10), 1u);
  const auto slot = taken[0].slot;
  const auto key = taken[0].key;
  t.charge(slot, key, 100 * kMs, 1, now);  // less debt than the local bucket's: no change
  EXPECT_FALSE(t.take(5, 1, 1, now + 999 * kMs).allowed);
  EXPECT_TRUE(t.take(5, 1, 1, now + 1000 * kMs).allowed);  // tat = now + 2 s
  t.charge(slot, key + 1, 60 * kSec, 1, now);              // another key: ignored
  EXPECT_TRUE(t.take(5, 1, 1, now + 2000 * kMs).allowed);
  // Tokens taken since the drain are added to the fleet's debt (not yet in it).
  t.charge(slot, key, 5 * kSec, 1, now + 2000 * kMs);  // 2 pending tokens: tat = +7 s
  auto r = t.take(5, 1, 1, now + 2000 * kMs);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_s, 7u);
}

TEST(LimitSync, BoundedKeysARoundAndNoneLost) {
  auto table = std::make_shared<model::ClientTable>(8192, std::chrono::seconds(60), true);
  LimitSync sync("p:", std::chrono::milliseconds(100));
  sync.set_limits({{"api", table, 5, 5}});
  const size_t keys = 3000;
  for (uint64_t k = 0; k < keys; ++k)
    ASSERT_TRUE(table->take(1000 + k, 5, 5, kT0).allowed);
  std::set<uint64_t> seen;
  size_t rounds = 0;
  for (;;) {
    SyncBatch b;
    sync.collect(b);
    if (b.entries.empty()) break;
    ++rounds;
    EXPECT_LE(b.entries.size(), LimitSync::kMaxKeysPerSync);
    size_t n = b.entries.size();
    EXPECT_EQ(b.args[2], std::to_string(n));
    EXPECT_EQ(b.args[3 + n], sync.instance_id());
    EXPECT_EQ(b.args[4 + n], std::to_string(n));
    EXPECT_EQ(b.args[5 + n], "0");  // no connection hash: rate only
    for (size_t i = 0; i < n; ++i) {
      EXPECT_TRUE(seen.insert(b.entries[i].key).second);
      EXPECT_EQ(b.entries[i].tokens, 1u);
      EXPECT_EQ(b.args[3 + i], LimitSync::redis_key("p:", "api", b.entries[i].key));
      EXPECT_EQ(b.args[7 + n + 3 * i], "1");
      EXPECT_EQ(b.args[7 + n + 3 * i + 1], "200000.000");  // T = 200 ms in µs
      // 16 × (burst × T + interval) = 16 × (1 s + 100 ms)
      EXPECT_EQ(b.args[7 + n + 3 * i + 2], "17600000");
    }
  }
  EXPECT_EQ(seen.size(), keys);
  EXPECT_EQ(rounds, 3u);
}

TEST(LimitSync, RedisKeyNames) {
  EXPECT_EQ(LimitSync::redis_key("weir:", "web", 0xabcULL), "weir:rl:web:0000000000000abc");
  EXPECT_EQ(LimitSync::conn_key("weir:", "web", 0xabcULL), "weir:cn:web:0000000000000abc");
  EXPECT_EQ(LimitSync("p:", std::chrono::milliseconds(100), 0x42).instance_id(),
            "0000000000000042");
  // Random otherwise: two instances differ.
  LimitSync a("p:", std::chrono::milliseconds(100));
  LimitSync b("p:", std::chrono::milliseconds(100));
  EXPECT_EQ(a.instance_id().size(), 16u);
  EXPECT_NE(a.instance_id(), b.instance_id());
}

TEST(LimitSync, UnsharedTablesCountNothing) {
  model::ClientTable t(1024);
  EXPECT_FALSE(t.shared());
  EXPECT_EQ(t.memory_bytes(), 1024u * 32);
  ASSERT_TRUE(t.take(1, 1, 1, kT0).allowed);
  std::vector<model::ClientTable::Taken> taken;
  EXPECT_EQ(t.drain_taken(taken, 10), 0u);
  model::ClientTable s(1024, std::chrono::seconds(60), true);
  EXPECT_EQ(s.memory_bytes(), 1024u * 40);
}

TEST(LimitSync, RefusedRequestsAreNotCounted) {
  model::ClientTable t(1024, std::chrono::seconds(60), true);
  for (int i = 0; i < 10; ++i)
    t.take(3, 1, 2, kT0);  // 2 allowed, 8 refused
  std::vector<model::ClientTable::Taken> taken;
  ASSERT_EQ(t.drain_taken(taken, 10), 1u);
  EXPECT_EQ(taken[0].tokens, 2u);
}

TEST(LimitSync, DrainIsExactUnderConcurrentTakes) {
  model::ClientTable t(1024, std::chrono::seconds(60), true);
  std::atomic<uint64_t> allowed{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        // A huge rate: nearly every take is allowed, over 8 keys.
        if (t.take(static_cast<uint64_t>(i % 8), 1e9, 1e9, kT0 + i).allowed) ++allowed;
      }
    });
  }
  uint64_t drained = 0;
  std::thread drainer([&] {
    std::vector<model::ClientTable::Taken> taken;
    while (!done.load()) {
      taken.clear();
      t.drain_taken(taken, 4);
      for (const auto& x : taken)
        drained += x.tokens;
    }
  });
  for (auto& th : threads)
    th.join();
  done = true;
  drainer.join();
  std::vector<model::ClientTable::Taken> taken;
  t.drain_taken(taken, 100);
  for (const auto& x : taken)
    drained += x.tokens;
  EXPECT_EQ(drained, allowed.load());
}

TEST(LimitSync, RestartedRedisStartsEmptyAndSharesAgain) {
  Scenario sc;
  sc.seconds = 5;
  FakeRedis redis;
  auto first = run(sc, redis);
  redis.flush();
  auto again = run(sc, redis, kT0 + 100 * kSec);
  EXPECT_LE(static_cast<double>(sum(again)),
            sc.rate * 5 + sc.burst + sc.instances * (sc.burst + sc.rate * 0.1));
  (void)first;
}

// --- max_connections shared (ClientTable::collect_conns / set_others, the hashes) ---

constexpr uint32_t kMax = 4;

// An instance of a fleet sharing max_connections only (rate 0) on listener "web".
struct ConnInstance {
  std::shared_ptr<model::ClientTable> table;
  LimitSync sync;
  std::vector<model::ClientTable::Conn> open;

  explicit ConnInstance(size_t capacity = 1024,
                        std::chrono::nanoseconds idle = std::chrono::seconds(60))
      : table(std::make_shared<model::ClientTable>(capacity, idle, true)),
        sync("weir:", std::chrono::milliseconds(100)) {
    sync.set_limits({{"web", table, 0, 0, kMax}});
  }
  // Opens up to `n` connections of `key`; returns how many were admitted (kept open).
  int connect(uint64_t key, int n, int64_t now) {
    int admitted = 0;
    for (int i = 0; i < n; ++i) {
      auto c = table->open_connection(key, kMax, now);
      EXPECT_TRUE(c.tracked);
      if (!c.admitted) continue;
      open.push_back(c);
      ++admitted;
    }
    return admitted;
  }
  void close(int n) {
    for (int i = 0; i < n && !open.empty(); ++i) {
      table->close_connection(open.back());
      open.pop_back();
    }
  }
  SyncBatch round(FakeRedis& redis, int64_t now) {
    SyncBatch b;
    sync.collect(b);
    auto answer = redis.eval(b, now);
    LimitSync::apply(b, answer, redis.full(), now);
    return b;
  }
};

TEST(SharedConnections, ThreeInstancesShareTheLimit) {
  FakeRedis redis;
  ConnInstance a, b, c;
  int64_t now = kT0;
  const uint64_t key = 77;
  const std::string hash = LimitSync::conn_key("weir:", "web", key);
  ASSERT_EQ(a.connect(key, 3, now), 3);
  SyncBatch r = a.round(redis, now);
  ASSERT_EQ(r.conns.size(), 1u);
  EXPECT_EQ(r.conns[0].conns, 3u);
  EXPECT_TRUE(r.entries.empty());  // no rate: nothing drained
  EXPECT_EQ(redis.fields(hash), 1u);
  // B has not synced the key yet: its first connection is admitted blind (the stated overshoot
  // bound), and its round tells it of A's 3.
  ASSERT_EQ(b.connect(key, 1, now), 1);
  b.round(redis, now);
  EXPECT_EQ(redis.fields(hash), 2u);
  EXPECT_EQ(b.connect(key, 1, now), 0);  // 1 here + 3 at A = 4
  a.round(redis, now);                   // A learns of B's 1
  EXPECT_EQ(a.connect(key, 1, now), 0);  // 3 + 1
  // C: one blind, then it knows of 4 and refuses.
  ASSERT_EQ(c.connect(key, 1, now), 1);
  c.round(redis, now);
  EXPECT_EQ(c.table->others(c.open[0].slot), 4u);
  EXPECT_EQ(c.connect(key, 3, now), 0);

  // A closes 2 and C its 1: after their rounds, B may open 2 more (1 + 1 at A = 2 of 4).
  a.close(2);
  c.close(1);
  now += 100 * kMs;
  a.round(redis, now);
  c.round(redis, now);
  b.round(redis, now);
  EXPECT_EQ(b.table->others(b.open[0].slot), 1u);
  EXPECT_EQ(b.connect(key, 5, now), 2);
  EXPECT_EQ(redis.fields(hash), 2u);  // C withdrew its field (HDEL of a count of 0)
}

TEST(SharedConnections, AFullKeyIsRefusedBeforeAnyConnectionOfIt) {
  FakeRedis redis;
  ConnInstance a, b;
  int64_t now = kT0;
  const std::string full = LimitSync::full_key("weir:", "web");
  ASSERT_EQ(a.connect(21, 4, now), 4);
  SyncBatch r = a.round(redis, now);
  EXPECT_EQ(r.fulls.size(), 1u);
  EXPECT_EQ(redis.full_members(full), 1u);  // 4 of 4: full
  // B never had a connection of key 21: its round reads the full keys and adopts it.
  r = b.round(redis, now);
  EXPECT_TRUE(r.conns.empty());
  EXPECT_EQ(b.table->synced_slots(), 1u);
  EXPECT_EQ(b.connect(21, 1, now), 0);
  EXPECT_EQ(b.connect(22, 1, now), 1);  // another key is not affected
  // B's next round reads the true count (4) and keeps refusing; A closes 2: not full any more.
  now += 100 * kMs;
  b.round(redis, now);
  EXPECT_EQ(b.connect(21, 1, now), 0);
  a.close(2);
  a.round(redis, now);
  EXPECT_EQ(redis.full_members(full), 0u);
  b.round(redis, now);
  EXPECT_EQ(b.connect(21, 5, now), 2);  // 2 + 2 at A
  now += 100 * kMs;
  b.round(redis, now);  // publishes its 2
  a.round(redis, now);
  EXPECT_EQ(redis.full_members(full), 1u);  // full again (2 + 2)
  EXPECT_EQ(a.connect(21, 1, now), 0);
  // Everyone closes: nothing stays, in Redis or in the lists.
  a.close(2);
  b.close(3);
  for (int i = 0; i < 3; ++i) {
    now += 100 * kMs;
    a.round(redis, now);
    b.round(redis, now);
  }
  EXPECT_EQ(redis.keys(), 0u);
  EXPECT_EQ(a.table->synced_slots(), 0u);
  EXPECT_EQ(b.table->synced_slots(), 0u);
}

TEST(LimitSync, ParseKey) {
  uint64_t k = 0;
  EXPECT_TRUE(LimitSync::parse_key("00000000000000ff", k));
  EXPECT_EQ(k, 0xffu);
  EXPECT_TRUE(LimitSync::parse_key("fedcba9876543210", k));
  EXPECT_EQ(k, 0xfedcba9876543210ULL);
  EXPECT_FALSE(LimitSync::parse_key("fedcba987654321", k));
  EXPECT_FALSE(LimitSync::parse_key("FEDCBA9876543210", k));
  EXPECT_FALSE(LimitSync::parse_key("fedcba987654321g", k));
  EXPECT_EQ(LimitSync::full_key("weir:", "web"), "weir:cf:web");
}

TEST(SharedConnections, NothingStaysOnceEveryConnectionIsClosed) {
  FakeRedis redis;
  ConnInstance a, b;
  int64_t now = kT0;
  ASSERT_EQ(a.connect(5, 2, now), 2);
  ASSERT_EQ(b.connect(5, 1, now), 1);
  a.round(redis, now);
  b.round(redis, now);
  a.round(redis, now);
  a.close(2);
  b.close(1);
  // Each publishes the drop to 0 once (its field goes; the empty hash goes with it)...
  now += 100 * kMs;
  EXPECT_EQ(a.round(redis, now).conns.size(), 1u);  // 0, B's 1 still read back
  EXPECT_EQ(b.round(redis, now).conns.size(), 1u);  // 0, nothing else
  EXPECT_EQ(redis.conn_keys(), 0u);
  // ...then stops, once the others' count it read back is 0 too.
  now += 100 * kMs;
  EXPECT_EQ(a.round(redis, now).conns.size(), 1u);  // A had read B's 1: reads once more (0)
  EXPECT_EQ(b.round(redis, now).conns.size(), 0u);
  now += 100 * kMs;
  EXPECT_EQ(a.round(redis, now).conns.size(), 0u);
  EXPECT_EQ(a.table->synced_slots(), 0u);
  EXPECT_EQ(b.table->synced_slots(), 0u);
  EXPECT_EQ(redis.keys(), 0u);
  // Keys that never had a connection never go out at all.
  (void)a.table->take(6, 10, 10, now);
  EXPECT_EQ(a.round(redis, now).conns.size(), 0u);
  EXPECT_EQ(redis.keys(), 0u);
}

TEST(SharedConnections, ADisappearedInstancesCountsExpire) {
  FakeRedis redis;
  ConnInstance a, b;
  int64_t now = kT0;
  ASSERT_EQ(a.connect(9, 4, now), 4);
  a.round(redis, now);
  ASSERT_EQ(b.connect(9, 1, now), 1);  // blind
  b.round(redis, now);
  EXPECT_EQ(b.connect(9, 1, now), 0);
  // A is gone (killed: no more rounds, its field stays in Redis until its deadline). B goes on
  // syncing every 100 ms; A's count lasts the TTL it published with: max(1 s, 3 × 100 ms).
  ASSERT_FALSE(redis.ttls().empty());
  EXPECT_EQ(redis.ttls().back(), 1000);
  int64_t refused_until = now;
  for (int i = 1; i <= 15; ++i) {
    now += 100 * kMs;
    b.round(redis, now);
    if (b.table->others(b.open[0].slot) > 0) refused_until = now;
  }
  EXPECT_GE(refused_until, kT0 + 900 * kMs);
  EXPECT_LE(refused_until, kT0 + 1100 * kMs);
  EXPECT_EQ(b.table->others(b.open[0].slot), 0u);
  EXPECT_EQ(redis.fields(LimitSync::conn_key("weir:", "web", 9)), 1u);  // only B's
  EXPECT_EQ(b.connect(9, 5, now), 3);                                   // B alone: 4 in all
}

TEST(SharedConnections, RedisDownEachInstanceLimitsAlone) {
  FakeRedis redis;
  ConnInstance a, b;
  int64_t now = kT0;
  ASSERT_EQ(a.connect(3, 4, now), 4);
  a.round(redis, now);
  ASSERT_EQ(b.connect(3, 1, now), 1);
  b.round(redis, now);
  EXPECT_EQ(b.connect(3, 1, now), 0);
  b.sync.discard();  // Redis unreachable
  EXPECT_EQ(b.table->others(b.open[0].slot), 0u);
  EXPECT_EQ(b.connect(3, 5, now), 3);  // its own limit
  // Back: shared again at the next round (5 over the limit now: nothing more admitted).
  b.round(redis, now + 100 * kMs);
  EXPECT_EQ(b.table->others(b.open[0].slot), 4u);
  b.close(4);
  EXPECT_EQ(b.connect(3, 1, now + 100 * kMs), 0);
}

TEST(SharedConnections, AReclaimedSlotDoesNotInheritOthers) {
  FakeRedis redis;
  ConnInstance a;
  // B: one slot, so a new key reclaims the old key's slot once it has been idle for 1 s.
  ConnInstance b(1, std::chrono::seconds(1));
  int64_t now = kT0;
  ASSERT_EQ(a.connect(11, 4, now), 4);
  a.round(redis, now);
  ASSERT_EQ(b.connect(11, 1, now), 1);
  b.round(redis, now);
  const uint32_t slot = b.open[0].slot;
  EXPECT_EQ(b.table->others(slot), 4u);
  b.close(1);
  now += 100 * kMs;
  b.round(redis, now);  // publishes the drop to 0; A's 4 keeps the slot listed
  EXPECT_EQ(b.table->others(slot), 4u);
  // Key 12, 2 s later (A's sync goes on; B's not yet): it takes the slot, without A's 4.
  now += 2 * kSec;
  a.round(redis, now);
  ASSERT_EQ(b.connect(12, 5, now), 4);
  EXPECT_EQ(b.open[0].slot, slot);
  EXPECT_EQ(b.table->others(slot), 0u);
  // B's next round forgets key 11's listing and lists key 12 the round after.
  SyncBatch r = b.round(redis, now);
  EXPECT_TRUE(r.conns.empty());  // 11 had published 0 already: nothing to withdraw
  r = b.round(redis, now);
  ASSERT_EQ(r.conns.size(), 1u);
  EXPECT_EQ(r.conns[0].conns, 4u);
  EXPECT_EQ(redis.fields(LimitSync::conn_key("weir:", "web", 12)), 1u);
  EXPECT_EQ(b.table->others(slot), 0u);
  // A stale answer for key 11 (a reply in flight while the slot changed key) is not applied.
  b.table->set_others(slot, r.conns[0].key + 1, 9);
  EXPECT_EQ(b.table->others(slot), 0u);
}

TEST(SharedConnections, BoundedKeysARoundRotatedAndTtlCoversTheRotation) {
  FakeRedis redis;
  ConnInstance a(8192);
  const size_t keys = 3000;
  for (uint64_t k = 0; k < keys; ++k)
    ASSERT_EQ(a.connect(1000 + k, 1, kT0), 1);
  std::set<uint64_t> seen;
  for (int round = 0; round < 3; ++round) {
    SyncBatch b = a.round(redis, kT0);
    EXPECT_LE(b.conns.size(), LimitSync::kMaxKeysPerSync);
    for (const auto& c : b.conns)
      seen.insert(c.key);
  }
  EXPECT_EQ(seen.size(), keys);  // all within ceil(3000 / 1024) = 3 rounds
  EXPECT_EQ(redis.conn_keys(), keys);
  // The TTL covers the rotation: 1 s + 2 more rounds of 100 ms.
  EXPECT_EQ(redis.ttls().back(), 1200);
}

TEST(SharedConnections, OnlyMaxConnectionsIsSharedWhenThereIsNoRate) {
  // A rate-only shared listener lists no connections (its max_connections is 0).
  FakeRedis redis;
  Instance in(10, 10, std::chrono::milliseconds(100));
  (void)in.table->open_connection(4, 1000, kT0);
  SyncBatch b;
  in.sync.collect(b);
  EXPECT_TRUE(b.conns.empty());
}

}  // namespace
}  // namespace weir::cluster
