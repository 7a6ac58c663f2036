// BodySink (declared in downstream.hpp, built in h1_connection.cpp): the request body towards an
// HTTP/1.1 server, and the last chunk carrying the trailers.
#include <gtest/gtest.h>

#include <string>

#include "core/buffer.hpp"
#include "proxy/downstream.hpp"

namespace weir::proxy {
namespace {

std::string contents(const Buffer& b) {
  return std::string(b.readable());
}

TEST(BodySink, ChunkedWithTrailers) {
  Buffer out(1024);
  BodySink sink(out, true);
  sink.put("hello");
  EXPECT_TRUE(sink.can_finish("X-Checksum: abc\r\n"));
  EXPECT_TRUE(sink.finish("X-Checksum:  abc \r\ngrpc-status: 0\r\n"));
  EXPECT_EQ(contents(out), "5\r\nhello\r\n0\r\nX-Checksum: abc\r\ngrpc-status: 0\r\n\r\n");
  EXPECT_EQ(sink.taken(), 5u);
}

TEST(BodySink, ForbiddenTrailersLeftOut) {
  Buffer out(1024);
  BodySink sink(out, true);
  EXPECT_TRUE(
      sink.finish("Content-Length: 5\r\nHost: evil\r\nX-A: 1\r\nTransfer-Encoding: "
                  "gzip\r\nauthorization: x\r\n"));
  EXPECT_EQ(contents(out), "0\r\nX-A: 1\r\n\r\n");
  Buffer none(1024);
  BodySink only_forbidden(none, true);
  EXPECT_TRUE(only_forbidden.finish("Trailer: x\r\n"));
  EXPECT_EQ(contents(none), "0\r\n\r\n");
}

TEST(BodySink, ContentLengthFramingDropsTrailers) {
  Buffer out(64);
  BodySink sink(out, false);
  sink.put("abc");
  EXPECT_TRUE(sink.can_finish("X-A: 1\r\n"));
  EXPECT_TRUE(sink.finish("X-A: 1\r\n"));
  EXPECT_EQ(contents(out), "abc");
}

TEST(BodySink, LastChunkWholeOrNotYet) {
  const std::string trailers = "X-A: " + std::string(30, 'a') + "\r\n";  // 37 bytes
  Buffer out(64);
  out.append(std::string(30, '.'));  // 34 free: the last chunk needs 42
  BodySink sink(out, true);
  EXPECT_FALSE(sink.can_finish(trailers));
  EXPECT_FALSE(sink.finish(trailers));
  EXPECT_EQ(out.size(), 30u);  // nothing of it
  EXPECT_TRUE(sink.can_finish(""));
  out.consume(30);
  EXPECT_TRUE(sink.can_finish(trailers));
  EXPECT_TRUE(sink.finish(trailers));
  EXPECT_EQ(contents(out), "0\r\n" + trailers + "\r\n");
}

TEST(BodySink, TrailersThatCannotFitAnyBufferAreDropped) {
  // Waiting would never end: the body ends without them.
  Buffer out(32);
  BodySink sink(out, true);
  const std::string trailers = "X-A: " + std::string(40, 'a') + "\r\n";
  EXPECT_TRUE(sink.can_finish(trailers));
  EXPECT_TRUE(sink.finish(trailers));
  EXPECT_EQ(contents(out), "0\r\n\r\n");
}

}  // namespace
}  // namespace weir::proxy
