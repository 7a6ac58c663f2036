#include "balance/hash.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace weir::balance {
namespace {

// Published XXH64 vectors: the hash is the reference algorithm, byte for byte, so any other
// implementation (another weir, a script) computes the same keys.
TEST(HashKey, MatchesXxh64ReferenceVectors) {
  EXPECT_EQ(hash_key(""), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(hash_key("a"), 0xD24EC4F1A98C6E5BULL);
  EXPECT_EQ(hash_key("abc"), 0x44BC2CF5AD770999ULL);
  EXPECT_EQ(hash_key("Hello, World!"), 0xC49AACF8080FE47FULL);
  EXPECT_EQ(hash_key("Hello, World!", 42), 0xC2E0FE28B2512846ULL);
  EXPECT_EQ(hash_key(std::string(32, 'a')), 0x856E843298F99AD7ULL);
  EXPECT_EQ(hash_key(std::string(33, 'a')), 0x18F3FF0C21E3B24BULL);
  std::string abc, abcd;
  for (int i = 0; i < 999; ++i)
    abc += "abc";
  for (int i = 0; i < 1000; ++i)
    abcd += "abcd";
  EXPECT_EQ(hash_key(abc), 0x933EB85613976467ULL);
  EXPECT_EQ(hash_key(abcd), 0x205219D38E8898BCULL);
}

TEST(HashKey, ReadsOnlyTheViewNotPastIt) {
  std::string s = "10.0.0.1:5555";
  EXPECT_EQ(hash_key(std::string_view(s).substr(0, 8)), hash_key("10.0.0.1"));
}

// Similar keys (consecutive client IPs) land evenly in every bit range.
TEST(HashKey, SimilarKeysSpreadEvenly) {
  constexpr int kKeys = 64000, kBuckets = 64;
  std::vector<int> low(kBuckets), high(kBuckets);
  for (int i = 0; i < kKeys; ++i) {
    uint64_t h = hash_key("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256));
    ++low[h % kBuckets];
    ++high[h >> 58];
  }
  for (int b = 0; b < kBuckets; ++b) {
    EXPECT_NEAR(low[b], kKeys / kBuckets, 150) << b;
    EXPECT_NEAR(high[b], kKeys / kBuckets, 150) << b;
  }
}

TEST(Reduce, MapsOntoTheRange) {
  EXPECT_EQ(reduce(0, 7), 0u);
  EXPECT_EQ(reduce(~uint64_t{0}, 7), 6u);
  EXPECT_EQ(reduce(uint64_t{1} << 63, 10), 5u);
}

}  // namespace
}  // namespace weir::balance
