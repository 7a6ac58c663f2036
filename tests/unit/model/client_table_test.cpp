// model::ClientTable: the per-client limits of a listener (client_limits). Token-bucket
// arithmetic (burst, refill, per-minute rates, Retry-After), connection counts, exactness under
// threads (connections and tokens), idle expiry and reclaim, and the bound (a full table fails
// open, counts what it could not track, keeps its memory and never evicts a key with open
// connections).
#include "model/client_table.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <string_view>
#include <thread>
#include <vector>

#include "balance/hash.hpp"

namespace weir::model {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kT0 = 1'000 * kSec;  // an arbitrary steady-clock time

// As the proxy computes it: the hash of the address bytes.
uint64_t ip_key(uint32_t ip) {
  char bytes[4];
  std::memcpy(bytes, &ip, 4);
  return balance::hash_key(std::string_view(bytes, 4));
}

// Holds threads until all have started, so that they run at the same time.
class StartGate {
 public:
  explicit StartGate(int n) : waiting_(n) {}
  void arrive_and_wait() {
    waiting_.fetch_sub(1);
    while (waiting_.load() > 0)
      std::this_thread::yield();
  }

 private:
  std::atomic<int> waiting_;
};

TEST(ClientTableBucket, BurstThenRefillAtRate) {
  ClientTable t(64);
  const uint64_t k = ip_key(1);
  // rate 10/s, burst 20: 20 at once, then one every 100 ms.
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(t.take(k, 10, 20, kT0).allowed) << i;
  auto refused = t.take(k, 10, 20, kT0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_TRUE(refused.tracked);
  EXPECT_EQ(refused.retry_after_s, 1u);  // 100 ms away, rounded up to a whole second
  EXPECT_FALSE(t.take(k, 10, 20, kT0 + 99 * kMs).allowed);
  EXPECT_TRUE(t.take(k, 10, 20, kT0 + 100 * kMs).allowed);
  EXPECT_FALSE(t.take(k, 10, 20, kT0 + 100 * kMs).allowed);
  // One second later: 10 tokens back, not more.
  int allowed = 0;
  for (int i = 0; i < 30; ++i)
    allowed += t.take(k, 10, 20, kT0 + 1100 * kMs).allowed;
  EXPECT_EQ(allowed, 10);
  // A long pause refills to the burst, never beyond it.
  allowed = 0;
  for (int i = 0; i < 100; ++i)
    allowed += t.take(k, 10, 20, kT0 + 100 * kSec).allowed;
  EXPECT_EQ(allowed, 20);
  // Another key has its own bucket.
  EXPECT_TRUE(t.take(ip_key(2), 10, 20, kT0).allowed);
  EXPECT_EQ(t.untracked(), 0u);
}

TEST(ClientTableBucket, PerMinuteRate) {
  ClientTable t(64);
  const uint64_t k = ip_key(7);
  const double rate = 20.0 / 60;  // 20/m: a token every 3 s; burst defaults to N = 20
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(t.take(k, rate, 20, kT0).allowed) << i;
  auto r = t.take(k, rate, 20, kT0);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_s, 3u);
  r = t.take(k, rate, 20, kT0 + 2500 * kMs);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_s, 1u);  // 0.5 s
  EXPECT_TRUE(t.take(k, rate, 20, kT0 + 3 * kSec).allowed);
  r = t.take(k, rate, 20, kT0 + 3 * kSec);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_s, 3u);
  // Full again at 63 s (the take at 3 s moved it 3 s on): 20 tokens, no more.
  int allowed = 0;
  for (int i = 0; i < 40; ++i)
    allowed += t.take(k, rate, 20, kT0 + 63 * kSec).allowed;
  EXPECT_EQ(allowed, 20);
}

