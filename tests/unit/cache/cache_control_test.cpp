// Cache-Control and CDN-Cache-Control parsing (cache/cache_control.hpp).
#include "cache/cache_control.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace weir::cache {
namespace {

ResponseDirectives res(std::vector<std::string_view> v) {
  return parse_response_cache_control(v);
}
RequestDirectives req(std::vector<std::string_view> v) {
  return parse_request_cache_control(v);
}
TargetedDirectives cdn(std::vector<std::string_view> v) {
  return parse_cdn_cache_control(v);
}

// RFC 9111 1.2.2: delta-seconds is 1*DIGIT; larger values clamp to 2^31.
TEST(CacheControl, DeltaSeconds_1_2_2) {
  EXPECT_EQ(parse_delta_seconds("0").value, 0u);
  EXPECT_EQ(parse_delta_seconds("0042").value, 42u);
  EXPECT_EQ(parse_delta_seconds("2147483647").value, 2147483647u);
  EXPECT_EQ(parse_delta_seconds("2147483648").value, kMaxDeltaSeconds);
  EXPECT_EQ(parse_delta_seconds("99999999999999999999999999").value, kMaxDeltaSeconds);
  EXPECT_TRUE(parse_delta_seconds("99999999999999999999999999").valid());
  for (std::string_view bad : {"", "-1", "+1", "1.5", "5x", " 5", "0x10"})
    EXPECT_EQ(parse_delta_seconds(bad).state, Seconds::State::Invalid) << bad;
}

// RFC 9111 5.2.2: every response directive, names case-insensitive.
TEST(CacheControl, ResponseDirectives_5_2_2) {
  const auto d = res({"Max-Age=60, S-MAXAGE=120, no-cache, NO-STORE, private, public",
                      "must-revalidate, proxy-revalidate, no-transform, immutable",
                      "stale-while-revalidate=30, stale-if-error=600, must-understand"});
  EXPECT_EQ(d.max_age.value, 60u);
  EXPECT_EQ(d.s_maxage.value, 120u);
  EXPECT_TRUE(d.no_cache && !d.no_cache_fields);
  EXPECT_TRUE(d.no_store);
  EXPECT_TRUE(d.private_ && !d.private_fields);
  EXPECT_TRUE(d.public_);
  EXPECT_TRUE(d.must_revalidate && d.proxy_revalidate && d.no_transform && d.immutable);
  EXPECT_TRUE(d.must_understand);
  EXPECT_EQ(d.stale_while_revalidate.value, 30u);
  EXPECT_EQ(d.stale_if_error.value, 600u);
  EXPECT_EQ(d.count, 13);
  EXPECT_FALSE(d.truncated);
}

// RFC 9111 5.2: recipients accept both token and quoted-string arguments.
TEST(CacheControl, QuotedArguments_5_2) {
  const auto d = res({R"(max-age="5", s-maxage="7")"});
  EXPECT_TRUE(d.max_age.valid());
  EXPECT_EQ(d.max_age.value, 5u);
  EXPECT_EQ(d.s_maxage.value, 7u);
  // An escape inside a number: the directive stays, its value is invalid.
  EXPECT_EQ(res({R"(max-age="\5")"}).max_age.state, Seconds::State::Invalid);
}

// RFC 9111 5.2.2.4 / 5.2.2.7: the qualified forms (field lists), quoted or token, commas inside
// the quotes do not split the list.
TEST(CacheControl, QualifiedNoCacheAndPrivate_5_2_2_4_5_2_2_7) {
  auto d = res({R"(no-cache="set-cookie, x-foo", private=authorization, max-age=9)"});
  EXPECT_TRUE(d.no_cache && d.no_cache_fields);
  EXPECT_TRUE(d.private_ && d.private_fields);
  EXPECT_EQ(d.max_age.value, 9u);
  EXPECT_EQ(d.count, 3);
}

// RFC 9111 4.2.1: invalid values (non-integer max-age) are present but Invalid (→ stale).
TEST(CacheControl, InvalidDelta_4_2_1) {
  for (std::string_view v : {"max-age=abc", "max-age=", "max-age=-1", "max-age=1.5", "max-age = 5",
                             "max-age=5 6", "max-age"}) {
    const auto d = res({v});
    EXPECT_EQ(d.max_age.state, Seconds::State::Invalid) << v;
  }
}

// RFC 9111 4.2.1: of duplicate directives the first occurrence is used.
TEST(CacheControl, DuplicateFirstWins_4_2_1) {
  EXPECT_EQ(res({"max-age=10, max-age=20"}).max_age.value, 10u);
  EXPECT_EQ(res({"max-age=10", "max-age=20"}).max_age.value, 10u);
  EXPECT_FALSE(res({"max-age=x, max-age=20"}).max_age.valid());
}

// RFC 9111 1.2.2: overflow clamps.
TEST(CacheControl, Overflow_1_2_2) {
  EXPECT_EQ(res({"max-age=123456789012345678901234567890"}).max_age.value, kMaxDeltaSeconds);
}

// RFC 9110 5.6.1: empty list elements are ignored; broken elements do not hide later ones.
TEST(CacheControl, ListSyntax) {
  auto d = res({", ,max-age=1,,  ,no-store,"});
  EXPECT_EQ(d.max_age.value, 1u);
  EXPECT_TRUE(d.no_store);
  EXPECT_EQ(d.count, 2);
  d = res({R"(private="unterminated, no-store)"});
  EXPECT_TRUE(d.private_);
  EXPECT_TRUE(d.no_store);  // skipped to the next comma, quotes or not
  d = res({R"(=5, "x", no-store)"});
  EXPECT_TRUE(d.no_store);
  d = res({"max-age=5;x, public"});
  EXPECT_FALSE(d.max_age.valid());
  EXPECT_TRUE(d.public_);
}

// Permissive flags with an argument are ignored; restrictive ones count anyway.
TEST(CacheControl, FlagsWithArguments) {
  auto d = res({"public=1, immutable=yes, no-store=1, must-revalidate=\"x\""});
  EXPECT_FALSE(d.public_);
  EXPECT_FALSE(d.immutable);
  EXPECT_TRUE(d.no_store);
  EXPECT_TRUE(d.must_revalidate);
  EXPECT_FALSE(res({"unknown-ext=\"a,b\", foo"}).no_store);
}

// Bounded: at most kMaxDirectives elements.
TEST(CacheControl, Truncated) {
  std::string many;
  for (size_t i = 0; i < kMaxDirectives; ++i)
    many += "x" + std::to_string(i) + ",";
  EXPECT_FALSE(res({many}).truncated);
  const std::string more = many + "no-store";
  const auto d = res({more});
  EXPECT_TRUE(d.truncated);
  EXPECT_FALSE(d.no_store);
  EXPECT_EQ(d.count, kMaxDirectives);
}

// RFC 9111 5.2.1: request directives.
TEST(CacheControl, RequestDirectives_5_2_1) {
  auto d = req({"max-age=5, min-fresh=3, no-cache, no-store, only-if-cached, no-transform"});
  EXPECT_EQ(d.max_age.value, 5u);
  EXPECT_EQ(d.min_fresh.value, 3u);
  EXPECT_TRUE(d.no_cache && d.no_store && d.only_if_cached && d.no_transform);
  EXPECT_FALSE(d.max_stale.present());
  EXPECT_FALSE(d.max_stale_any);
  // 5.2.1.2: max-stale with and without a value.
  d = req({"max-stale"});
  EXPECT_TRUE(d.max_stale_any);
  d = req({"MAX-STALE=60"});
  EXPECT_FALSE(d.max_stale_any);
  EXPECT_EQ(d.max_stale.value, 60u);
  d = req({"max-stale=x"});
  EXPECT_EQ(d.max_stale.state, Seconds::State::Invalid);
  // RFC 5861 4: stale-if-error in a request.
  EXPECT_EQ(req({"stale-if-error=30"}).stale_if_error.value, 30u);
  // Response-only directives mean nothing in a request.
  EXPECT_FALSE(req({"s-maxage=5, private"}).max_age.present());
}

// RFC 9213 2.1: CDN-Cache-Control is a Structured Fields Dictionary.
TEST(CdnCacheControl, Dictionary_RFC9213_2_1) {
  auto t = cdn({"max-age=60, s-maxage=10, no-store, stale-while-revalidate=5"});
  ASSERT_TRUE(t.valid);
  EXPECT_EQ(t.directives.max_age.value, 60u);
  EXPECT_EQ(t.directives.s_maxage.value, 10u);
  EXPECT_TRUE(t.directives.no_store);
  EXPECT_EQ(t.directives.stale_while_revalidate.value, 5u);
  // Several lines are one Dictionary; parameters ignored; the last duplicate wins.
  t = cdn({"max-age=1;foo=bar", "max-age=2, private=\"set-cookie\""});
  ASSERT_TRUE(t.valid);
  EXPECT_EQ(t.directives.max_age.value, 2u);
  EXPECT_TRUE(t.directives.private_ && t.directives.private_fields);
  // Booleans: ?1 is the bare key, ?0 of a permissive directive grants nothing.
  t = cdn({"public=?0, immutable=?1"});
  ASSERT_TRUE(t.valid);
  EXPECT_FALSE(t.directives.public_);
  EXPECT_TRUE(t.directives.immutable);
  t = cdn({"public, public=?0"});
  EXPECT_FALSE(t.directives.public_);
}

// RFC 9213 2.1: types: a string, decimal or negative number is not delta-seconds.
TEST(CdnCacheControl, Types_RFC9213_2_1) {
  for (std::string_view v : {"max-age=\"60\"", "max-age=1.5", "max-age=-1", "max-age=abc",
                             "max-age=(1 2)", "max-age=:AAA=:", "max-age=?1"}) {
    auto t = cdn({v});
    ASSERT_TRUE(t.valid) << v;
    EXPECT_EQ(t.directives.max_age.state, Seconds::State::Invalid) << v;
  }
  EXPECT_EQ(cdn({"max-age=999999999999999"}).directives.max_age.value, kMaxDeltaSeconds);
}

// RFC 9213 2.2: a field that fails to parse, or is empty, is ignored as a whole.
TEST(CdnCacheControl, ParseFailureIgnored_RFC9213_2_2) {
  for (std::string_view v :
       {"Max-Age=60", "max-age=60,", "max-age=60 no-store", "max-age=1234567890123456",
        "no-store, =", "max-age=\"x", "a=1.2345", "a=(1", "a=?2", "a=%\"\xff\""}) {
    EXPECT_FALSE(cdn({v}).valid) << v;
  }
  EXPECT_FALSE(cdn({}).valid);
  EXPECT_FALSE(cdn({"", "  "}).valid);
  // One bad line spoils the whole field.
  EXPECT_FALSE(cdn({"max-age=60", "BAD"}).valid);
  // Other item types parse.
  EXPECT_TRUE(
      cdn({"a=@1659578233, b=%\"caf%c3%a9\", c=tok/en:x, d=(1 \"s\" tok);p, e=1.25"}).valid);
}

}  // namespace
}  // namespace weir::cache
