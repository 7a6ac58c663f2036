// The HTTP/2 ↔ HTTP/1.1 translation of one stream (h2_stream.cpp): request fields, body
// framing and window accounting, and the response body read out of the response pipe.
#include "proxy/h2_stream.hpp"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <string>

namespace weir::proxy {
namespace {

TEST(H2Stream, PseudoFieldsCookiesAndHost) {
  H2Stream s;
  add_request_field(s, ":method", "POST");
  add_request_field(s, ":scheme", "https");
  add_request_field(s, ":authority", "api.example.com");
  add_request_field(s, ":path", "/v1/items?x=1");
  add_request_field(s, "cookie", "a=1");
  add_request_field(s, "user-agent", "t");
  add_request_field(s, "cookie", "b=2");
  add_request_field(s, "host", "other.example.com");  // :authority wins
  add_request_field(s, "te", "trailers");             // hop-by-hop: dropped
  add_request_field(s, "content-length", "5");
  EXPECT_EQ(s.method, "POST");
  EXPECT_EQ(s.path, "/v1/items?x=1");
  EXPECT_EQ(s.authority, "api.example.com");
  EXPECT_EQ(s.cookie, "a=1; b=2");  // crumbs joined (RFC 9113 §8.2.3)
  EXPECT_TRUE(s.has_content_length);
  EXPECT_EQ(s.fields, "user-agent: t\r\ncontent-length: 5\r\n");
}

TEST(H2Stream, HostStandsInForMissingAuthority) {
  H2Stream s;
  add_request_field(s, ":method", "GET");
  add_request_field(s, "host", "h.example");
  EXPECT_EQ(s.authority, "h.example");
  EXPECT_EQ(s.fields, "");
}

TEST(H2Stream, ChunkedBodyFramingAndWindowMarks) {
  H2Stream s;
  s.head_done = true;
  s.chunked_body = true;
  append_request_data(s, "hello");
  append_request_data(s, std::string(300, 'x'));
  end_request(s);
  EXPECT_EQ(s.req, "5\r\nhello\r\n12c\r\n" + std::string(300, 'x') + "\r\n0\r\n\r\n");
  EXPECT_EQ(s.req_total, s.req.size());
  EXPECT_EQ(s.unconsumed, 305u);
  // Each DATA frame's window comes back once the exchange has read past its end.
  ASSERT_EQ(s.data_marks.size(), 2u);
  EXPECT_EQ(s.data_marks.begin()->first, 10u);  // "5\r\nhello\r\n"
  EXPECT_EQ(s.data_marks.begin()->second, 5u);
  EXPECT_EQ(s.data_marks.rbegin()->second, 300u);
  EXPECT_TRUE(s.req_ended);
  end_request(s);  // idempotent: no second terminator
  EXPECT_TRUE(s.req.ends_with("0\r\n\r\n"));
  EXPECT_EQ(s.req.find("0\r\n\r\n"), s.req.size() - 5);
}

TEST(H2Stream, TinyFramesKeepTheMarkTableSmall) {
  H2Stream s;
  for (int i = 0; i < 10000; ++i)
    append_request_data(s, "x");
  EXPECT_LE(s.data_marks.size(), 64u);
  size_t total = 0;
  for (const auto& [end, bytes] : s.data_marks)
    total += bytes;
  EXPECT_EQ(total, 10000u);  // every byte still comes back as window
  EXPECT_EQ(s.data_marks.rbegin()->first, 10000u);
}

TEST(H2Stream, ContentLengthBodyPassesRaw) {
  H2Stream s;
  append_request_data(s, "abc");
  append_request_data(s, "");  // empty DATA adds nothing
  EXPECT_EQ(s.req, "abc");
  EXPECT_EQ(s.data_marks.size(), 1u);
}

TEST(H2Stream, ResponseBodyDecodesChunkedAcrossCalls) {
  H2Stream s;
  s.body.reset(http::BodyKind::Chunked, 0);
  s.resp = "4\r\nwxyz\r\n3\r\nabc\r\n0\r\n\r\n";
  uint8_t buf[5];
  uint32_t flags = 0;
  std::string got;
  for (int i = 0; i < 10 && !(flags & NGHTTP2_DATA_FLAG_EOF); ++i) {
    ssize_t n = response_body(s, buf, sizeof buf, &flags);
    ASSERT_GE(n, 0);
    got.append(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
  }
  EXPECT_EQ(got, "wxyzabc");
  EXPECT_TRUE(flags & NGHTTP2_DATA_FLAG_EOF);
  EXPECT_TRUE(s.body_done);
}

TEST(H2Stream, ResponseBodyWaitsThenFailsIfTheExchangeEndsEarly) {
  H2Stream s;
  s.body.reset(http::BodyKind::ContentLength, 10);
  s.resp = "12345";
  uint8_t buf[64];
  uint32_t flags = 0;
  EXPECT_EQ(response_body(s, buf, sizeof buf, &flags), 5);
  EXPECT_EQ(flags, 0u);
  EXPECT_EQ(response_body(s, buf, sizeof buf, &flags), NGHTTP2_ERR_DEFERRED);  // more to come
  EXPECT_TRUE(s.deferred);
  s.exchange_closed = true;  // the server failed mid-body: the stream must be reset
  EXPECT_EQ(response_body(s, buf, sizeof buf, &flags), NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
}

TEST(H2Stream, ResponseBodyRejectsBadChunking) {
  H2Stream s;
  s.body.reset(http::BodyKind::Chunked, 0);
  s.resp = "zz\r\n";
  uint8_t buf[16];
  uint32_t flags = 0;
  EXPECT_EQ(response_body(s, buf, sizeof buf, &flags), NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
}

}  // namespace
}  // namespace weir::proxy