TEST(ClientTableBucket, RetryAfterIsWholeSecondsUntilATokenAtLeastOne) {
  ClientTable t(64);
  const uint64_t k = ip_key(9);
  const double per_minute = 1.0 / 60;  // 1/m, burst 1
  EXPECT_TRUE(t.take(k, per_minute, 1, kT0).allowed);
  EXPECT_EQ(t.take(k, per_minute, 1, kT0).retry_after_s, 60u);
  EXPECT_EQ(t.take(k, per_minute, 1, kT0 + 1).retry_after_s, 60u);  // 59.999999999 s → 60
  EXPECT_EQ(t.take(k, per_minute, 1, kT0 + 1 * kSec).retry_after_s, 59u);
  EXPECT_EQ(t.take(k, per_minute, 1, kT0 + 58200 * kMs).retry_after_s, 2u);  // 1.8 s
  EXPECT_EQ(t.take(k, per_minute, 1, kT0 + 59999 * kMs).retry_after_s, 1u);  // 1 ms
  EXPECT_TRUE(t.take(k, per_minute, 1, kT0 + 60 * kSec).allowed);

  // 0.4/s (24/m): a token every 2.5 s → Retry-After 3.
  const uint64_t k2 = ip_key(10);
  EXPECT_TRUE(t.take(k2, 0.4, 1, kT0).allowed);
  EXPECT_EQ(t.take(k2, 0.4, 1, kT0).retry_after_s, 3u);
  // 1000/s: a token every ms, never less than 1 s.
  const uint64_t k3 = ip_key(11);
  EXPECT_TRUE(t.take(k3, 1000, 1, kT0).allowed);
  auto r = t.take(k3, 1000, 1, kT0);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_s, 1u);
  EXPECT_TRUE(t.take(k3, 1000, 1, kT0 + kMs).allowed);
  // A refused take costs nothing: refused many times, still one token a ms.
  for (int i = 0; i < 10; ++i)
    EXPECT_FALSE(t.take(k3, 1000, 1, kT0 + kMs).allowed);
  EXPECT_TRUE(t.take(k3, 1000, 1, kT0 + 2 * kMs).allowed);
}

TEST(ClientTableBucket, ParametersChangeWhileTheStateLivesOn) {
  ClientTable t(64);
  const uint64_t k = ip_key(3);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(t.take(k, 1, 5, kT0).allowed);
  EXPECT_FALSE(t.take(k, 1, 5, kT0).allowed);
  // A reload raises the burst to 10: the 5 spent are still spent, 5 more are there.
  int allowed = 0;
  for (int i = 0; i < 20; ++i)
    allowed += t.take(k, 1, 10, kT0).allowed;
  EXPECT_EQ(allowed, 5);
}

TEST(ClientTableConnections, LimitIsExactAndClosingFreesAPlace) {
  ClientTable t(64);
  const uint64_t a = ip_key(1), b = ip_key(2);
  std::vector<ClientTable::Conn> open;
  for (int i = 0; i < 3; ++i) {
    auto c = t.open_connection(a, 3, kT0);
    ASSERT_TRUE(c.admitted && c.tracked) << i;
    open.push_back(c);
  }
  auto over = t.open_connection(a, 3, kT0);
  EXPECT_FALSE(over.admitted);
  EXPECT_TRUE(over.tracked);
  EXPECT_FALSE(t.open_connection(a, 3, kT0).admitted);  // the refusals counted nothing
  auto other = t.open_connection(b, 3, kT0);            // another address: its own count
  EXPECT_TRUE(other.admitted);
  t.close_connection(open.back());
  open.pop_back();
  auto again = t.open_connection(a, 3, kT0);
  EXPECT_TRUE(again.admitted);
  EXPECT_EQ(again.slot, open[0].slot);
  EXPECT_FALSE(t.open_connection(a, 3, kT0).admitted);
  // A reload lowering the limit: the open ones stay, no new one until below it.
  t.close_connection(again);
  EXPECT_FALSE(t.open_connection(a, 2, kT0).admitted);
  t.close_connection(open.back());
  open.pop_back();
  EXPECT_FALSE(t.open_connection(a, 1, kT0).admitted);
  EXPECT_TRUE(t.open_connection(a, 2, kT0).admitted);
  EXPECT_EQ(t.live_entries(), 2u);
  EXPECT_EQ(t.untracked(), 0u);
}

