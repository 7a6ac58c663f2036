// cluster::LimitSync, the merge of shared client limits, against a fake Redis that runs the
// script's arithmetic in C++ (no Redis needed): the fleet's total converges on the shared rate
// within the stated overshoot, instances without a sync pass the rate each, counts taken while
// Redis is away are forgotten, at most kMaxKeysPerSync keys go out a round and none is lost,
// and the per-slot counts stay exact under concurrent takes.
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
// (deliberately unrelated to the instances' steady clocks).
class FakeRedis {
 public:
  std::vector<int64_t> eval(const SyncBatch& b, int64_t local_ns) {
    EXPECT_EQ(b.args.at(0), "EVAL");
    EXPECT_EQ(b.args.at(1), LimitSync::kScript);
    size_t n = std::stoul(b.args.at(2));
    EXPECT_EQ(b.args.size(), 3 + 4 * n);
    const double now = static_cast<double>(local_ns / 1000 + kClockOffsetUs);
    std::vector<int64_t> out;
    for (size_t i = 0; i < n; ++i) {
      const std::string& key = b.args[3 + i];
      double tokens = std::stod(b.args[3 + n + 3 * i]);
      double interval = std::stod(b.args[3 + n + 3 * i + 1]);
      double cap = std::stod(b.args[3 + n + 3 * i + 2]);
      auto it = tat_.find(key);
      double tat = it == tat_.end() || it->second.expires <= now ? 0 : it->second.tat;
      tat = std::max(tat, now);
      if (tokens > 0) {
        tat = std::min(tat + tokens * interval, now + cap);
        tat_[key] = {std::round(tat), now + std::floor((tat - now) / 1000) * 1000 + 1'000'000};
      }
      out.push_back(static_cast<int64_t>(std::floor(tat - now)));
    }
    return out;
  }
  size_t keys() const { return tat_.size(); }
  void flush() { tat_.clear(); }  // a restarted Redis (no persistence)

 private:
  static constexpr int64_t kClockOffsetUs = 1'700'000'000'000'000 - 5'000'000'000;
  struct Entry {
    double tat;
    double expires;
  };
  std::map<std::string, Entry> tat_;
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
  EXPECT_EQ(b.args.size(), 3u);  // the round still goes out: EVAL, script, 0
  EXPECT_EQ(b.args[2], "0");
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
    for (size_t i = 0; i < n; ++i) {
      EXPECT_TRUE(seen.insert(b.entries[i].key).second);
      EXPECT_EQ(b.entries[i].tokens, 1u);
      EXPECT_EQ(b.args[3 + i], LimitSync::redis_key("p:", "api", b.entries[i].key));
      EXPECT_EQ(b.args[3 + n + 3 * i], "1");
      EXPECT_EQ(b.args[3 + n + 3 * i + 1], "200000.000");  // T = 200 ms in µs
      // 16 × (burst × T + interval) = 16 × (1 s + 100 ms)
      EXPECT_EQ(b.args[3 + n + 3 * i + 2], "17600000");
    }
  }
  EXPECT_EQ(seen.size(), keys);
  EXPECT_EQ(rounds, 3u);
}

TEST(LimitSync, RedisKeyNames) {
  EXPECT_EQ(LimitSync::redis_key("weir:", "web", 0xabcULL), "weir:rl:web:0000000000000abc");
}

TEST(LimitSync, UnsharedTablesCountNothing) {
  model::ClientTable t(1024);
  EXPECT_FALSE(t.shared());
  EXPECT_EQ(t.memory_bytes(), 1024u * 32);
  ASSERT_TRUE(t.take(1, 1, 1, kT0).allowed);
  std::vector<model::ClientTable::Taken> taken;
  EXPECT_EQ(t.drain_taken(taken, 10), 0u);
  model::ClientTable s(1024, std::chrono::seconds(60), true);
  EXPECT_EQ(s.memory_bytes(), 1024u * 36);
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

}  // namespace
}  // namespace weir::cluster
