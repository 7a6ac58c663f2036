// Edge-triggered reads over TLS (issue 17): many records come in with one recv and are read one
// per Stream::fill. Bytes that arrive after that recv come with an edge; when the reactor reports
// that edge before OpenSSL's buffer has run dry (the connection yielded its turn in between),
// the stream must not take the socket for drained on the word of the older recv, or those bytes
// stay in the socket with no edge left to announce them.
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>

#include <memory>
#include <string>

#include "core/buffer_pool.hpp"
#include "net/stream.hpp"
#include "net/tls/tls.hpp"
#include "tls_test_util.hpp"

namespace weir::net::tls {
namespace {

using namespace weir::net::tls::test;  // NOLINT(google-build-using-namespace)

struct Pair {
  std::shared_ptr<ServerContext> ctx = server_ctx(listener_tls());
  SocketPair sock;
  BufferPool pool;
  Stream server;  // the server's end, as a connection's driver reads it
  TlsTransport client;
  Pair() : client(client_session(ClientOpts{.sni = "ec.test"})) {
    auto t = std::make_unique<TlsTransport>(ctx->new_session());
    auto r = handshake(*t, sock.server(), client, sock.client());
    if (!r.ok) throw std::runtime_error("handshake failed: " + std::string(t->last_error()));
    server.fd = sock.server();
    server.transport = std::move(t);
    pool.acquire(server.in);
  }
  ~Pair() {
    server.in.clear();
    pool.release(server.in);
  }
  // One TLS record from the client.
  void record(const std::string& bytes) {
    ASSERT_EQ(client.write(sock.client(), bytes.data(), bytes.size()),
              static_cast<ssize_t>(bytes.size()));
  }
  // One fill() the way a turn does it; what came is appended to `got`.
  bool fill(std::string& got) {
    server.in.clear();
    bool moved = server.fill();
    got += server.in.readable();
    return moved;
  }
  int kernel_bytes() const {
    int n = 0;
    ioctl(sock.server(), FIONREAD, &n);
    return n;
  }
};

std::string chunk(int i) {
  char b[8];
  std::snprintf(b, sizeof b, "%04d", i % 10000);
  return b;
}

TEST(TlsReadEdge, BytesAnnouncedWhileRecordsWereBufferedAreRead) {
  Pair p;
  std::string sent;
  for (int i = 0; i < 40; ++i) {
    p.record(chunk(i));  // 40 records, all in the socket before the first read
    sent += chunk(i);
  }
  p.server.note_events(EPOLLIN);
  std::string got;
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(p.fill(got));  // one recv took them all; each read decrypts one record
  ASSERT_TRUE(p.server.readable);
  // More bytes arrive; the poll between two turns reports their edge.
  p.record("LAST");
  sent += "LAST";
  p.server.note_events(EPOLLIN);
  for (int i = 0; i < 1000 && p.server.readable; ++i)
    p.fill(got);
  EXPECT_FALSE(p.server.readable);
  EXPECT_EQ(got, sent) << "left in the socket with no edge to come: " << p.kernel_bytes()
                       << " bytes";
  EXPECT_EQ(p.kernel_bytes(), 0);
}

TEST(TlsReadEdge, NoEdgeAfterTheRecvMeansDrainedWhenTheRecordsRunOut) {
  // The other side of the rule: without a later edge, the short recv still counts, so reading
  // stops with the last buffered record instead of spending a read on EAGAIN.
  Pair p;
  std::string sent;
  for (int i = 0; i < 10; ++i) {
    p.record(chunk(i));
    sent += chunk(i);
  }
  p.server.note_events(EPOLLIN);
  std::string got;
  int fills = 0;
  while (p.server.readable && fills < 100) {
    ASSERT_TRUE(p.fill(got));
    ++fills;
  }
  EXPECT_EQ(got, sent);
  EXPECT_EQ(fills, 10);  // one per record, none wasted
  // Bytes that come later have an edge of their own.
  p.record("MORE");
  p.server.note_events(EPOLLIN);
  got.clear();
  while (p.server.readable && fills < 100) {
    p.fill(got);
    ++fills;
  }
  EXPECT_EQ(got, "MORE");
}

TEST(TlsReadEdge, AnEdgeBeforeTheRecvCostsAtMostOneRead) {
  // An edge reported for bytes the next recv takes anyway: the recv clears it, and the stream
  // stops reading as soon as that recv's records are read.
  Pair p;
  p.record("ab");
  p.record("cd");
  p.server.note_events(EPOLLIN);
  p.server.note_events(EPOLLIN | EPOLLOUT);
  std::string got;
  int fills = 0;
  while (p.server.readable && fills < 100) {
    p.fill(got);
    ++fills;
  }
  EXPECT_EQ(got, "abcd");
  EXPECT_EQ(fills, 2);
}

}  // namespace
}  // namespace weir::net::tls