TEST(ClientTableConnections, KeysZeroAndOneAreUsable) {
  ClientTable t(64);
  EXPECT_TRUE(t.open_connection(0, 1, kT0).admitted);
  EXPECT_FALSE(t.open_connection(0, 1, kT0).admitted);
  EXPECT_TRUE(t.open_connection(1, 1, kT0).admitted);
  EXPECT_FALSE(t.open_connection(1, 1, kT0).admitted);
  EXPECT_TRUE(t.take(0, 1, 1, kT0).allowed);
  EXPECT_FALSE(t.take(0, 1, 1, kT0).allowed);
}

// 4 threads open and close connections on the same keys as fast as they can; each admitted
// and tracked connection raises a per-key "live" counter while it is open. The high-water mark
// of every counter must stay at or below the limit, and every count must be back to 0 at the
// end (checked by filling each key to its limit again).
TEST(ClientTableThreads, ConnectionLimitExact) {
  constexpr uint32_t kMax = 3;
  constexpr int kKeys = 6;  // keys 0, 1 shared by all threads; 2 + t only by thread t
  ClientTable t(256);
  std::vector<uint64_t> keys;
  for (int i = 0; i < kKeys; ++i)
    keys.push_back(ip_key(100 + i));
  std::atomic<int> live[kKeys] = {};
  std::atomic<int> high[kKeys] = {};
  std::atomic<int> refused{0};
  StartGate gate(4);
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      gate.arrive_and_wait();
      std::mt19937 rng(th);
      std::vector<std::pair<int, ClientTable::Conn>> held;
      for (int i = 0; i < 100000; ++i) {
        int k = rng() % 3 == 0 ? 2 + th : static_cast<int>(rng() % 2);
        if (held.size() < 4 && rng() % 2) {
          auto c = t.open_connection(keys[k], kMax, kT0);
          ASSERT_TRUE(c.tracked);
          if (!c.admitted) {
            refused.fetch_add(1);
            continue;
          }
          int now_live = live[k].fetch_add(1) + 1;
          int h = high[k].load();
          while (now_live > h && !high[k].compare_exchange_weak(h, now_live)) {
          }
          held.emplace_back(k, c);
        } else if (!held.empty()) {
          size_t j = rng() % held.size();
          live[held[j].first].fetch_sub(1);
          t.close_connection(held[j].second);
          held.erase(held.begin() + static_cast<long>(j));
        }
      }
      for (auto& [k, c] : held) {
        live[k].fetch_sub(1);
        t.close_connection(c);
      }
    });
  }
  for (auto& th : threads)
    th.join();
  for (int k = 0; k < kKeys; ++k) {
    EXPECT_LE(high[k].load(), static_cast<int>(kMax)) << k;
    EXPECT_EQ(live[k].load(), 0);
    // Every count is back to 0: exactly kMax fit again.
    for (uint32_t i = 0; i < kMax; ++i)
      EXPECT_TRUE(t.open_connection(keys[k], kMax, kT0).admitted) << k;
    EXPECT_FALSE(t.open_connection(keys[k], kMax, kT0).admitted) << k;
  }
  EXPECT_GT(refused.load(), 0);  // the limit was reached, so the test tested something
  EXPECT_EQ(high[0].load(), static_cast<int>(kMax));
  EXPECT_EQ(t.untracked(), 0u);
}

// Time frozen: 4 threads take from the same bucket; exactly `burst` takes succeed in total.
TEST(ClientTableThreads, TokensExact) {
  constexpr int kBurst = 5000;
  ClientTable t(64);
  const uint64_t k = ip_key(42);
  std::atomic<int> allowed{0};
  StartGate gate(4);
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&] {
      gate.arrive_and_wait();
      int mine = 0;
      for (int i = 0; i < kBurst; ++i)
        mine += t.take(k, 1, kBurst, kT0).allowed;
      allowed.fetch_add(mine);
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(allowed.load(), kBurst);
  EXPECT_FALSE(t.take(k, 1, kBurst, kT0).allowed);
}

