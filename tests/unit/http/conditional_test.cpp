#include "http/conditional.hpp"

#include <gtest/gtest.h>

#include <string>

namespace weir::http {

void PrintTo(const ByteRange& r, std::ostream* os) {
  *os << int(r.kind) << ":" << r.offset << "+" << r.length;
}

namespace {

constexpr int64_t kLm = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
constexpr const char* kLmText = "Sun, 06 Nov 1994 08:49:37 GMT";
constexpr const char* kBefore = "Sun, 06 Nov 1994 08:49:36 GMT";
constexpr const char* kAfter = "Sun, 06 Nov 1994 08:49:38 GMT";
constexpr int64_t kNow = kLm + 3600;

const Validators kV{"\"abc\"", kLm};

Precondition pre(const ConditionalHeaders& h, Method m = Method::Get, Validators v = kV) {
  return evaluate_preconditions(h, v, m);
}

// RFC 9110 8.8.3: entity-tag grammar.
TEST(EntityTag, Rfc9110_8_8_3_Grammar) {
  auto t = parse_entity_tag("\"xyzzy\"");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->weak);
  EXPECT_EQ(t->opaque, "\"xyzzy\"");
  t = parse_entity_tag("W/\"xyzzy\"");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->weak);
  EXPECT_TRUE(parse_entity_tag("\"\""));
  EXPECT_TRUE(parse_entity_tag("\"a,b\""));  // a comma is an etagc
  for (const char* bad : {"", "xyzzy", "\"abc", "abc\"", "w/\"abc\"", "W/abc", "\"a b\"",
                          "\"a\"b\"", "\"abc\" ", " \"abc\"", "W/ \"abc\""}) {
    EXPECT_FALSE(parse_entity_tag(bad)) << bad;
  }
}

// RFC 9110 8.8.3.2: the comparison table.
TEST(EntityTag, Rfc9110_8_8_3_2_ComparisonTable) {
  const auto w1 = *parse_entity_tag("W/\"1\"");
  const auto w2 = *parse_entity_tag("W/\"2\"");
  const auto s1 = *parse_entity_tag("\"1\"");
  EXPECT_FALSE(strong_match(w1, w1));
  EXPECT_TRUE(weak_match(w1, w1));
  EXPECT_FALSE(strong_match(w1, w2));
  EXPECT_FALSE(weak_match(w1, w2));
  EXPECT_FALSE(strong_match(w1, s1));
  EXPECT_TRUE(weak_match(w1, s1));
  EXPECT_TRUE(strong_match(s1, s1));
  EXPECT_TRUE(weak_match(s1, s1));
}

TEST(EntityTag, Rfc9110_13_1_1_Lists) {
  EXPECT_TRUE(etag_list_matches("\"x\", \"abc\"", "\"abc\"", false));
  EXPECT_TRUE(etag_list_matches("\"x\" ,\t\"abc\"", "\"abc\"", false));
  EXPECT_TRUE(etag_list_matches(",, \"abc\",", "\"abc\"", false));  // empty elements
  EXPECT_TRUE(etag_list_matches("\"a,b\", \"abc\"", "\"abc\"", false));
  EXPECT_FALSE(etag_list_matches("\"a,b\"", "\"a\"", false));
  EXPECT_FALSE(etag_list_matches("W/\"abc\"", "\"abc\"", false));
  EXPECT_TRUE(etag_list_matches("W/\"abc\"", "\"abc\"", true));
  EXPECT_TRUE(etag_list_matches("*", "\"abc\"", false));
  EXPECT_TRUE(etag_list_matches("*", "", false));  // any current representation
  EXPECT_FALSE(etag_list_matches("\"abc\"", "", true));
  EXPECT_FALSE(etag_list_matches("", "\"abc\"", true));
  // A malformed element ends the scan: nothing at or after it matches.
  EXPECT_FALSE(etag_list_matches("abc, \"abc\"", "\"abc\"", true));
  EXPECT_FALSE(etag_list_matches("\"x\" \"abc\"", "\"abc\"", true));
  EXPECT_FALSE(etag_list_matches("*, \"abc\"", "\"abc\"", true));
  EXPECT_TRUE(etag_list_matches("\"abc\", garbage", "\"abc\"", true));
}

// RFC 9110 13.1.1: If-Match uses the strong comparison; false → 412.
TEST(Preconditions, Rfc9110_13_1_1_IfMatch) {
  EXPECT_EQ(pre({.if_match = "\"abc\""}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_match = "\"nope\", \"abc\""}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_match = "*"}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_match = "\"nope\""}), Precondition::PreconditionFailed);
  EXPECT_EQ(pre({.if_match = "W/\"abc\""}), Precondition::PreconditionFailed);
  EXPECT_EQ(pre({.if_match = "\"abc\""}, Method::Get, {"W/\"abc\"", kLm}),
            Precondition::PreconditionFailed);
  EXPECT_EQ(pre({.if_match = "garbage"}), Precondition::PreconditionFailed);
  EXPECT_EQ(pre({.if_match = "\"abc\""}, Method::Put), Precondition::Proceed);
  EXPECT_EQ(pre({.if_match = "\"x\""}, Method::Put), Precondition::PreconditionFailed);
}

