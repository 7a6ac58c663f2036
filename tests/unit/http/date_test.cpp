#include "http/date.hpp"

#include <gtest/gtest.h>

#include <string>

namespace weir::http {
namespace {

constexpr int64_t k1994 = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
// 2024-06-01T00:00:00Z, a fixed "now" for the two-digit year rule.
constexpr int64_t kNow2024 = 1717200000;

std::string fmt(int64_t t) {
  std::string s;
  format_http_date(t, s);
  return s;
}

// RFC 9110 5.6.7: the three formats of the RFC's own example denote the same instant.
TEST(HttpDate, ThreeFormatsOfTheRfcExample) {
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), k1994);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", kNow2024), k1994);
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), k1994);
  EXPECT_EQ(parse_http_date("Sun Nov 06 08:49:37 1994"), k1994);  // date3's 2DIGIT form
}

TEST(HttpDate, Epoch) {
  EXPECT_EQ(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
  EXPECT_EQ(fmt(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT"), -1);
  EXPECT_EQ(fmt(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
}

TEST(HttpDate, FormatRoundTrips) {
  for (int64_t t : {int64_t{0}, k1994, kNow2024, int64_t{951782400} /* 2000-02-29 */,
                    int64_t{4102444799} /* 2099-12-31T23:59:59 */, int64_t{-2208988800}}) {
    const std::string s = fmt(t);
    EXPECT_EQ(s.size(), 29u) << s;
    EXPECT_EQ(parse_http_date(s), t) << s;
  }
  EXPECT_EQ(fmt(k1994), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(fmt(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
}

TEST(HttpDate, FormatAppendsAndClamps) {
  std::string s = "Date: ";
  format_http_date(0, s);
  EXPECT_EQ(s, "Date: Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(fmt(INT64_MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
  EXPECT_EQ(fmt(INT64_MIN).substr(5), "01 Jan 0000 00:00:00 GMT");
  EXPECT_EQ(fmt(INT64_MIN).size(), 29u);
}

TEST(HttpDate, LeapYears) {
  EXPECT_TRUE(parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"));
  EXPECT_TRUE(parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"));
  EXPECT_FALSE(parse_http_date("Thu, 29 Feb 1900 00:00:00 GMT"));
  EXPECT_FALSE(parse_http_date("Thu, 29 Feb 2023 00:00:00 GMT"));
  EXPECT_FALSE(parse_http_date("Thu, 31 Apr 2023 00:00:00 GMT"));
  EXPECT_FALSE(parse_http_date("Thu, 00 Apr 2023 00:00:00 GMT"));
  EXPECT_FALSE(parse_http_date("Thu, 32 Jan 2023 00:00:00 GMT"));
}

TEST(HttpDate, TimeRanges) {
  EXPECT_FALSE(parse_http_date("Sun, 06 Nov 1994 24:00:00 GMT"));
  EXPECT_FALSE(parse_http_date("Sun, 06 Nov 1994 08:60:00 GMT"));
  EXPECT_FALSE(parse_http_date("Sun, 06 Nov 1994 08:49:61 GMT"));
  // A leap second (second = 60) is accepted as the next minute's first second.
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:60 GMT"), k1994 + 23);
}

// RFC 9110 5.6.7: names are case-sensitive, the grammar is exact.
TEST(HttpDate, StrictSyntax) {
  for (const char* bad : {
           "",
           "Sun",
           "sun, 06 Nov 1994 08:49:37 GMT",
           "Sun, 06 nov 1994 08:49:37 GMT",
           "Sun, 06 Nov 1994 08:49:37 gmt",
           "Sun, 06 Nov 1994 08:49:37 UTC",
           "Sun, 06 Nov 1994 08:49:37 +0000",
           "Sun, 6 Nov 1994 08:49:37 GMT",
           "Sun, 06 Nov 94 08:49:37 GMT",
           "Sun, 06 Nov 1994 8:49:37 GMT",
           "Sun, 06 Nov 1994 08:49:37 GMT ",
           " Sun, 06 Nov 1994 08:49:37 GMT",
           "Sun,  06 Nov 1994 08:49:37 GMT",
           "Sun, 06 Nov 1994 08:49:37",
           "Sun, 06 Nov 1994 08:49 GMT",
           "Sun, 06 Nov 1994 08:49:37 GMTX",
           "Son, 06 Nov 1994 08:49:37 GMT",
           "Sun, 06 Nox 1994 08:49:37 GMT",
           "Sun, +6 Nov 1994 08:49:37 GMT",
           "Sunday, 06-Nov-1994 08:49:37 GMT",
           "Sunday, 06 Nov 94 08:49:37 GMT",
           "Sun, 06-Nov-94 08:49:37 GMT",
           "Sundae, 06-Nov-94 08:49:37 GMT",
           "Sun Nov 6 08:49:37 1994",
           "Sun Nov  6 08:49:37 94",
           "Sun Nov  6 08:49:37 1994 ",
           "Sun Nov  6 08:49:37 1994 GMT",
           "Sun Nov   6 08:49:37 1994",
       }) {
    EXPECT_FALSE(parse_http_date(bad)) << '"' << bad << '"';
  }
  EXPECT_FALSE(parse_http_date(std::string_view("Sun, 06 Nov 1994 08:49:37 GMT\0", 30)));
  EXPECT_FALSE(parse_http_date(std::string_view("Sun, 06 Nov 19\0004 08:49:37 GMT", 29)));
}

// The day name is syntax-checked only, not matched against the date.
TEST(HttpDate, DayNameNotMatchedAgainstDate) {
  EXPECT_EQ(parse_http_date("Mon, 06 Nov 1994 08:49:37 GMT"), k1994);
}

// RFC 9110 5.6.7: a two-digit year more than 50 years in the future is the most recent past one.
TEST(HttpDate, Rfc850TwoDigitYears) {
  const auto year_of = [](std::string_view s, int64_t now) -> std::string {
    const auto t = parse_http_date(s, now);
    if (!t) return "invalid";
    std::string out;
    format_http_date(*t, out);
    return out.substr(12, 4);
  };
  EXPECT_EQ(year_of("Sunday, 06-Nov-94 08:49:37 GMT", kNow2024), "1994");
  EXPECT_EQ(year_of("Monday, 01-Jan-24 00:00:00 GMT", kNow2024), "2024");
  EXPECT_EQ(year_of("Monday, 01-Jan-74 00:00:00 GMT", kNow2024), "2074");  // +50: future
  EXPECT_EQ(year_of("Monday, 01-Jan-75 00:00:00 GMT", kNow2024), "1975");  // +51: past
  EXPECT_EQ(year_of("Monday, 01-Jan-00 00:00:00 GMT", kNow2024), "2000");
  // Near a century's end the future side of the window wraps into the next century.
  const int64_t now2090 = 3786912000;  // 2090-01-01
  EXPECT_EQ(year_of("Monday, 01-Jan-05 00:00:00 GMT", now2090), "2105");
  EXPECT_EQ(year_of("Monday, 01-Jan-41 00:00:00 GMT", now2090), "2041");
  EXPECT_EQ(year_of("Monday, 01-Jan-40 00:00:00 GMT", now2090), "2140");
  EXPECT_EQ(year_of("Monday, 01-Jan-45 00:00:00 GMT", now2090), "2045");
  EXPECT_EQ(year_of("Wednesday, 29-Feb-23 00:00:00 GMT", kNow2024), "invalid");
  EXPECT_EQ(year_of("Wednesday, 29-Feb-96 00:00:00 GMT", kNow2024), "1996");
}

}  // namespace
}  // namespace weir::http