// Reclaims racing with use: threads open, close and take on more keys than the table has
// slots, with time moving and no idle expiry, so idle slots change hands all the time. A key
// with open connections must keep its slot (live ≤ limit for every key, which a duplicate slot
// for a key or a reclaimed slot still counted for the old key would break), and at the end
// every slot is free again.
void reclaim_race(size_t capacity, int n_keys, int n_threads, size_t hold, int iterations) {
  constexpr uint32_t kMax = 2;
  ClientTable t(capacity, std::chrono::nanoseconds(0));
  std::vector<uint64_t> keys;
  for (int i = 0; i < n_keys; ++i)
    keys.push_back(ip_key(1000 + static_cast<uint32_t>(i)));
  std::vector<std::atomic<int>> live(static_cast<size_t>(n_keys));
  std::vector<std::atomic<int>> high(static_cast<size_t>(n_keys));
  std::atomic<int64_t> clock{kT0};
  std::atomic<int> allowed_takes{0};
  StartGate gate(n_threads);
  std::vector<std::thread> threads;
  for (int th = 0; th < n_threads; ++th) {
    threads.emplace_back([&, th] {
      gate.arrive_and_wait();
      std::mt19937 rng(100 + th);
      std::vector<std::pair<size_t, ClientTable::Conn>> held;
      for (int i = 0; i < iterations; ++i) {
        int64_t now = clock.fetch_add(kMs);
        size_t k = rng() % keys.size();
        unsigned op = rng() % 5;
        if (op == 0) {
          allowed_takes += t.take(keys[k], 1e6, 1, now).allowed;
        } else if (op <= 3 && held.size() < hold) {
          auto c = t.open_connection(keys[k], kMax, now);
          if (!c.admitted || !c.tracked) continue;
          int now_live = live[k].fetch_add(1) + 1;
          int h = high[k].load();
          while (now_live > h && !high[k].compare_exchange_weak(h, now_live)) {
          }
          held.emplace_back(k, c);
        } else if (!held.empty()) {
          size_t j = rng() % held.size();
          live[held[j].first].fetch_sub(1);
          t.close_connection(held[j].second);
          held.erase(held.begin() + static_cast<long>(j));
        }
      }
      for (auto& [k, c] : held) {
        live[k].fetch_sub(1);
        t.close_connection(c);
      }
    });
  }
  for (auto& th : threads)
    th.join();
  for (size_t k = 0; k < keys.size(); ++k)
    EXPECT_LE(high[k].load(), static_cast<int>(kMax)) << k;
  EXPECT_GT(t.untracked(), 0u);  // the table was full at times
  EXPECT_GT(allowed_takes.load(), 0);
  // All connections closed: every slot can be reclaimed, as many new keys as slots all fit.
  int64_t later = clock.load() + kSec;
  for (uint32_t i = 0; i < capacity; ++i) {
    auto c = t.open_connection(ip_key(5000 + i), 1, later);
    EXPECT_TRUE(c.admitted && c.tracked) << i;
  }
  EXPECT_LE(t.live_entries(), capacity);
}

TEST(ClientTableThreads, ReclaimRacingWithUse) {
  reclaim_race(16, 48, 4, 8, 100000);  // up to 32 connections held for 16 slots
}

// Few slots, few keys, more threads than cores: the same slots change hands constantly and
// threads are preempted inside the windows the protocol closes.
TEST(ClientTableThreads, ReclaimRacingWithUseCrowded) {
  reclaim_race(4, 8, 8, 4, 50000);
}

// Two workers meet a new key at once, each seeing a different slot it could take (their clocks
// differ, so different idle slots have expired for each): the key must still end up in one
// slot, so that with max_connections 1 exactly one of them is admitted. Many rounds, since the
// two must overlap within a few hundred ns.
TEST(ClientTableThreads, SameNewKeyGetsOneSlot) {
  int duplicates = 0;
  for (int round = 0; round < 4000; ++round) {
    ClientTable t(16, std::chrono::seconds(60));
    for (uint32_t i = 0; i < 16; ++i) {  // key i last used at i seconds
      auto c = t.open_connection(ip_key(i), 1, kT0 + i * kSec);
      ASSERT_TRUE(c.tracked);
      t.close_connection(c);
    }
    // At 75 s every slot has expired; at 62 s only those of keys 0, 1 and 2.
    const uint64_t k = ip_key(1000 + static_cast<uint32_t>(round));
    std::atomic<int> admitted{0}, tracked{0};
    StartGate gate(2);
    std::thread a([&] {
      gate.arrive_and_wait();
      auto c = t.open_connection(k, 1, kT0 + 75 * kSec);
      admitted += c.admitted;
      tracked += c.tracked;
    });
    std::thread b([&] {
      gate.arrive_and_wait();
      auto c = t.open_connection(k, 1, kT0 + 62 * kSec);
      admitted += c.admitted;
      tracked += c.tracked;
    });
    a.join();
    b.join();
    ASSERT_EQ(tracked.load(), 2);
    duplicates += admitted.load() != 1;
  }
  EXPECT_EQ(duplicates, 0);
}