// RFC 9110 13.1.4: If-Unmodified-Since; ignored with If-Match, an invalid date, or no
// Last-Modified.
TEST(Preconditions, Rfc9110_13_1_4_IfUnmodifiedSince) {
  EXPECT_EQ(pre({.if_unmodified_since = kLmText}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_unmodified_since = kAfter}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_unmodified_since = kBefore}), Precondition::PreconditionFailed);
  EXPECT_EQ(pre({.if_unmodified_since = "yesterday"}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_unmodified_since = std::string(kBefore) + ", " + kBefore}),
            Precondition::Proceed);
  EXPECT_EQ(pre({.if_unmodified_since = kBefore}, Method::Get, {"\"abc\"", std::nullopt}),
            Precondition::Proceed);
  EXPECT_EQ(pre({.if_match = "\"abc\"", .if_unmodified_since = kBefore}), Precondition::Proceed);
}

// RFC 9110 13.1.2: If-None-Match, weak comparison; a match → 304 for GET/HEAD, else 412.
TEST(Preconditions, Rfc9110_13_1_2_IfNoneMatch) {
  EXPECT_EQ(pre({.if_none_match = "\"abc\""}), Precondition::NotModified);
  EXPECT_EQ(pre({.if_none_match = "W/\"abc\""}), Precondition::NotModified);
  EXPECT_EQ(pre({.if_none_match = "\"abc\""}, Method::Get, {"W/\"abc\"", kLm}),
            Precondition::NotModified);
  EXPECT_EQ(pre({.if_none_match = "\"x\", \"abc\""}, Method::Head), Precondition::NotModified);
  EXPECT_EQ(pre({.if_none_match = "*"}), Precondition::NotModified);
  EXPECT_EQ(pre({.if_none_match = "\"x\""}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_none_match = "garbage"}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_none_match = "\"abc\""}, Method::Post), Precondition::PreconditionFailed);
  EXPECT_EQ(pre({.if_none_match = "*"}, Method::Put), Precondition::PreconditionFailed);
}

// RFC 9110 13.1.3: If-Modified-Since, GET/HEAD only, ignored with If-None-Match or an invalid
// date or no Last-Modified.
TEST(Preconditions, Rfc9110_13_1_3_IfModifiedSince) {
  EXPECT_EQ(pre({.if_modified_since = kLmText}), Precondition::NotModified);
  EXPECT_EQ(pre({.if_modified_since = kAfter}, Method::Head), Precondition::NotModified);
  EXPECT_EQ(pre({.if_modified_since = kBefore}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_modified_since = "Sunday, 06-Nov-94 08:49:37 GMT"}),
            Precondition::NotModified);
  EXPECT_EQ(pre({.if_modified_since = "Sun Nov  6 08:49:37 1994"}), Precondition::NotModified);
  EXPECT_EQ(pre({.if_modified_since = "invalid"}), Precondition::Proceed);
  EXPECT_EQ(pre({.if_modified_since = kLmText}, Method::Post), Precondition::Proceed);
  EXPECT_EQ(pre({.if_modified_since = kLmText}, Method::Get, {"\"abc\"", std::nullopt}),
            Precondition::Proceed);
  // If-None-Match present (even not matching) → If-Modified-Since ignored.
  EXPECT_EQ(pre({.if_none_match = "\"x\"", .if_modified_since = kLmText}), Precondition::Proceed);
}

// RFC 9110 13.2.2: the order of evaluation.
TEST(Preconditions, Rfc9110_13_2_2_Order) {
  // If-Match fails before If-None-Match could give 304.
  EXPECT_EQ(pre({.if_match = "\"x\"", .if_none_match = "\"abc\""}),
            Precondition::PreconditionFailed);
  // If-Unmodified-Since fails before If-Modified-Since could give 304.
  EXPECT_EQ(pre({.if_modified_since = kLmText, .if_unmodified_since = kBefore}),
            Precondition::PreconditionFailed);
  // Both pass → step 3.
  EXPECT_EQ(pre({.if_match = "\"abc\"", .if_none_match = "\"abc\""}), Precondition::NotModified);
  EXPECT_EQ(pre({}), Precondition::Proceed);
}

