#include "http/fields.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace weir::http {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields lines_of(std::string_view lines, bool* ok = nullptr) {
  Fields out;
  bool r = for_each_field_line(lines, [&](std::string_view n, std::string_view v) {
    out.emplace_back(std::string(n), std::string(v));
  });
  if (ok) *ok = r;
  return out;
}

TEST(FieldLines, EachLineWithItsValueTrimmed) {
  bool ok = false;
  EXPECT_EQ(lines_of("", &ok), Fields{});
  EXPECT_TRUE(ok);
  EXPECT_EQ(lines_of("grpc-status: 0\r\nX-Checksum:\t abc \t\r\nEmpty:\r\nA:b: c\r\n", &ok),
            (Fields{{"grpc-status", "0"}, {"X-Checksum", "abc"}, {"Empty", ""}, {"A", "b: c"}}));
  EXPECT_TRUE(ok);
}

TEST(FieldLines, MalformedStopsThere) {
  bool ok = true;
  EXPECT_EQ(lines_of("A: 1\r\nB: 2", &ok), (Fields{{"A", "1"}}));  // no CRLF
  EXPECT_FALSE(ok);
  EXPECT_EQ(lines_of("A: 1\r\nno colon\r\nC: 3\r\n", &ok), (Fields{{"A", "1"}}));
  EXPECT_FALSE(ok);
  EXPECT_EQ(lines_of(": 1\r\n", &ok), Fields{});  // no name
  EXPECT_FALSE(ok);
  EXPECT_EQ(lines_of("A: 1\r\n\r\n", &ok), (Fields{{"A", "1"}}));  // a final empty line
  EXPECT_FALSE(ok);
}

TEST(TrailerFields, ForbiddenNames) {
  for (std::string_view n : {"te",
                             "age",
                             "host",
                             "date",
                             "vary",
                             "range",
                             "expect",
                             "cookie",
                             "pragma",
                             "trailer",
                             "upgrade",
                             "expires",
                             "warning",
                             "if-match",
                             "if-range",
                             "location",
                             "connection",
                             "keep-alive",
                             "set-cookie",
                             "retry-after",
                             "content-type",
                             "max-forwards",
                             "authorization",
                             "cache-control",
                             "content-range",
                             "if-none-match",
                             "content-length",
                             "proxy-connection",
                             "content-encoding",
                             "www-authenticate",
                             "transfer-encoding",
                             "if-modified-since",
                             "proxy-authenticate",
                             "proxy-authorization",
                             "if-unmodified-since",
                             "Content-Length",
                             "HOST",
                             "Transfer-Encoding",
                             "Set-Cookie",
                             ":status",
                             ":path",
                             ""}) {
    EXPECT_FALSE(trailer_field_allowed(n)) << n;
  }
}

TEST(TrailerFields, OthersPass) {
  for (std::string_view n : {"grpc-status", "grpc-message", "Grpc-Status-Details-Bin", "x-checksum",
                             "X-Trailer", "server-timing", "digest", "content-md5", "tee", "hosts",
                             "x", "etag", "content-language", "x-content-length"}) {
    EXPECT_TRUE(trailer_field_allowed(n)) << n;
  }
}

}  // namespace
}  // namespace weir::http