TEST(ClientTableExpiry, IdleKeysAreReclaimedOnlyWhenNothingIsLost) {
  // 16 slots = one window: every key competes for the same slots.
  ClientTable t(16, std::chrono::seconds(60));
  const size_t bytes = t.memory_bytes();
  EXPECT_EQ(bytes, 16 * 32u);
  for (int i = 0; i < 14; ++i)
    ASSERT_TRUE(t.take(ip_key(i), 10, 10, kT0).tracked) << i;
  // Slot 15: a key with an open connection. Slot 16: a key with an empty slow bucket.
  const uint64_t holder = ip_key(100), spender = ip_key(101);
  auto held = t.open_connection(holder, 1, kT0);
  ASSERT_TRUE(held.admitted && held.tracked);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(t.take(spender, 1.0 / 3600, 5, kT0).allowed);  // 1/h: full again in 5 h
  EXPECT_EQ(t.live_entries(), 16u);

  // Full: a new key is allowed, not tracked, counted.
  auto r = t.take(ip_key(200), 10, 10, kT0 + 59 * kSec);
  EXPECT_TRUE(r.allowed);
  EXPECT_FALSE(r.tracked);
  auto c = t.open_connection(ip_key(201), 1, kT0 + 59 * kSec);
  EXPECT_TRUE(c.admitted);
  EXPECT_FALSE(c.tracked);
  t.close_connection(c);  // a no-op for an untracked connection
  EXPECT_EQ(t.untracked(), 2u);

  // After idle_expiry the 14 idle keys' slots go to new keys, and only those.
  int tracked = 0;
  for (int i = 0; i < 20; ++i)
    tracked += t.take(ip_key(300 + i), 10, 10, kT0 + 61 * kSec).tracked;
  EXPECT_EQ(tracked, 14);
  EXPECT_EQ(t.untracked(), 2u + 6);
  EXPECT_EQ(t.live_entries(), 16u);
  // The holder kept its slot and its count; the spender its empty bucket.
  EXPECT_FALSE(t.open_connection(holder, 1, kT0 + 61 * kSec).admitted);
  auto s = t.take(spender, 1.0 / 3600, 5, kT0 + 61 * kSec);
  EXPECT_TRUE(s.tracked);
  EXPECT_FALSE(s.allowed);
  EXPECT_EQ(s.retry_after_s, 3600u - 61);
  EXPECT_EQ(t.memory_bytes(), bytes);

  // A day later the holder still has its slot; closed, it can go after idle_expiry.
  const int64_t day = kT0 + 86400 * kSec;
  tracked = 0;
  for (int i = 0; i < 20; ++i)
    tracked += t.open_connection(ip_key(400 + i), 1, day).tracked;
  EXPECT_EQ(tracked, 15);  // the 14 and the spender's (full again after 5 h)
  EXPECT_FALSE(t.open_connection(holder, 1, day).admitted);
  t.close_connection(held);
  EXPECT_TRUE(t.open_connection(holder, 1, day).admitted);  // still its slot, count 0 now
}