// RFC 9110 13.1.5: If-Range.
TEST(IfRange, Rfc9110_13_1_5) {
  EXPECT_TRUE(if_range_matches("\"abc\"", kV, kNow));
  EXPECT_FALSE(if_range_matches("\"x\"", kV, kNow));
  EXPECT_FALSE(if_range_matches("W/\"abc\"", kV, kNow));  // weak never matches
  EXPECT_FALSE(if_range_matches("\"abc\"", {"W/\"abc\"", kLm}, kNow));
  EXPECT_FALSE(if_range_matches("\"abc\" ", kV, kNow));
  EXPECT_TRUE(if_range_matches(kLmText, kV, kNow));
  EXPECT_TRUE(if_range_matches("Sunday, 06-Nov-94 08:49:37 GMT", kV, kNow));
  EXPECT_FALSE(if_range_matches(kAfter, kV, kNow));  // exact equality only
  EXPECT_FALSE(if_range_matches(kBefore, kV, kNow));
  EXPECT_FALSE(if_range_matches(kLmText, {"\"abc\"", std::nullopt}, kNow));
  EXPECT_FALSE(if_range_matches("garbage", kV, kNow));
  EXPECT_FALSE(if_range_matches("", kV, kNow));
}

// RFC 9110 8.8.2.2: a Last-Modified date is strong only if at least 1 s before Date.
TEST(IfRange, Rfc9110_8_8_2_2_LastModifiedStrongOnlyOneSecondBeforeNow) {
  EXPECT_FALSE(if_range_matches(kLmText, kV, kLm));
  EXPECT_TRUE(if_range_matches(kLmText, kV, kLm + 1));
}

ByteRange R(RangeKind k, uint64_t o = 0, uint64_t l = 0) {
  return {k, o, l};
}

// RFC 9110 14.1.2: byte ranges.
TEST(Range, Rfc9110_14_1_2_Forms) {
  const auto S = RangeKind::Satisfiable;
  EXPECT_EQ(parse_range("bytes=0-499", 10000), R(S, 0, 500));
  EXPECT_EQ(parse_range("bytes=500-999", 10000), R(S, 500, 500));
  EXPECT_EQ(parse_range("bytes=-500", 10000), R(S, 9500, 500));
  EXPECT_EQ(parse_range("bytes=9500-", 10000), R(S, 9500, 500));
  EXPECT_EQ(parse_range("bytes=0-0", 10000), R(S, 0, 1));
  EXPECT_EQ(parse_range("bytes=-1", 10000), R(S, 9999, 1));
  EXPECT_EQ(parse_range("bytes=0-", 10000), R(S, 0, 10000));
  EXPECT_EQ(parse_range("BYTES=0-1", 10000), R(S, 0, 2));  // range-unit is case-insensitive
  EXPECT_EQ(parse_range("bytes=0-1,", 10000), R(S, 0, 2));
  EXPECT_EQ(parse_range("bytes=000010-0000019", 10000), R(S, 10, 10));
}

// RFC 9110 14.1.1: last-pos past the end is clamped; a suffix longer than the whole is all of it.
TEST(Range, Rfc9110_14_1_1_Clamping) {
  const auto S = RangeKind::Satisfiable;
  EXPECT_EQ(parse_range("bytes=5-100", 10), R(S, 5, 5));
  EXPECT_EQ(parse_range("bytes=-100", 10), R(S, 0, 10));
  EXPECT_EQ(parse_range("bytes=9-9223372036854775807", 10), R(S, 9, 1));
  EXPECT_EQ(parse_range("bytes=-9223372036854775807", 10), R(S, 0, 10));
}

// RFC 9110 14.1.1 / 15.5.17: unsatisfiable → 416.
TEST(Range, Rfc9110_15_5_17_Unsatisfiable) {
  const auto U = RangeKind::Unsatisfiable;
  EXPECT_EQ(parse_range("bytes=10-", 10).kind, U);
  EXPECT_EQ(parse_range("bytes=10-20", 10).kind, U);
  EXPECT_EQ(parse_range("bytes=-0", 10).kind, U);
  EXPECT_EQ(parse_range("bytes=9223372036854775807-", 10).kind, U);
}

