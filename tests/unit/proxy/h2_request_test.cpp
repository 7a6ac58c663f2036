// The request head of an HTTP/2 stream (h2_request.cpp): pseudo-fields, cookie crumbs, host vs
// :authority, TE, limits, and the HTTP/1.1 rules applied through http::interpret_request.
#include "proxy/h2_request.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace weir::proxy {
namespace {

constexpr size_t kBytes = 16 * 1024;
constexpr uint32_t kCount = 100;

struct Built {
  std::vector<http::Header> storage = std::vector<http::Header>(100);
  http::RequestHead req;
  http::ParseResult r;
};

void build(const H2RequestHead& h, Built& b, bool end_stream = true) {
  b.r = h.build(b.req, b.storage, end_stream);
}

std::string field(const http::RequestHead& req, std::string_view name) {
  for (const auto& f : req.headers)
    if (f.name == name) return std::string(f.value);
  return "<none>";
}

TEST(H2Request, PseudoFieldsCookiesAndHost) {
  H2RequestHead h;
  h.add(":method", "POST", kBytes, kCount);
  h.add(":scheme", "https", kBytes, kCount);
  h.add(":authority", "api.example.com", kBytes, kCount);
  h.add(":path", "/v1/items?x=1", kBytes, kCount);
  h.add("cookie", "a=1", kBytes, kCount);
  h.add("user-agent", "t", kBytes, kCount);
  h.add("cookie", "b=2", kBytes, kCount);
  h.add("host", "other.example.com", kBytes, kCount);  // :authority wins
  h.add("te", "trailers", kBytes, kCount);             // hop-by-hop: dropped
  h.add("content-length", "5", kBytes, kCount);
  EXPECT_TRUE(h.has_content_length());
  Built b;
  build(h, b, false);
  ASSERT_EQ(b.r.status, http::ParseStatus::Done) << b.r.error_reason;
  EXPECT_EQ(b.req.method, http::Method::Post);
  EXPECT_EQ(b.req.target, "/v1/items?x=1");
  EXPECT_EQ(b.req.path, "/v1/items");
  EXPECT_EQ(b.req.query, "x=1");
  EXPECT_EQ(b.req.host, "api.example.com");
  EXPECT_EQ(field(b.req, "cookie"), "a=1; b=2");  // crumbs joined (RFC 9113 §8.2.3)
  EXPECT_EQ(field(b.req, "te"), "<none>");
  EXPECT_EQ(field(b.req, "user-agent"), "t");
  EXPECT_EQ(b.req.body, http::BodyKind::ContentLength);
  EXPECT_EQ(b.req.content_length, 5u);
  size_t hosts = 0;
  for (const auto& f : b.req.headers)
    hosts += f.name == "host";
  EXPECT_EQ(hosts, 1u);
}

TEST(H2Request, HostStandsInForMissingAuthority) {
  H2RequestHead h;
  h.add(":method", "GET", kBytes, kCount);
  h.add(":path", "/", kBytes, kCount);
  h.add("host", "h.example", kBytes, kCount);
  Built b;
  build(h, b);
  ASSERT_EQ(b.r.status, http::ParseStatus::Done);
  EXPECT_EQ(b.req.host, "h.example");
  EXPECT_EQ(b.req.body, http::BodyKind::None);
}

TEST(H2Request, NoAuthorityIsABadRequestAsInHttp11) {
  H2RequestHead h;
  h.add(":method", "GET", kBytes, kCount);
  h.add(":path", "/", kBytes, kCount);
  Built b;
  build(h, b);
  EXPECT_EQ(b.r.status, http::ParseStatus::Error);
  EXPECT_EQ(b.r.error_status, 400);
}

TEST(H2Request, BodyWithoutLengthIsChunkedUpstream) {
  H2RequestHead h;
  h.add(":method", "POST", kBytes, kCount);
  h.add(":path", "/up", kBytes, kCount);
  h.add(":authority", "a", kBytes, kCount);
  Built b;
  build(h, b, false);  // DATA follows
  ASSERT_EQ(b.r.status, http::ParseStatus::Done);
  EXPECT_EQ(b.req.body, http::BodyKind::Chunked);
  build(h, b, true);  // END_STREAM on HEADERS
  EXPECT_EQ(b.req.body, http::BodyKind::None);
}

TEST(H2Request, Http11RulesApply) {
  // What nghttp2 lets through but HTTP/1.1 refuses: a bad content-length, a bad target.
  H2RequestHead h;
  h.add(":method", "GET", kBytes, kCount);
  h.add(":path", "/a b", kBytes, kCount);
  h.add(":authority", "a", kBytes, kCount);
  Built b;
  build(h, b);
  EXPECT_EQ(b.r.status, http::ParseStatus::Error);
  EXPECT_EQ(b.r.error_status, 400);

  H2RequestHead cl;
  cl.add(":method", "POST", kBytes, kCount);
  cl.add(":path", "/", kBytes, kCount);
  cl.add(":authority", "a", kBytes, kCount);
  cl.add("content-length", "5, 6", kBytes, kCount);
  build(cl, b, false);
  EXPECT_EQ(b.r.status, http::ParseStatus::Error);
  EXPECT_EQ(b.r.error_status, 400);

  H2RequestHead conn;
  conn.add(":method", "CONNECT", kBytes, kCount);
  conn.add(":authority", "example.com:443", kBytes, kCount);
  conn.add(":path", "example.com:443", kBytes, kCount);
  build(conn, b);
  ASSERT_EQ(b.r.status, http::ParseStatus::Done);
  EXPECT_EQ(b.req.method, http::Method::Connect);  // the exchange answers 405
}

TEST(H2Request, LimitsCountDecodedSizeAndFields) {
  H2RequestHead h;
  EXPECT_TRUE(h.add(":method", "GET", 200, 4));
  EXPECT_TRUE(h.add(":path", "/", 200, 4));
  EXPECT_FALSE(h.add("x-big", std::string(200, 'v'), 200, 4));  // 5 + 200 + 32 > 200
  EXPECT_TRUE(h.too_large());
  EXPECT_FALSE(h.add("x", "y", 200, 4));  // stays too large

  H2RequestHead many;
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(many.add("x-" + std::to_string(i), "v", kBytes, 4));
  EXPECT_FALSE(many.add("x-5", "v", kBytes, 4));
}

}  // namespace
}  // namespace weir::proxy