TEST(ClientTableExpiry, AKeyUsedAgainIsNotReclaimed) {
  ClientTable t(16, std::chrono::seconds(60));
  for (int i = 0; i < 16; ++i)
    ASSERT_TRUE(t.take(ip_key(i), 10, 10, kT0).tracked);
  ASSERT_TRUE(t.take(ip_key(0), 10, 10, kT0 + 30 * kSec).tracked);  // key 0 used at 30 s
  int tracked = 0;
  for (int i = 0; i < 20; ++i)
    tracked += t.take(ip_key(100 + i), 10, 10, kT0 + 70 * kSec).tracked;
  EXPECT_EQ(tracked, 15);
  EXPECT_TRUE(t.take(ip_key(0), 10, 10, kT0 + 70 * kSec).tracked);
}

// The bound: 10,000 distinct clients in a 1,024-slot table. Memory is what it was, what did not
// fit is counted, a key with open connections is never evicted, and once idle the old keys'
// slots serve new clients.
TEST(ClientTableBound, TenThousandKeysInOneThousandSlots) {
  ClientTable t(1024, std::chrono::seconds(60));
  const size_t bytes = t.memory_bytes();
  EXPECT_EQ(bytes, 1024 * 32u);
  EXPECT_EQ(t.capacity(), 1024u);

  // Round 1: 10,000 addresses, each opens a connection (the first 100 keep theirs open).
  std::vector<ClientTable::Conn> holders;
  size_t tracked1 = 0;
  for (uint32_t i = 0; i < 10000; ++i) {
    auto c = t.open_connection(ip_key(i), 1, kT0);
    ASSERT_TRUE(c.admitted);
    tracked1 += c.tracked;
    if (i < 100) {
      ASSERT_TRUE(c.tracked) << i;  // the table was empty enough for them
      holders.push_back(c);
    } else {
      t.close_connection(c);
    }
  }
  EXPECT_EQ(t.memory_bytes(), bytes);
  EXPECT_GT(tracked1, 800u);  // windows of 16 fill most of the table
  EXPECT_LE(tracked1, 1024u);
  EXPECT_LE(t.live_entries(), 1024u);
  EXPECT_EQ(t.untracked(), 10000u - tracked1);

  // Within idle_expiry: nothing reclaimed, every new key fails open.
  const uint64_t before = t.untracked();
  for (uint32_t i = 20000; i < 21000; ++i)
    EXPECT_FALSE(t.take(ip_key(i), 10, 10, kT0 + 30 * kSec).tracked);
  EXPECT_EQ(t.untracked(), before + 1000);

  // Round 2 after expiry: 10,000 other addresses get about as many slots as round 1 (all but
  // the 100 holders'), and the holders keep theirs.
  size_t tracked2 = 0;
  for (uint32_t i = 10000; i < 20000; ++i) {
    auto c = t.open_connection(ip_key(i), 1, kT0 + 61 * kSec);
    tracked2 += c.tracked;
    t.close_connection(c);
  }
  EXPECT_GT(tracked2, tracked1 - 100 - 50);
  EXPECT_LE(tracked2, 1024u - 100);
  for (uint32_t i = 0; i < 100; ++i) {
    auto c = t.open_connection(ip_key(i), 1, kT0 + 61 * kSec);
    EXPECT_TRUE(c.tracked) << i;
    EXPECT_FALSE(c.admitted) << i;  // its connection is still counted
  }
  EXPECT_EQ(t.memory_bytes(), bytes);
  EXPECT_LE(t.live_entries(), 1024u);
  for (auto& c : holders)
    t.close_connection(c);
}

TEST(ClientTableBound, TinyAndOddCapacities) {
  for (size_t cap : {size_t{1}, size_t{3}, size_t{17}, size_t{1000}}) {
    ClientTable t(cap);
    EXPECT_EQ(t.capacity(), cap);
    EXPECT_EQ(t.memory_bytes(), cap * 32);
    size_t tracked = 0;
    for (uint32_t i = 0; i < 2 * cap + 20; ++i)
      tracked += t.open_connection(ip_key(i), 1, kT0).tracked;
    EXPECT_LE(tracked, cap);
    EXPECT_GE(tracked, std::min<size_t>(cap, 1));
    EXPECT_EQ(t.untracked(), 2 * cap + 20 - tracked);
  }
  EXPECT_EQ(ClientTable(0).capacity(), 1u);
}

}  // namespace
}  // namespace weir::model
