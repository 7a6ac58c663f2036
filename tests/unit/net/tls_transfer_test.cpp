// Data over TlsTransport: large transfers with partial writes, drained(), EOF and errors.
#include <gtest/gtest.h>

#include <random>

#include "net/stream.hpp"
#include "net/tls/tls.hpp"
#include "tls_test_util.hpp"

namespace weir::net::tls {
namespace {

using namespace weir::net::tls::test;  // NOLINT(google-build-using-namespace)

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s)
    c = static_cast<char>(rng());
  return s;
}

struct Conn {
  std::shared_ptr<ServerContext> ctx = server_ctx(listener_tls());
  SocketPair sock;
  TlsTransport server;
  TlsTransport client;
  explicit Conn(int sndbuf = 0, int version = TLS1_3_VERSION)
      : sock(sndbuf),
        server(ctx->new_session()),
        client(client_session(ClientOpts{.sni = "ec.test", .max_version = version})) {
    auto r = handshake(server, sock.server(), client, sock.client());
    if (!r.ok) throw std::runtime_error("handshake failed: " + std::string(server.last_error()));
  }
};

// One direction's progress: writes retry with the same leading bytes after kWouldBlock.
struct Side {
  TlsTransport& t;
  int fd;
  const std::string& out;
  size_t sent = 0;
  std::string in;
  size_t partial = 0, blocked = 0;

  void step(size_t read_size) {
    if (sent < out.size()) {
      ssize_t n = t.write(fd, out.data() + sent, out.size() - sent);
      ASSERT_NE(n, kIoError) << t.last_error();
      if (n == kWouldBlock) {
        ++blocked;
      } else {
        ASSERT_GT(n, 0);
        if (static_cast<size_t>(n) < out.size() - sent) ++partial;
        sent += static_cast<size_t>(n);
      }
    }
    std::string buf(read_size, '\0');
    for (;;) {
      ssize_t n = t.read(fd, buf.data(), buf.size());
      ASSERT_NE(n, kIoError) << t.last_error();
      ASSERT_NE(n, 0);
      if (n == kWouldBlock) break;
      in.append(buf.data(), static_cast<size_t>(n));
    }
  }
};

// (TLS version, SO_SNDBUF): a socket buffer smaller than a record makes every write block until
// its last record is out (OpenSSL reports the progress then); a larger one gives short writes.
class TlsTransfer : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(TlsTransfer, OneMebibyteBothWays) {
  auto [version, sndbuf] = GetParam();
  Conn c(sndbuf, version);
  const std::string to_client = random_bytes(1 << 20, 1);
  const std::string to_server = random_bytes(1 << 20, 2);
  Side server{c.server, c.sock.server(), to_client};
  Side client{c.client, c.sock.client(), to_server};
  for (int i = 0; i < 100000; ++i) {
    server.step(3000);
    client.step(70000);
    if (server.in.size() == to_server.size() && client.in.size() == to_client.size()) break;
  }
  ASSERT_EQ(client.in.size(), to_client.size());
  ASSERT_EQ(server.in.size(), to_server.size());
  EXPECT_TRUE(client.in == to_client);
  EXPECT_TRUE(server.in == to_server);
  if (sndbuf > 32768) {
    EXPECT_GT(server.partial + client.partial, 0u);  // the socket filled in the middle
  } else {
    EXPECT_GT(server.blocked + client.blocked, 0u);
  }
  EXPECT_TRUE(c.client.drained());
  EXPECT_TRUE(c.server.drained());
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsTransfer,
                         ::testing::Combine(::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                                            ::testing::Values(4096, 65536)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == TLS1_2_VERSION
                                                  ? "Tls12_"
                                                  : "Tls13_") +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(TlsDrained, PendingRecordsAreNotDrained) {
  Conn c;
  const std::string data = random_bytes(40000, 3);  // three records, in the socket at once
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = c.server.write(c.sock.server(), data.data() + sent, data.size() - sent);
    ASSERT_GT(n, 0);
    sent += static_cast<size_t>(n);
  }
  char buf[1000];
  std::string got;
  ssize_t n = c.client.read(c.sock.client(), buf, sizeof buf);
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof buf));
  got.append(buf, sizeof buf);
  EXPECT_FALSE(c.client.drained());  // decrypted bytes (and records) still inside OpenSSL
  while ((n = c.client.read(c.sock.client(), buf, sizeof buf)) > 0) {
    got.append(buf, static_cast<size_t>(n));
    if (got.size() < data.size()) {
      EXPECT_FALSE(c.client.drained()) << got.size();
    }
  }
  EXPECT_EQ(n, kWouldBlock);
  EXPECT_TRUE(got == data);
  EXPECT_TRUE(c.client.drained());
}

// Lends a transport to a Stream without giving it away.
struct Borrowed final : Transport {
  TlsTransport& t;
  explicit Borrowed(TlsTransport& t) : t(t) {}
  ssize_t read(int fd, char* buf, size_t len) override { return t.read(fd, buf, len); }
  ssize_t write(int fd, const char* buf, size_t len) override { return t.write(fd, buf, len); }
  bool drained() const override { return t.drained(); }
  bool needs_write_for_read() const override { return t.needs_write_for_read(); }
};

