// The shared store (cache/store.hpp): index, variants, memory bound, coalescing, purge.
#include "cache/store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace weir::cache {
namespace {

using Fields = std::vector<Field>;
constexpr int64_t kT = 1'700'000'000;

ResponseFacts facts_of(const Fields& f, uint16_t status = 200) {
  return response_facts(status, f, kT, kT);
}

// Fills `primary` for a request with `req` fields; returns the commit result.
CommitResult put(Store& s, std::string_view primary, std::string_view body,
                 const Fields& res = {{"Cache-Control", "max-age=60"}}, const Fields& req = {}) {
  auto a = s.acquire_fill(primary, "", [](WaitResult) {});
  if (!a.ticket.valid()) return CommitResult::Aborted;
  if (!a.ticket.append(body)) return a.ticket.commit(facts_of(res), res, req);
  return a.ticket.commit(facts_of(res), res, req);
}

TEST(Store, FillThenHit) {
  Store s({});
  EXPECT_FALSE(s.lookup("http://a/x", {}).entry);
  EXPECT_EQ(s.misses(), 1u);
  const Fields res = {
      {"Content-Type", "text/plain"}, {"Connection", "close"}, {"Cache-Control", "max-age=60"}};
  ASSERT_EQ(put(s, "http://a/x", "hello", res), CommitResult::Stored);
  auto l = s.lookup("http://a/x", {});
  ASSERT_TRUE(l.entry);
  EXPECT_EQ(s.hits(), 1u);
  EXPECT_EQ(l.entry->status(), 200);
  EXPECT_EQ(l.entry->body(), "hello");
  ASSERT_EQ(l.entry->fields().size(), 2u);  // Connection dropped (RFC 9111 3.1)
  EXPECT_EQ(l.entry->field("content-type"), "text/plain");
  EXPECT_EQ(l.entry->facts().cc.max_age.value, 60u);
  EXPECT_EQ(s.entries(), 1u);
  // The memory counted is exactly the entry's charge and the URI's.
  EXPECT_EQ(s.bytes(),
            l.entry->charge() + Store::slot_overhead() + std::string("http://a/x").size());
  EXPECT_FALSE(s.lookup("http://a/y", {}).entry);
  EXPECT_FALSE(s.lookup("https://a/x", {}).entry);
}

TEST(Store, SameKeyReplaces) {
  Store s({});
  ASSERT_EQ(put(s, "http://a/x", "one"), CommitResult::Stored);
  ASSERT_EQ(put(s, "http://a/x", "two"), CommitResult::Stored);
  EXPECT_EQ(s.entries(), 1u);
  EXPECT_EQ(s.lookup("http://a/x", {}).entry->body(), "two");
}

// RFC 9111 4.1: variants by the request fields Vary names.
TEST(Store, VariantsBySecondaryKey_4_1) {
  Store s({});
  const Fields res = {{"Cache-Control", "max-age=60"}, {"Vary", "Accept-Encoding"}};
  ASSERT_EQ(put(s, "http://a/x", "gz", res, {{"Accept-Encoding", "gzip"}}), CommitResult::Stored);
  ASSERT_EQ(put(s, "http://a/x", "br", res, {{"Accept-Encoding", "br"}}), CommitResult::Stored);
  EXPECT_EQ(s.entries(), 2u);
  EXPECT_EQ(s.lookup("http://a/x", Fields{{"accept-encoding", "gzip"}}).entry->body(), "gz");
  EXPECT_EQ(s.lookup("http://a/x", Fields{{"Accept-Encoding", "br"}}).entry->body(), "br");
  auto miss = s.lookup("http://a/x", Fields{{"Accept-Encoding", "zstd"}});
  EXPECT_FALSE(miss.entry);
  EXPECT_EQ(miss.secondary, "accept-encoding:=zstd\n");
  EXPECT_FALSE(s.lookup("http://a/x", {}).entry);
  // A response with another Vary list replaces the URI's variants.
  const Fields res2 = {{"Cache-Control", "max-age=60"}, {"Vary", "Accept-Language"}};
  ASSERT_EQ(put(s, "http://a/x", "en", res2, {{"Accept-Language", "en"}}), CommitResult::Stored);
  EXPECT_EQ(s.entries(), 1u);
  EXPECT_FALSE(s.lookup("http://a/x", Fields{{"Accept-Encoding", "gzip"}}).entry);
  EXPECT_TRUE(s.lookup("http://a/x", Fields{{"Accept-Language", "en"}}).entry);
}

// RFC 9111 4.1: Vary: * is never stored (it could not match anything).
TEST(Store, VaryStarNotStored_4_1) {
  Store s({});
  const Fields res = {{"Cache-Control", "max-age=60"}, {"Vary", "*"}};
  EXPECT_EQ(put(s, "http://a/x", "b", res), CommitResult::NotStorable);
  EXPECT_EQ(s.entries(), 0u);
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_FALSE(s.lookup("http://a/x", {}).entry);
}

// 10,000 distinct Vary keys on one URI: at most max_variants kept, memory flat.
TEST(Store, TenThousandVaryKeysBounded) {
  StoreConfig c;
  c.max_variants = 32;
  Store s(c);
  const Fields res = {{"Cache-Control", "max-age=60"}, {"Vary", "X-Id"}};
  size_t bytes_at_limit = 0;
  for (int i = 0; i < 10000; ++i) {
    const std::string id = std::to_string(i);
    ASSERT_EQ(put(s, "http://a/x", "body", res, {{"X-Id", id}}), CommitResult::Stored);
    ASSERT_LE(s.entries(), 32u);
    if (i == 99) bytes_at_limit = s.bytes();
    if (i > 99) {
      ASSERT_LE(s.bytes(), bytes_at_limit);
    }
  }
  EXPECT_EQ(s.entries(), 32u);
  // The newest ones are kept, the oldest went.
  EXPECT_TRUE(s.lookup("http://a/x", Fields{{"X-Id", "9999"}}).entry);
  EXPECT_TRUE(s.lookup("http://a/x", Fields{{"X-Id", "9968"}}).entry);
  EXPECT_FALSE(s.lookup("http://a/x", Fields{{"X-Id", "9967"}}).entry);
  EXPECT_FALSE(s.lookup("http://a/x", Fields{{"X-Id", "0"}}).entry);
}

TEST(Store, MaxObject) {
  StoreConfig c;
  c.max_object = 100;
  Store s(c);
  auto a = s.acquire_fill("http://a/big", "", {});
  ASSERT_EQ(a.kind, Store::Acquire::Kind::Fill);
  EXPECT_TRUE(a.ticket.append(std::string(60, 'x')));
  EXPECT_GT(s.bytes(), 0u);  // the fill's body is counted while it grows
  EXPECT_FALSE(a.ticket.append(std::string(41, 'x')));
  EXPECT_TRUE(a.ticket.aborted());
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_FALSE(a.ticket.append("x"));
  const Fields res = {{"Cache-Control", "max-age=60"}};
  EXPECT_EQ(a.ticket.commit(facts_of(res), res, {}), CommitResult::Aborted);
  EXPECT_EQ(s.entries(), 0u);
  EXPECT_EQ(s.fills_in_progress(), 0u);
  // Exactly max_object is fine; expect() beyond it fails at once.
  EXPECT_EQ(put(s, "http://a/ok", std::string(100, 'y')), CommitResult::Stored);
  auto b = s.acquire_fill("http://a/big2", "", {});
  EXPECT_FALSE(b.ticket.expect(101));
  EXPECT_TRUE(b.ticket.aborted());
}

// The memory bound holds under random inserts of random sizes; LRU keeps what is used.
TEST(Store, MemoryBoundRandomLoad) {
  StoreConfig c;
  c.memory = 256 * 1024;
  c.max_object = 64 * 1024;
  c.shards = 8;
  Store s(c);
  std::mt19937 rng(42);
  size_t stored = 0;
  for (int i = 0; i < 5000; ++i) {
    const std::string key = "http://h/k" + std::to_string(rng() % 2000);
    const size_t size = rng() % 3 == 0 ? rng() % 60000 : rng() % 2000;
    auto a = s.acquire_fill(key, "", {});
    bool ok = true;
    for (size_t done = 0; done < size && ok; done += 1000) {
      ok = a.ticket.append(std::string(std::min<size_t>(1000, size - done), 'b'));
      ASSERT_LE(s.bytes(), c.memory);
    }
    const std::string pad(rng() % 300, 'p');
    const Fields res = {{"Cache-Control", "max-age=60"}, {"X-Pad", pad}};
    if (a.ticket.commit(facts_of(res), res, {}) == CommitResult::Stored) ++stored;
    ASSERT_LE(s.bytes(), c.memory);
    if (i % 7 == 0) (void)s.lookup(key, {});
  }
  EXPECT_GT(stored, 4000u);
  EXPECT_GT(s.evictions(), 0u);
  EXPECT_GT(s.bytes(), c.memory / 2);  // the bound is used, not wasted
  // Removing everything gives every byte back: the accounting balances.
  const uint64_t n = s.entries();
  EXPECT_EQ(s.purge_prefix("/"), n);
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_EQ(s.entries(), 0u);
}

TEST(Store, LruEvictsLeastRecentlyUsed) {
  StoreConfig c;
  c.shards = 1;
  // Size the store for exactly three entries like these.
  Store one({});
  ASSERT_EQ(put(one, "http://h/0", std::string(1000, 'x')), CommitResult::Stored);
  c.memory = one.bytes() * 3 + 10;
  Store s(c);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(put(s, "http://h/" + std::to_string(i), std::string(1000, 'x')),
              CommitResult::Stored);
  EXPECT_EQ(s.entries(), 3u);
  ASSERT_TRUE(s.lookup("http://h/0", {}).entry);  // 1 is now the least recently used
  ASSERT_EQ(put(s, "http://h/3", std::string(1000, 'x')), CommitResult::Stored);
  EXPECT_EQ(s.entries(), 3u);
  EXPECT_EQ(s.evictions(), 1u);
  EXPECT_TRUE(s.find("http://h/0", ""));
  EXPECT_FALSE(s.find("http://h/1", ""));
  EXPECT_TRUE(s.find("http://h/2", ""));
  EXPECT_TRUE(s.find("http://h/3", ""));
  // Larger than the whole memory: never stored.
  EXPECT_NE(put(s, "http://h/huge", std::string(c.memory, 'x')), CommitResult::Stored);
}

TEST(Store, ReaderKeepsEntryAfterEviction) {
  Store s({});
  ASSERT_EQ(put(s, "http://a/x", "kept"), CommitResult::Stored);
  auto e = s.lookup("http://a/x", {}).entry;
  EXPECT_EQ(s.invalidate("http://a/x"), 1u);
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_EQ(e->body(), "kept");  // ASan would flag a use after free
}

// RFC 9111 4.3.4: a 304 updates the stored fields into a new entry sharing the body.
TEST(Store, Update304_4_3_4) {
  Store s({});
  const Fields res = {{"Cache-Control", "max-age=1"}, {"ETag", "\"v1\""}, {"Content-Length", "4"}};
  ASSERT_EQ(put(s, "http://a/x", "body", res), CommitResult::Stored);
  auto old = s.lookup("http://a/x", {}).entry;
  const Fields upd = {{"Cache-Control", "max-age=600"}, {"Content-Length", "0"}};
  auto u = s.update("http://a/x", old, upd, kT + 100, kT + 101);
  ASSERT_TRUE(u.stored);
  EXPECT_EQ(u.entry->facts().cc.max_age.value, 600u);
  EXPECT_EQ(u.entry->facts().response_time, kT + 101);
  EXPECT_EQ(u.entry->field("content-length"), "4");
  EXPECT_EQ(u.entry->field("etag"), "\"v1\"");
  EXPECT_EQ(u.entry->body().data(), old->body().data());  // shared, not copied
  EXPECT_EQ(s.lookup("http://a/x", {}).entry, u.entry);
  EXPECT_EQ(old->facts().cc.max_age.value, 1u);  // the old entry is unchanged
  EXPECT_EQ(s.entries(), 1u);
  EXPECT_EQ(s.bytes(), u.entry->charge() + Store::slot_overhead() + 10);
  // Updating an entry that is no longer stored: answered, not stored.
  auto again = s.update("http://a/x", old, upd, kT, kT);
  EXPECT_FALSE(again.stored);
  EXPECT_TRUE(again.entry);
  EXPECT_EQ(s.bytes(), u.entry->charge() + Store::slot_overhead() + 10);
}

TEST(Store, InvalidateAndPurge_4_4) {
  Store s({});
  for (std::string_view k : {"http://a/x", "https://b/x?v=1", "http://a/x/y",
                             "http://a/assets/1.css", "http://b/assets/2.css", "http://a/other"})
    ASSERT_EQ(put(s, k, "b"), CommitResult::Stored);
  EXPECT_EQ(s.invalidate("http://a/other"), 1u);
  EXPECT_EQ(s.invalidate("http://a/other"), 0u);
  EXPECT_EQ(s.purge_path("/x"), 2u);  // any authority, any query
  EXPECT_TRUE(s.find("http://a/x/y", ""));
  EXPECT_EQ(s.purge_prefix("/assets/"), 2u);
  EXPECT_EQ(s.entries(), 1u);
  ASSERT_EQ(put(s, "http://a/q?v=1", "b"), CommitResult::Stored);
  ASSERT_EQ(put(s, "http://a/q?v=2", "b"), CommitResult::Stored);
  EXPECT_EQ(s.purge_path("/q?v=1"), 1u);  // with a query: exact
  EXPECT_EQ(s.purge_path("/q"), 1u);
}

TEST(Store, CoalescingCompleted) {
  Store s({});
  auto first = s.acquire_fill("http://a/x", "", {});
  ASSERT_EQ(first.kind, Store::Acquire::Kind::Fill);
  std::vector<WaitResult> got;
  auto w1 = s.acquire_fill("http://a/x", "", [&](WaitResult r) { got.push_back(r); });
  auto w2 = s.acquire_fill("http://a/x", "", [&](WaitResult r) { got.push_back(r); });
  ASSERT_EQ(w1.kind, Store::Acquire::Kind::Wait);
  ASSERT_EQ(w2.kind, Store::Acquire::Kind::Wait);
  EXPECT_FALSE(w1.ticket.valid());
  EXPECT_EQ(s.coalesced(), 2u);
  EXPECT_EQ(s.waiters(), 2u);
  // Another variant key fills on its own.
  EXPECT_EQ(s.acquire_fill("http://a/x", "other", {}).kind, Store::Acquire::Kind::Fill);
  first.ticket.append("body");
  const Fields res = {{"Cache-Control", "max-age=60"}};
  EXPECT_EQ(first.ticket.commit(facts_of(res), res, {}), CommitResult::Stored);
  EXPECT_EQ(got, (std::vector<WaitResult>{WaitResult::Completed, WaitResult::Completed}));
  EXPECT_EQ(s.waiters(), 0u);
  EXPECT_EQ(s.fills_in_progress(), 0u);
  EXPECT_FALSE(s.cancel_wait(w1.token));  // already run
  // The next miss fills anew.
  EXPECT_EQ(s.acquire_fill("http://a/x", "", {}).kind, Store::Acquire::Kind::Fill);
}

TEST(Store, CoalescingAbandonedAndCancelled) {
  Store s({});
  int abandoned = 0, cancelled_called = 0;
  {
    auto first = s.acquire_fill("http://a/x", "", {});
    auto w1 = s.acquire_fill("http://a/x", "",
                             [&](WaitResult r) { abandoned += r == WaitResult::Abandoned; });
    auto w2 = s.acquire_fill("http://a/x", "", [&](WaitResult) { ++cancelled_called; });
    EXPECT_TRUE(s.cancel_wait(w2.token));
    EXPECT_FALSE(s.cancel_wait(w2.token));
    first.ticket.append("partial");
  }  // the ticket dies without commit
  EXPECT_EQ(abandoned, 1);
  EXPECT_EQ(cancelled_called, 0);
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_EQ(s.fills_in_progress(), 0u);
  // A response that turns out not storable wakes the waiters with Abandoned too.
  auto f = s.acquire_fill("http://a/y", "", {});
  WaitResult r = WaitResult::Completed;
  auto w = s.acquire_fill("http://a/y", "", [&](WaitResult x) { r = x; });
  const Fields res = {{"Vary", "*"}};
  EXPECT_EQ(f.ticket.commit(facts_of(res), res, {}), CommitResult::NotStorable);
  EXPECT_EQ(r, WaitResult::Abandoned);
  // Abort on size wakes them at once, before commit.
  StoreConfig c;
  c.max_object = 10;
  Store small(c);
  auto g = small.acquire_fill("http://a/z", "", {});
  bool woke = false;
  auto wz = small.acquire_fill("http://a/z", "", [&](WaitResult) { woke = true; });
  EXPECT_FALSE(g.ticket.append(std::string(11, 'x')));
  EXPECT_TRUE(woke);
}

// A waiter whose request differs in a Vary field must look up again and miss.
TEST(Store, CoalescedWaiterOtherVariantMisses_4_1) {
  Store s({});
  auto first = s.acquire_fill("http://a/x", "", {});
  bool completed = false;
  auto w = s.acquire_fill("http://a/x", "",
                          [&](WaitResult r) { completed = r == WaitResult::Completed; });
  const Fields res = {{"Cache-Control", "max-age=60"}, {"Vary", "Accept-Language"}};
  first.ticket.append("english");
  ASSERT_EQ(first.ticket.commit(facts_of(res), res, Fields{{"Accept-Language", "en"}}),
            CommitResult::Stored);
  ASSERT_TRUE(completed);
  auto again = s.lookup("http://a/x", Fields{{"Accept-Language", "fr"}});
  EXPECT_FALSE(again.entry);
  EXPECT_EQ(s.acquire_fill("http://a/x", again.secondary, {}).kind, Store::Acquire::Kind::Fill);
  EXPECT_TRUE(s.lookup("http://a/x", Fields{{"Accept-Language", "en"}}).entry);
}

TEST(Store, CoalescingBounds) {
  StoreConfig c;
  c.max_fills = 1;
  c.max_waiters = 1;
  Store s(c);
  auto a = s.acquire_fill("http://a/1", "", {});
  EXPECT_EQ(a.kind, Store::Acquire::Kind::Fill);
  auto b = s.acquire_fill("http://a/2", "", {});
  EXPECT_EQ(b.kind, Store::Acquire::Kind::Bypass);
  EXPECT_TRUE(b.ticket.valid());  // may still store
  auto w = s.acquire_fill("http://a/1", "", [](WaitResult) {});
  EXPECT_EQ(w.kind, Store::Acquire::Kind::Wait);
  auto w2 = s.acquire_fill("http://a/1", "", [](WaitResult) {});
  EXPECT_EQ(w2.kind, Store::Acquire::Kind::Bypass);
  const Fields res = {{"Cache-Control", "max-age=60"}};
  b.ticket.append("x");
  EXPECT_EQ(b.ticket.commit(facts_of(res), res, {}), CommitResult::Stored);
  EXPECT_EQ(s.fills_in_progress(), 1u);
  EXPECT_EQ(s.waiters(), 1u);
}

// Fills in progress count against the memory: they cannot exceed it together.
TEST(Store, ConcurrentFillsBounded) {
  StoreConfig c;
  c.memory = 100 * 1024;
  c.max_object = 64 * 1024;
  Store s(c);
  std::vector<FillTicket> tickets;
  size_t aborted = 0;
  for (int i = 0; i < 20; ++i) {
    auto a = s.acquire_fill("http://a/" + std::to_string(i), "", {});
    if (!a.ticket.append(std::string(20 * 1024, 'x'))) ++aborted;
    ASSERT_LE(s.bytes(), c.memory);
    tickets.push_back(std::move(a.ticket));
  }
  EXPECT_GE(aborted, 15u);
  tickets.clear();
  EXPECT_EQ(s.bytes(), 0u);
}

// 4+ threads at once: lookups, fills, waits and cancels, updates, purges, evictions.
TEST(Store, Concurrent) {
  StoreConfig c;
  c.memory = 512 * 1024;
  c.max_object = 32 * 1024;
  c.shards = 4;
  c.max_variants = 4;
  Store s(c);
  std::atomic<uint64_t> callbacks{0}, waits{0}, cancelled{0};
  auto worker = [&](int seed) {
    std::mt19937 rng(seed);
    for (int i = 0; i < 3000; ++i) {
      const std::string key = "http://h/" + std::to_string(rng() % 64);
      const std::string accept = std::to_string(rng() % 6);
      const Fields req = {{"Accept", accept}};
      const unsigned op = rng() % 10;
      if (op < 5) {
        auto l = s.lookup(key, req);
        if (l.entry) {
          ASSERT_FALSE(l.entry->body().empty());
          if (op == 0) {
            const Fields upd = {{"Cache-Control", "max-age=5"}};
            (void)s.update(key, l.entry, upd, kT, kT);
          }
          continue;
        }
        auto a = s.acquire_fill(key, l.secondary, [&](WaitResult) { ++callbacks; });
        if (a.kind == Store::Acquire::Kind::Wait) {
          ++waits;
          if (rng() % 2 && s.cancel_wait(a.token)) ++cancelled;
          continue;
        }
        const size_t size = 1 + rng() % 20000;
        bool ok = true;
        for (size_t done = 0; done < size && ok; done += 4096)
          ok = a.ticket.append(std::string(std::min<size_t>(4096, size - done), 'z'));
        if (rng() % 8 == 0) continue;  // abandoned
        const Fields res = {{"Cache-Control", "max-age=60"},
                            {"Vary", rng() % 2 ? "Accept" : "Accept, X-Other"}};
        (void)a.ticket.commit(facts_of(res), res, req);
      } else if (op < 9) {
        (void)s.find(key, "");
      } else if (rng() % 20 == 0) {
        (void)s.purge_prefix("/1");
      } else {
        (void)s.invalidate(key);
      }
      ASSERT_LE(s.bytes(), c.memory);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back(worker, t + 1);
  for (auto& t : threads)
    t.join();
  EXPECT_LE(s.bytes(), c.memory);
  EXPECT_EQ(s.fills_in_progress(), 0u);
  EXPECT_EQ(s.waiters(), 0u);
  // Every waiter was either called once or cancelled.
  EXPECT_EQ(callbacks.load() + cancelled.load(), waits.load());
  EXPECT_GT(s.evictions(), 0u);
  const uint64_t n = s.entries();
  EXPECT_EQ(s.purge_prefix("/"), n);
  EXPECT_EQ(s.bytes(), 0u);
}

}  // namespace
}  // namespace weir::cache
