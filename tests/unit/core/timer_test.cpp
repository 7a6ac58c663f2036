#include "core/timer.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/buffer.hpp"

namespace weir {
namespace {

TEST(TimerQueue, FiresInDeadlineOrder) {
  TimerQueue q;
  TimePoint t0{};
  std::vector<int> fired;
  Timer a([&] { fired.push_back(1); }), b([&] { fired.push_back(2); }),
      c([&] { fired.push_back(3); });
  a.arm(q, t0 + Millis(30));
  b.arm(q, t0 + Millis(10));
  c.arm(q, t0 + Millis(20));
  q.run_expired(t0 + Millis(15));
  EXPECT_EQ(fired, std::vector<int>({2}));
  q.run_expired(t0 + Millis(100));
  EXPECT_EQ(fired, std::vector<int>({2, 3, 1}));
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerQueue, RearmAndCancel) {
  TimerQueue q;
  TimePoint t0{};
  int n = 0;
  Timer a([&] { ++n; });
  a.arm(q, t0 + Millis(10));
  a.arm(q, t0 + Millis(50));  // re-arm moves it
  q.run_expired(t0 + Millis(20));
  EXPECT_EQ(n, 0);
  a.cancel();
  q.run_expired(t0 + Millis(100));
  EXPECT_EQ(n, 0);
  EXPECT_FALSE(a.armed());
}

TEST(TimerQueue, CallbackMayRearmItself) {
  TimerQueue q;
  TimePoint t0{};
  int n = 0;
  Timer a;
  a.set_callback([&] {
    if (++n < 3) a.arm(q, t0 + Millis(10 * (n + 1)));
  });
  a.arm(q, t0 + Millis(10));
  // A timer re-armed into the past by its own callback runs on the next turn, not in a loop.
  q.run_expired(t0 + Millis(100));
  EXPECT_EQ(n, 1);
  q.run_expired(t0 + Millis(100));
  q.run_expired(t0 + Millis(100));
  EXPECT_EQ(n, 3);
  q.run_expired(t0 + Millis(100));
  EXPECT_EQ(n, 3);
}

TEST(TimerQueue, RandomOperationsKeepHeapOrder) {
  TimerQueue q;
  TimePoint t0{};
  std::mt19937 rng(1);
  std::vector<std::unique_ptr<Timer>> timers;
  std::vector<int> fired_at;
  for (int i = 0; i < 200; ++i) {
    auto t = std::make_unique<Timer>();
    Timer* raw = t.get();
    t->set_callback([&fired_at, raw] {
      fired_at.push_back(static_cast<int>(
          std::chrono::duration_cast<Millis>(raw->deadline().time_since_epoch()).count()));
    });
    timers.push_back(std::move(t));
  }
  for (int round = 0; round < 1000; ++round) {
    auto& t = timers[rng() % timers.size()];
    if (rng() % 4 == 0)
      t->cancel();
    else
      t->arm(q, t0 + Millis(rng() % 10000));
  }
  q.run_expired(t0 + Millis(20000));
  EXPECT_TRUE(std::is_sorted(fired_at.begin(), fired_at.end()));
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerQueue, NextTimeout) {
  TimerQueue q;
  TimePoint t0{};
  EXPECT_EQ(q.next_timeout_ms(t0, 1000), 1000);
  Timer a([] {});
  a.arm(q, t0 + Millis(5));
  EXPECT_GE(q.next_timeout_ms(t0, 1000), 5);
  EXPECT_LE(q.next_timeout_ms(t0, 1000), 6);
  EXPECT_EQ(q.next_timeout_ms(t0 + Millis(10), 1000), 0);
}

TEST(Buffer, BoundedAppendAndCompaction) {
  Buffer b(8);
  EXPECT_EQ(b.append("hello"), 5u);
  EXPECT_EQ(b.append("world"), 3u);  // only 3 bytes of room
  EXPECT_TRUE(b.full());
  EXPECT_EQ(b.readable(), "hellowor");
  b.consume(5);
  EXPECT_EQ(b.append("12345"), 5u);  // compacts to make room
  EXPECT_EQ(b.readable(), "wor12345");
  b.consume(8);
  EXPECT_TRUE(b.empty());
  b.release_if_empty();
  EXPECT_FALSE(b.allocated());
  b.ensure_allocated(4);
  EXPECT_EQ(b.capacity(), 4u);
}

}  // namespace
}  // namespace weir