// What the reactor does: Stream::fill until it clears `readable`, which must not happen while
// OpenSSL still holds bytes (no readiness edge would come for them).
TEST(TlsDrained, StreamFillReadsEverythingBeforeWaiting) {
  for (size_t buffer : {1000u, 16384u, 40000u}) {
    SCOPED_TRACE(buffer);
    Conn c;
    const std::string data = random_bytes(100000, 4);
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = c.server.write(c.sock.server(), data.data() + sent, data.size() - sent);
      ASSERT_GT(n, 0);
      sent += static_cast<size_t>(n);
    }
    Stream s;
    s.fd = c.sock.client();
    s.in = Buffer(buffer);
    s.transport = std::make_unique<Borrowed>(c.client);
    s.readable = true;
    std::string got;
    for (int reads = 0; s.readable && reads < 1000; ++reads) {
      s.fill();
      got.append(s.in.readable());
      s.in.consume(s.in.size());
    }
    ASSERT_FALSE(s.failed);
    EXPECT_FALSE(s.eof);
    EXPECT_EQ(got.size(), data.size());
    EXPECT_TRUE(got == data);
  }
}

TEST(TlsEof, CloseNotifyIsEof) {
  Conn c;
  c.server.shutdown(c.sock.server());
  char buf[100];
  EXPECT_EQ(c.client.read(c.sock.client(), buf, sizeof buf), 0);
  c.client.shutdown(c.sock.client());  // answers the close_notify
  EXPECT_EQ(c.server.read(c.sock.server(), buf, sizeof buf), 0);
}

TEST(TlsEof, DataThenCloseNotify) {
  Conn c;
  ASSERT_EQ(c.server.write(c.sock.server(), "hello", 5), 5);
  c.server.shutdown(c.sock.server());
  char buf[100];
  EXPECT_EQ(c.client.read(c.sock.client(), buf, sizeof buf), 5);
  EXPECT_EQ(c.client.read(c.sock.client(), buf, sizeof buf), 0);
}

TEST(TlsEof, RawCloseIsEof) {
  Conn c;
  c.sock.close_client();
  char buf[100];
  EXPECT_EQ(c.server.read(c.sock.server(), buf, sizeof buf), 0);
  EXPECT_TRUE(c.server.drained());
  c.server.shutdown(c.sock.server());  // no close_notify after a truncated stream; no crash
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(TlsEof, CloseDuringHandshakeIsEof) {
  auto ctx = server_ctx(listener_tls());
  SocketPair sock;
  TlsTransport server(ctx->new_session());
  char buf[100];
  EXPECT_EQ(server.read(sock.server(), buf, sizeof buf), kWouldBlock);
  sock.close_client();
  EXPECT_EQ(server.read(sock.server(), buf, sizeof buf), 0);
}

TEST(TlsEof, WriteToClosedPeerIsAnErrorNotSigpipe) {
  Conn c;
  c.sock.close_client();
  const std::string data(100000, 'x');
  ssize_t n = 0;
  for (int i = 0; i < 10 && n != kIoError; ++i)
    n = c.server.write(c.sock.server(), data.data(), data.size());
  EXPECT_EQ(n, kIoError);
  EXPECT_EQ(errno, EPIPE);
  EXPECT_NE(c.server.last_error(), "");
}

TEST(TlsEof, HandshakeOverStreamHelpers) {
  // The handshake driven by the client's write (an upstream connection sends its request first).
  auto ctx = server_ctx(listener_tls());
  SocketPair sock;
  TlsTransport server(ctx->new_session());
  TlsTransport client(client_session(ClientOpts{.sni = "default.test"}));
  const char req[] = "GET / HTTP/1.1\r\n\r\n";
  ssize_t n = client.write(sock.client(), req, sizeof req - 1);
  EXPECT_EQ(n, kWouldBlock);
  EXPECT_TRUE(client.write_needs_read());
  char buf[100];
  std::string got;
  for (int i = 0; i < 20 && got.size() < sizeof req - 1; ++i) {
    ssize_t r = server.read(sock.server(), buf, sizeof buf);
    if (r > 0) got.append(buf, static_cast<size_t>(r));
    if (n == kWouldBlock) n = client.write(sock.client(), req, sizeof req - 1);
  }
  EXPECT_EQ(n, static_cast<ssize_t>(sizeof req - 1));
  EXPECT_FALSE(client.write_needs_read());
  EXPECT_EQ(got, req);
}

TEST(TlsEof, PeerGoneDuringAWriteHandshake) {
  auto ctx = server_ctx(listener_tls());
  SocketPair sock;
  TlsTransport client(client_session(ClientOpts{.sni = "default.test"}));
  const char req[] = "GET / HTTP/1.1\r\n\r\n";
  EXPECT_EQ(client.write(sock.client(), req, sizeof req - 1), kWouldBlock);
  sock.close_server();
  EXPECT_EQ(client.write(sock.client(), req, sizeof req - 1), kIoError);
  EXPECT_FALSE(client.last_error().empty());
  char buf[16];
  EXPECT_NE(client.read(sock.client(), buf, sizeof buf), kWouldBlock);
}

}  // namespace
}  // namespace weir::net::tls
