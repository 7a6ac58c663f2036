// BufferPool: the per-thread cache of equal-sized buffer blocks.
#include "core/buffer_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/buffer.hpp"

namespace weir {
namespace {

// The address of a buffer's block (its storage starts at the write position when empty).
const char* block_of(Buffer& b) {
  return b.writable().data();
}

TEST(BufferPool, AcquireGivesABlockOfTheBlockSize) {
  BufferPool pool(4096, 8);
  EXPECT_EQ(pool.block_size(), 4096u);
  Buffer b;
  EXPECT_FALSE(b.allocated());
  pool.acquire(b);
  ASSERT_TRUE(b.allocated());
  EXPECT_EQ(b.capacity(), 4096u);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(pool.in_use(), 1u);
  EXPECT_EQ(pool.cached(), 0u);
  pool.release(b);
}

TEST(BufferPool, AcquireOfAnAllocatedBufferDoesNothing) {
  BufferPool pool(4096, 8);
  Buffer b;
  pool.acquire(b);
  const char* first = block_of(b);
  b.append("keep me");
  pool.acquire(b);  // already has a block: untouched, not counted twice
  EXPECT_EQ(block_of(b) - b.size(), first);
  EXPECT_EQ(b.readable(), "keep me");
  EXPECT_EQ(pool.in_use(), 1u);
  b.clear();
  pool.release(b);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(BufferPool, ReleaseThenAcquireReusesTheSameBlock) {
  BufferPool pool(4096, 8);
  Buffer a;
  pool.acquire(a);
  const char* block = block_of(a);
  a.append("hello");
  a.consume(5);  // empty again
  pool.release(a);
  EXPECT_FALSE(a.allocated());
  EXPECT_EQ(a.capacity(), 0u);
  EXPECT_EQ(pool.cached(), 1u);
  EXPECT_EQ(pool.in_use(), 0u);

  Buffer b;
  pool.acquire(b);
  EXPECT_EQ(block_of(b), block);
  EXPECT_EQ(b.capacity(), 4096u);
  EXPECT_TRUE(b.empty());  // positions reset
  EXPECT_EQ(pool.cached(), 0u);
  EXPECT_EQ(pool.in_use(), 1u);
  pool.release(b);
}

TEST(BufferPool, ReusesBlocksLastInFirstOut) {
  BufferPool pool(1024, 8);
  Buffer a, b;
  pool.acquire(a);
  pool.acquire(b);
  const char* pa = block_of(a);
  const char* pb = block_of(b);
  ASSERT_NE(pa, pb);
  pool.release(a);
  pool.release(b);
  EXPECT_EQ(pool.cached(), 2u);
  Buffer c, d;
  pool.acquire(c);
  pool.acquire(d);
  EXPECT_EQ(block_of(c), pb);  // the most recently released block first
  EXPECT_EQ(block_of(d), pa);
  EXPECT_EQ(pool.cached(), 0u);
  EXPECT_EQ(pool.in_use(), 2u);
  pool.release(c);
  pool.release(d);
}

TEST(BufferPool, KeepsAtMostMaxCachedBlocks) {
  BufferPool pool(1024, 3);
  std::vector<Buffer> bufs(10);
  for (auto& b : bufs)
    pool.acquire(b);
  EXPECT_EQ(pool.in_use(), 10u);
  for (size_t i = 0; i < bufs.size(); ++i) {
    pool.release(bufs[i]);
    EXPECT_FALSE(bufs[i].allocated());
    EXPECT_EQ(pool.cached(), std::min<size_t>(i + 1, 3));
    EXPECT_EQ(pool.in_use(), bufs.size() - i - 1);
  }
  EXPECT_EQ(pool.cached(), 3u);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(BufferPool, ZeroMaxCachedKeepsNothing) {
  BufferPool pool(1024, 0);
  Buffer b;
  pool.acquire(b);
  pool.release(b);
  EXPECT_FALSE(b.allocated());
  EXPECT_EQ(pool.cached(), 0u);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(BufferPool, ReleaseOfANonEmptyBufferDoesNothing) {
  BufferPool pool(1024, 8);
  Buffer b;
  pool.acquire(b);
  const char* block = block_of(b);
  b.append("pending bytes");
  pool.release(b);
  ASSERT_TRUE(b.allocated());
  EXPECT_EQ(b.readable(), "pending bytes");
  EXPECT_EQ(b.read_ptr(), block);
  EXPECT_EQ(pool.cached(), 0u);
  EXPECT_EQ(pool.in_use(), 1u);  // still out
  b.consume(b.size());
  pool.release(b);
  EXPECT_FALSE(b.allocated());
  EXPECT_EQ(pool.cached(), 1u);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(BufferPool, ReleaseOfAnUnallocatedBufferDoesNothing) {
  BufferPool pool(1024, 8);
  Buffer held;
  pool.acquire(held);
  Buffer never;
  pool.release(never);
  EXPECT_EQ(pool.cached(), 0u);
  EXPECT_EQ(pool.in_use(), 1u);  // the release did not count
  pool.release(held);
  EXPECT_EQ(pool.in_use(), 0u);
  pool.release(held);  // twice: already given back
  EXPECT_EQ(pool.cached(), 1u);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(BufferPool, SetBlockSizeDropsCachedBlocksOfTheOldSize) {
  BufferPool pool(1024, 8);
  std::vector<Buffer> bufs(3);
  for (auto& b : bufs)
    pool.acquire(b);
  for (auto& b : bufs)
    pool.release(b);
  ASSERT_EQ(pool.cached(), 3u);

  pool.set_block_size(1024);  // the same size: nothing changes
  EXPECT_EQ(pool.cached(), 3u);

  pool.set_block_size(2048);
  EXPECT_EQ(pool.block_size(), 2048u);
  EXPECT_EQ(pool.cached(), 0u);
  Buffer b;
  pool.acquire(b);
  EXPECT_EQ(b.capacity(), 2048u);
  pool.release(b);
  EXPECT_EQ(pool.cached(), 1u);
}

TEST(BufferPool, BlocksOfTheOldSizeComingBackAreNotCached) {
  BufferPool pool(1024, 8);
  Buffer old_a, old_b;
  pool.acquire(old_a);
  pool.acquire(old_b);
  EXPECT_EQ(pool.in_use(), 2u);
  pool.set_block_size(4096);  // a reload while the blocks are out
  pool.release(old_a);
  EXPECT_FALSE(old_a.allocated());
  EXPECT_EQ(pool.cached(), 0u);  // a 1 KiB block must never be handed out as a 4 KiB one
  EXPECT_EQ(pool.in_use(), 1u);  // but it is back
  pool.release(old_b);
  EXPECT_EQ(pool.cached(), 0u);
  EXPECT_EQ(pool.in_use(), 0u);
  Buffer fresh;
  pool.acquire(fresh);
  EXPECT_EQ(fresh.capacity(), 4096u);
  pool.release(fresh);
}

TEST(BufferPool, InUseCountsBlocksHandedOutAndNotBack) {
  BufferPool pool(512, 2);
  std::vector<Buffer> bufs(5);
  size_t expect = 0;
  for (auto& b : bufs) {
    pool.acquire(b);
    EXPECT_EQ(pool.in_use(), ++expect);
  }
  // Blocks that come from the cache count the same as new ones.
  pool.release(bufs[0]);
  pool.release(bufs[1]);
  EXPECT_EQ(pool.in_use(), 3u);
  pool.acquire(bufs[0]);
  EXPECT_EQ(pool.in_use(), 4u);
  EXPECT_EQ(pool.cached(), 1u);
  // Blocks dropped because the cache is full still come back.
  for (auto& b : bufs)
    pool.release(b);
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.cached(), 2u);
}

TEST(BufferPool, ShrinkAfterBurstIsFalseUnderSteadyUse) {
  BufferPool pool(1024, 64);
  std::vector<Buffer> bufs(20);
  for (auto& b : bufs)
    pool.acquire(b);
  // Steady churn: a few blocks go back and come out again; the count stays near the peak.
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 3; ++i)
      pool.release(bufs[i]);
    EXPECT_EQ(pool.cached(), 3u);
    EXPECT_FALSE(pool.shrink_after_burst(/*slack=*/4, /*keep=*/1));
    EXPECT_EQ(pool.cached(), 3u);  // nothing cut
    for (int i = 0; i < 3; ++i)
      pool.acquire(bufs[i]);
    EXPECT_FALSE(pool.shrink_after_burst(4, 1));
  }
  // Exactly `slack` fewer than the peak is still steady.
  for (int i = 0; i < 4; ++i)
    pool.release(bufs[i]);
  EXPECT_FALSE(pool.shrink_after_burst(4, 1));
  EXPECT_EQ(pool.cached(), 4u);
  for (auto& b : bufs)
    pool.release(b);
}

TEST(BufferPool, ShrinkAfterBurstCutsTheCacheToKeep) {
  BufferPool pool(1024, 64);
  std::vector<Buffer> bufs(50);
  for (auto& b : bufs)
    pool.acquire(b);
  EXPECT_EQ(pool.in_use(), 50u);
  for (size_t i = 2; i < bufs.size(); ++i)
    pool.release(bufs[i]);
  EXPECT_EQ(pool.in_use(), 2u);
  EXPECT_EQ(pool.cached(), 48u);
  EXPECT_TRUE(pool.shrink_after_burst(/*slack=*/8, /*keep=*/4));
  EXPECT_EQ(pool.cached(), 4u);
  EXPECT_EQ(pool.in_use(), 2u);  // blocks in use are not affected

  // The cut cache still works.
  Buffer more;
  pool.acquire(more);
  EXPECT_EQ(pool.cached(), 3u);
  EXPECT_EQ(more.capacity(), 1024u);
  pool.release(more);
  pool.release(bufs[0]);
  pool.release(bufs[1]);
}

TEST(BufferPool, ShrinkAfterBurstWithASmallCacheKeepsIt) {
  BufferPool pool(1024, 3);
  std::vector<Buffer> bufs(30);
  for (auto& b : bufs)
    pool.acquire(b);
  for (auto& b : bufs)
    pool.release(b);
  EXPECT_EQ(pool.cached(), 3u);
  EXPECT_TRUE(pool.shrink_after_burst(8, 10));  // a burst, but the cache is already small
  EXPECT_EQ(pool.cached(), 3u);
}

TEST(BufferPool, ShrinkAfterBurstResetsThePeak) {
  BufferPool pool(1024, 64);
  std::vector<Buffer> bufs(40);
  for (auto& b : bufs)
    pool.acquire(b);
  for (auto& b : bufs)
    pool.release(b);
  EXPECT_TRUE(pool.shrink_after_burst(8, 16));
  EXPECT_EQ(pool.cached(), 16u);
  // The burst has been reported: the next call measures from here.
  EXPECT_FALSE(pool.shrink_after_burst(8, 0));
  EXPECT_EQ(pool.cached(), 16u);

  // Light use after the burst: never more than `slack` above what is in use now.
  for (int i = 0; i < 4; ++i)
    pool.acquire(bufs[i]);
  for (int i = 0; i < 4; ++i)
    pool.release(bufs[i]);
  EXPECT_FALSE(pool.shrink_after_burst(8, 0));
  EXPECT_EQ(pool.cached(), 16u);

  // A false answer resets the peak too: a slow decline, less than `slack` between two calls,
  // is never a burst.
  for (int i = 0; i < 30; ++i)
    pool.acquire(bufs[i]);
  EXPECT_FALSE(pool.shrink_after_burst(8, 0));  // all 30 still in use
  for (int i = 25; i < 30; ++i)
    pool.release(bufs[i]);
  EXPECT_FALSE(pool.shrink_after_burst(8, 0));  // 30 → 25
  for (int i = 20; i < 25; ++i)
    pool.release(bufs[i]);
  EXPECT_FALSE(pool.shrink_after_burst(8, 0));  // 25 → 20 (30 → 20 would be one)
  EXPECT_EQ(pool.cached(), 10u);
  for (int i = 20; i < 30; ++i)
    pool.acquire(bufs[i]);
  EXPECT_FALSE(pool.shrink_after_burst(8, 0));
  for (int i = 0; i < 30; ++i)
    pool.release(bufs[i]);
  EXPECT_TRUE(pool.shrink_after_burst(8, 2));  // 30 at the peak since the last call, 0 now
  EXPECT_EQ(pool.cached(), 2u);
  EXPECT_FALSE(pool.shrink_after_burst(8, 0));
  EXPECT_EQ(pool.cached(), 2u);
}

TEST(BufferPool, ShrinkAfterBurstCountsThePeakBetweenCalls) {
  BufferPool pool(1024, 64);
  std::vector<Buffer> bufs(20);
  // A burst that came and went between two calls is still seen.
  EXPECT_FALSE(pool.shrink_after_burst(4, 0));
  for (auto& b : bufs)
    pool.acquire(b);
  for (auto& b : bufs)
    pool.release(b);
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_TRUE(pool.shrink_after_burst(4, 5));
  EXPECT_EQ(pool.cached(), 5u);
}

}  // namespace
}  // namespace weir
