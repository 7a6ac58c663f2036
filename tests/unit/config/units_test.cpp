#include "config/units.hpp"

#include <gtest/gtest.h>

namespace weir::config {
namespace {

using std::chrono::milliseconds;

struct DurationCase {
  const char* text;
  int64_t ms;
};

TEST(ParseDuration, Valid) {
  const DurationCase cases[] = {
      {"0ms", 0},
      {"0s", 0},
      {"250ms", 250},
      {"2s", 2000},
      {"1m", 60000},
      {"1h", 3600000},
      {"1d", 86400000},
      {"1.5s", 1500},
      {"0.5s", 500},
      {"1.25m", 75000},
      {"1.500s", 1500},
      {"0.001s", 1},
      {"1m30s", 90000},
      {"1h30m", 5400000},
      {"1d2h3m4s5ms", 93784005},
      {"3650d", 3650LL * 86400000},
      {"007s", 7000},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto d = parse_duration(c.text);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->count(), c.ms);
    EXPECT_EQ(duration_error(c.text), "");
  }
}

TEST(ParseDuration, Invalid) {
  const char* cases[] = {"",     "s",     "ms",      "2",     "1.5",   "-1s",   "2S",
                         "2sec", "2 s",   " 2s",     "2s ",   "1.s",   ".5s",   "1e3ms",
                         "+1s",  "0.5ms", "1.0001s", "30s1m", "1s1s",  "1m1h",  "abc",
                         "2us",  "1w",    "0x10s",   "1,5s",  "1..5s", "2s-1s", "1ms5"};
  for (const char* c : cases) {
    SCOPED_TRACE(c);
    EXPECT_FALSE(parse_duration(c).has_value());
    EXPECT_NE(duration_error(c), "");
  }
}

TEST(ParseDuration, Overflow) {
  const char* cases[] = {"3651d",
                         "3650d1ms",
                         "87601h",
                         "99999999999999999999s",
                         "18446744073709551616ms",
                         "999999999999999999999999999999999999999ms",
                         "9223372036854775807ms",
                         "1000000000000000000.5s"};
  for (const char* c : cases) {
    SCOPED_TRACE(c);
    EXPECT_FALSE(parse_duration(c).has_value());
    EXPECT_NE(duration_error(c).find("too large"), std::string::npos) << duration_error(c);
  }
}

TEST(ParseDuration, Messages) {
  EXPECT_EQ(duration_error("2"), "duration needs a unit, e.g. 2s");
  EXPECT_EQ(duration_error("1.5"), "duration needs a unit, e.g. 2s");
  EXPECT_EQ(duration_error("-1s"), "duration \"-1s\" must not be negative");
  EXPECT_EQ(duration_error("2sec"),
            "unknown duration unit \"sec\" in \"2sec\" (use ms, s, m, h or d)");
  EXPECT_EQ(duration_error("0.5ms"), "duration \"0.5ms\" is not a whole number of milliseconds");
}

struct SizeCase {
  const char* text;
  uint64_t bytes;
};

TEST(ParseSize, Valid) {
  const SizeCase cases[] = {
      {"0", 0},
      {"512", 512},
      {"512B", 512},
      {"16KiB", 16384},
      {"1MiB", 1048576},
      {"1GiB", 1073741824},
      {"16KB", 16000},
      {"1MB", 1000000},
      {"2GB", 2000000000},
      {"16K", 16384},
      {"2M", 2097152},
      {"1G", 1073741824},
      {"18446744073709551615", UINT64_MAX},
      {"17179869183GiB", 17179869183ULL * 1073741824ULL},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto s = parse_size(c.text);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(*s, c.bytes);
  }
}

TEST(ParseSize, Invalid) {
  const char* cases[] = {"",     "KiB",  "-1",     "-16KiB", "1.5KiB", "0.5",    "16kib",
                         "16kb", "16k",  "16 KiB", " 16",    "16KiB ", "16KIB",  "abc",
                         "16Ki", "1TiB", "0x10",   "1e3",    "+5",     "16KiBs", "1,000"};
  for (const char* c : cases) {
    SCOPED_TRACE(c);
    EXPECT_FALSE(parse_size(c).has_value());
    EXPECT_NE(size_error(c), "");
  }
}

TEST(ParseSize, Overflow) {
  const char* cases[] = {"18446744073709551616", "17179869184GiB", "99999999999999999999999",
                         "18446744073709552KB"};
  for (const char* c : cases) {
    SCOPED_TRACE(c);
    EXPECT_FALSE(parse_size(c).has_value());
    EXPECT_NE(size_error(c).find("too large"), std::string::npos) << size_error(c);
  }
}

TEST(ParseSize, Messages) {
  EXPECT_EQ(size_error("-1"), "size \"-1\" must not be negative");
  EXPECT_EQ(size_error("1.5KiB"),
            "size \"1.5KiB\" must be a whole number (e.g. 1536 rather than 1.5KiB)");
  EXPECT_EQ(size_error("16kib"),
            "unknown size unit \"kib\" in \"16kib\" (use B, KB, MB, GB, KiB, MiB or GiB)");
}

}  // namespace
}  // namespace weir::config
