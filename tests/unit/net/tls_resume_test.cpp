// Resumption by session tickets: across contexts (workers) sharing TicketKeys, and rotation.
#include <gtest/gtest.h>

#include <thread>

#include "net/tls/tls.hpp"
#include "tls_test_util.hpp"

namespace weir::net::tls {
namespace {

using namespace weir::net::tls::test;  // NOLINT(google-build-using-namespace)

struct SessionDel {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using Session = std::unique_ptr<SSL_SESSION, SessionDel>;

struct Result {
  bool ok = false;
  bool server_resumed = false;
  bool client_resumed = false;
  Session session;  // the client's session after the handshake (with its newest ticket)
};

Result connect(const ServerContext& ctx, int version, SSL_SESSION* session) {
  SocketPair sock;
  TlsTransport server(ctx.new_session());
  TlsTransport client(client_session(
      ClientOpts{.sni = "default.test", .max_version = version, .session = session}));
  auto r = handshake(server, sock.server(), client, sock.client());
  Result out;
  out.ok = r.ok;
  out.server_resumed = server.resumed();
  out.client_resumed = client.resumed();
  // An orderly close: OpenSSL marks the session of an SSL freed without one as not resumable.
  client.shutdown(sock.client());
  server.shutdown(sock.server());
  out.session.reset(SSL_get1_session(client.native_handle()));
  return out;
}

class TlsResume : public ::testing::TestWithParam<int> {};

TEST_P(TlsResume, AcrossWorkersAndOneRotation) {
  int version = GetParam();
  auto keys = std::make_shared<TicketKeys>();
  auto worker1 = server_ctx(listener_tls(), keys);
  auto worker2 = server_ctx(listener_tls(), keys);

  Result first = connect(*worker1, version, nullptr);
  ASSERT_TRUE(first.ok);
  EXPECT_FALSE(first.server_resumed);
  ASSERT_TRUE(first.session);
  ASSERT_EQ(SSL_SESSION_is_resumable(first.session.get()), 1);

  Result second = connect(*worker2, version, first.session.get());
  ASSERT_TRUE(second.ok);
  EXPECT_TRUE(second.server_resumed);
  EXPECT_TRUE(second.client_resumed);

  keys->rotate();
  EXPECT_EQ(keys->rotations(), 1u);
  Result after_one = connect(*worker1, version, first.session.get());
  ASSERT_TRUE(after_one.ok);
  EXPECT_TRUE(after_one.server_resumed);  // the previous key still decrypts
  ASSERT_TRUE(after_one.session);

  keys->rotate();
  Result after_two = connect(*worker2, version, first.session.get());
  ASSERT_TRUE(after_two.ok);  // a full handshake, not an error
  EXPECT_FALSE(after_two.server_resumed);
  EXPECT_FALSE(after_two.client_resumed);

  // The ticket renewed after the first rotation is under the current-but-one key: still good.
  Result renewed = connect(*worker2, version, after_one.session.get());
  ASSERT_TRUE(renewed.ok);
  EXPECT_TRUE(renewed.server_resumed);
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsResume, ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                         [](const auto& info) {
                           return std::string(info.param == TLS1_2_VERSION ? "Tls12" : "Tls13");
                         });

TEST(TlsTickets, OtherKeysDoNotResume) {
  auto a = server_ctx(listener_tls(), std::make_shared<TicketKeys>());
  auto b = server_ctx(listener_tls(), std::make_shared<TicketKeys>());
  Result first = connect(*a, TLS1_3_VERSION, nullptr);
  ASSERT_TRUE(first.ok);
  Result other = connect(*b, TLS1_3_VERSION, first.session.get());
  ASSERT_TRUE(other.ok);
  EXPECT_FALSE(other.server_resumed);
}

TEST(TlsTickets, RotationWhileHandshaking) {
  auto keys = std::make_shared<TicketKeys>();
  auto ctx = server_ctx(listener_tls(), keys);
  std::atomic<bool> stop{false};
  std::thread rotator([&] {
    while (!stop)
      keys->rotate();
  });
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(connect(*ctx, TLS1_3_VERSION, nullptr).ok);
  stop = true;
  rotator.join();
  EXPECT_GT(keys->rotations(), 0u);
}

}  // namespace
}  // namespace weir::net::tls