// RFC 9110 14.2: an invalid Range, another unit, or several ranges (edge.md) → ignored.
TEST(Range, Rfc9110_14_2_Ignored) {
  for (const char* bad : {"",
                          "bytes",
                          "bytes=",
                          "bytes=,",
                          "bytes=-",
                          "bytes=a-b",
                          "bytes=5-4",
                          "bytes=1-2-3",
                          "bytes=1 -2",
                          "bytes=1- 2",
                          "bytes =0-1",
                          "bytes:0-1",
                          "items=0-1",
                          "byte=0-1",
                          "bytes=0-1 x",
                          "bytes=+1-2",
                          "bytes=0x1-2",
                          "bytes=--1",
                          "bytes=0-1, 3-4",
                          "bytes=0-1,-1",
                          "bytes=9223372036854775808-",
                          "bytes=-9223372036854775808",
                          "bytes=0-99999999999999999999",
                          "bytes=0-1;q=1"}) {
    EXPECT_EQ(parse_range(bad, 10000).kind, RangeKind::Ignore) << bad;
  }
  // Several ranges even when one is unsatisfiable.
  EXPECT_EQ(parse_range("bytes=0-1,20000-", 10000).kind, RangeKind::Ignore);
  // Over the length bound.
  std::string huge = "bytes=0-1" + std::string(kMaxRangeHeader, ' ');
  EXPECT_EQ(parse_range(huge, 10000).kind, RangeKind::Ignore);
  std::string many = "bytes=0-1";
  for (int i = 0; i < 500; ++i)
    many += ",0-1";
  EXPECT_EQ(parse_range(many, 10000).kind, RangeKind::Ignore);
  // A zero-length representation: no range describes it; the empty body is sent whole.
  EXPECT_EQ(parse_range("bytes=-5", 0).kind, RangeKind::Ignore);
  EXPECT_EQ(parse_range("bytes=0-", 0).kind, RangeKind::Ignore);
}

// RFC 9110 14.2 and 13.2.2 step 5: GET only; If-Range decides.
TEST(Range, Rfc9110_14_2_EvaluateWithIfRange) {
  const ConditionalHeaders h{.range = "bytes=0-9"};
  EXPECT_EQ(evaluate_range(h, kV, Method::Get, 100, kNow), R(RangeKind::Satisfiable, 0, 10));
  EXPECT_EQ(evaluate_range(h, kV, Method::Head, 100, kNow).kind, RangeKind::Ignore);
  EXPECT_EQ(evaluate_range(h, kV, Method::Post, 100, kNow).kind, RangeKind::Ignore);
  EXPECT_EQ(evaluate_range({}, kV, Method::Get, 100, kNow).kind, RangeKind::Ignore);
  EXPECT_EQ(evaluate_range({.if_range = "\"abc\""}, kV, Method::Get, 100, kNow).kind,
            RangeKind::Ignore);
  EXPECT_EQ(
      evaluate_range({.if_range = "\"abc\"", .range = "bytes=0-9"}, kV, Method::Get, 100, kNow)
          .kind,
      RangeKind::Satisfiable);
  EXPECT_EQ(
      evaluate_range({.if_range = "\"old\"", .range = "bytes=0-9"}, kV, Method::Get, 100, kNow)
          .kind,
      RangeKind::Ignore);
  EXPECT_EQ(
      evaluate_range({.if_range = kLmText, .range = "bytes=200-"}, kV, Method::Get, 100, kNow).kind,
      RangeKind::Unsatisfiable);
  EXPECT_EQ(
      evaluate_range({.if_range = kAfter, .range = "bytes=200-"}, kV, Method::Get, 100, kNow).kind,
      RangeKind::Ignore);
}

// RFC 9110 14.4: Content-Range.
TEST(ContentRange, Rfc9110_14_4_Format) {
  std::string s;
  format_content_range(0, 500, 1234, s);
  EXPECT_EQ(s, "bytes 0-499/1234");
  s.clear();
  format_content_range(1233, 1, 1234, s);
  EXPECT_EQ(s, "bytes 1233-1233/1234");
  s.clear();
  format_unsatisfied_range(1234, s);
  EXPECT_EQ(s, "bytes */1234");
  s = "x";
  format_content_range(9223372036854775806ull, 1, 9223372036854775807ull, s);
  EXPECT_EQ(s, "xbytes 9223372036854775806-9223372036854775806/9223372036854775807");
}

}  // namespace
}  // namespace weir::http

namespace weir::http {
namespace {

TEST(ConditionalHeaders, FirstOfEachNameAnyCase) {
  const Header fields[] = {{"Host", "a"},
                           {"if-none-match", "\"x\""},
                           {"IF-NONE-MATCH", "\"y\""},
                           {"Range", "bytes=0-1"},
                           {"If-Range", "\"x\""},
                           {"If-Match", "*"},
                           {"If-Modified-Since", "d1"},
                           {"If-Unmodified-Since", "d2"}};
  ConditionalHeaders c = conditional_headers(fields);
  EXPECT_EQ(c.if_none_match, "\"x\"");
  EXPECT_EQ(c.range, "bytes=0-1");
  EXPECT_EQ(c.if_range, "\"x\"");
  EXPECT_EQ(c.if_match, "*");
  EXPECT_EQ(c.if_modified_since, "d1");
  EXPECT_EQ(c.if_unmodified_since, "d2");
  EXPECT_FALSE(conditional_headers({}).range.has_value());
}

}  // namespace
}  // namespace weir::http
