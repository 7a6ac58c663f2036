// ClientContext: verification of the server's chain and name, SNI, ALPN.
#include <gtest/gtest.h>

#include "net/tls/tls.hpp"
#include "tls_test_util.hpp"

namespace weir::net::tls {
namespace {

using namespace weir::net::tls::test;  // NOLINT(google-build-using-namespace)

std::shared_ptr<ClientContext> client_ctx(const std::string& ca, const std::string& host,
                                          const std::string& sni = "", bool verify = true) {
  config::ServerTls cfg;
  cfg.ca = ca;
  cfg.sni = sni;
  cfg.verify = verify;
  std::string error;
  auto ctx = ClientContext::build(cfg, host, error);
  EXPECT_TRUE(ctx) << error;
  return ctx;
}

struct Conn {
  SocketPair sock;
  TlsTransport server;
  TlsTransport client;
  HandshakeResult result;
  Conn(const ServerContext& s, const ClientContext& c)
      : server(s.new_session()), client(c.new_session()) {
    result = handshake(server, sock.server(), client, sock.client());
  }
};

TEST(TlsClient, TrustedCaAndRightName) {
  auto server = server_ctx(listener_tls());
  for (const char* host : {"default.test", "www.default.test", "ec.test", "x.wild.test"}) {
    SCOPED_TRACE(host);
    auto client = client_ctx(certs().ca, host);
    Conn conn(*server, *client);
    ASSERT_TRUE(conn.result.ok) << conn.client.last_error();
    EXPECT_EQ(SSL_get_verify_result(conn.client.native_handle()), X509_V_OK);
    EXPECT_EQ(conn.client.alpn(), "http/1.1");  // the client offers only HTTP/1.1
    const char* sni = SSL_get_servername(conn.server.native_handle(), TLSEXT_NAMETYPE_host_name);
    ASSERT_NE(sni, nullptr);
    EXPECT_STREQ(sni, host);
  }
}

TEST(TlsClient, SniOverridesTheAddress) {
  auto server = server_ctx(listener_tls());
  auto client = client_ctx(certs().ca, "10.1.2.3", "ec.test");
  Conn conn(*server, *client);
  ASSERT_TRUE(conn.result.ok) << conn.client.last_error();
  EXPECT_EQ(peer_cn(conn.client), "eccn.test");
}

TEST(TlsClient, IpAddressIsVerifiedAsIpAndNotSent) {
  auto server = server_ctx(listener_tls());
  Conn good(*server, *client_ctx(certs().ca, "127.0.0.1"));
  ASSERT_TRUE(good.result.ok) << good.client.last_error();
  EXPECT_EQ(SSL_get_servername(good.server.native_handle(), TLSEXT_NAMETYPE_host_name), nullptr);

  Conn wrong(*server, *client_ctx(certs().ca, "127.0.0.2"));
  EXPECT_FALSE(wrong.result.ok);
  EXPECT_EQ(wrong.result.client, kIoError);
  EXPECT_EQ(wrong.client.last_error(), "certificate verify failed: IP address mismatch");
}

TEST(TlsClient, WrongNameFails) {
  auto server = server_ctx(listener_tls());
  auto client = client_ctx(certs().ca, "wrong.test");
  Conn conn(*server, *client);
  EXPECT_FALSE(conn.result.ok);
  EXPECT_EQ(conn.result.client, kIoError);
  EXPECT_EQ(conn.client.last_error(), "certificate verify failed: hostname mismatch");
  EXPECT_EQ(conn.result.server, kIoError);  // the client's alert
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(TlsClient, WildcardCoversOneLabelOnly) {
  auto server = server_ctx(listener_tls());
  Conn conn(*server, *client_ctx(certs().ca, "a.b.wild.test", "a.b.wild.test"));
  EXPECT_EQ(conn.result.client, kIoError);
  EXPECT_NE(conn.client.last_error().find("certificate verify failed"), std::string::npos);
}

TEST(TlsClient, UnknownCaFails) {
  auto server = server_ctx(listener_tls());
  auto client = client_ctx(certs().other_ca, "default.test");
  Conn conn(*server, *client);
  EXPECT_FALSE(conn.result.ok);
  EXPECT_EQ(conn.result.client, kIoError);
  EXPECT_EQ(conn.client.last_error().rfind("certificate verify failed: ", 0), 0u)
      << conn.client.last_error();

  // The system's store does not know the test CA either.
  Conn system(*server, *client_ctx("", "default.test"));
  EXPECT_EQ(system.result.client, kIoError);
  EXPECT_EQ(system.client.last_error().rfind("certificate verify failed: ", 0), 0u);
}

TEST(TlsClient, VerifyOffAcceptsAnything) {
  auto server = server_ctx(listener_tls());
  Conn conn(*server, *client_ctx(certs().other_ca, "wrong.test", "", false));
  ASSERT_TRUE(conn.result.ok) << conn.client.last_error();
  EXPECT_EQ(peer_cn(conn.client), "default.test");
}

TEST(TlsClient, OtherCaServer) {
  config::ListenerTls t;
  t.certificates.push_back(cert_entry(certs().other_cert, certs().other_key));
  auto server = server_ctx(t);
  Conn good(*server, *client_ctx(certs().other_ca, "default.test"));
  ASSERT_TRUE(good.result.ok) << good.client.last_error();
  Conn bad(*server, *client_ctx(certs().ca, "default.test"));
  EXPECT_EQ(bad.result.client, kIoError);
}

TEST(TlsClient, BadCaFile) {
  config::ServerTls cfg;
  cfg.ca = certs().path("missing-ca.pem");
  std::string error;
  EXPECT_EQ(ClientContext::build(cfg, "x.test", error), nullptr);
  EXPECT_EQ(error, "cannot load CA file " + cfg.ca + ": No such file or directory");
  EXPECT_EQ(ERR_peek_error(), 0u);
}

}  // namespace
}  // namespace weir::net::tls
