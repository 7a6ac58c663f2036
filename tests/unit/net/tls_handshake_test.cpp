// Server handshakes: SNI picks the certificate, ALPN, protocol versions, context errors.
#include <gtest/gtest.h>

#include "net/tls/tls.hpp"
#include "tls_test_util.hpp"

namespace weir::net::tls {
namespace {

using namespace weir::net::tls::test;  // NOLINT(google-build-using-namespace)

struct Conn {
  SocketPair sock;
  TlsTransport server;
  TlsTransport client;
  HandshakeResult result;
  Conn(const ServerContext& ctx, const ClientOpts& opts)
      : server(ctx.new_session()), client(client_session(opts)) {
    result = handshake(server, sock.server(), client, sock.client());
  }
};

TEST(TlsSni, PicksTheCertificateByName) {
  auto ctx = server_ctx(listener_tls());
  struct Case {
    const char* sni;
    const char* cn;
  } cases[] = {
      {"default.test", "default.test"}, {"www.default.test", "default.test"},
      {"ec.test", "eccn.test"},         {"EC.Test", "eccn.test"},
      {"ec.test.", "eccn.test"},        {"x.wild.test", "eccn.test"},
      {"A.Wild.Test", "eccn.test"},     {"a.b.wild.test", "default.test"},
      {"wild.test", "default.test"},    {"cn.test", "cn.test"},
      {"eccn.test", "default.test"},  // a CN is not a name when the certificate has SANs
      {"unknown.test", "default.test"}, {"", "default.test"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.sni);
    Conn conn(*ctx, ClientOpts{.sni = c.sni});
    ASSERT_TRUE(conn.result.ok);
    EXPECT_EQ(peer_cn(conn.client), c.cn);
  }
}

TEST(TlsSni, RsaAndEcdsaCertificates) {
  auto ctx = server_ctx(listener_tls());
  for (const char* sni : {"default.test", "ec.test"}) {
    for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
      SCOPED_TRACE(std::string(sni) + " " + std::to_string(version));
      Conn conn(*ctx, ClientOpts{.sni = sni, .min_version = version, .max_version = version});
      ASSERT_TRUE(conn.result.ok);
      EXPECT_EQ(SSL_version(conn.server.native_handle()), version);
      int type = EVP_PKEY_get_base_id(
          X509_get0_pubkey(SSL_get0_peer_certificate(conn.client.native_handle())));
      EXPECT_EQ(type, std::string(sni) == "ec.test" ? EVP_PKEY_EC : EVP_PKEY_RSA);
    }
  }
}

TEST(TlsSni, Tls12UsesForwardSecretAead) {
  auto ctx = server_ctx(listener_tls());
  Conn conn(*ctx, ClientOpts{.max_version = TLS1_2_VERSION});
  ASSERT_TRUE(conn.result.ok);
  std::string cipher = SSL_get_cipher_name(conn.server.native_handle());
  EXPECT_EQ(cipher.rfind("ECDHE-RSA-", 0), 0u) << cipher;
  EXPECT_TRUE(cipher.find("GCM") != std::string::npos || cipher.find("CHACHA") != std::string::npos)
      << cipher;
}

TEST(TlsAlpn, ServerPreferenceAndFallbacks) {
  struct Case {
    std::vector<std::string> server, client;
    const char* chosen;
  } cases[] = {
      {{"h2", "http/1.1"}, {"http/1.1", "h2"}, "h2"}, {{"h2", "http/1.1"}, {"h2"}, "h2"},
      {{"h2", "http/1.1"}, {"http/1.1"}, "http/1.1"}, {{"h2", "http/1.1"}, {}, ""},
      {{"h2", "http/1.1"}, {"spdy/3", "foo"}, ""},  // nothing in common: no ALPN, no failure
      {{"http/1.1"}, {"h2", "http/1.1"}, "http/1.1"}, {{"http/1.1"}, {"h2"}, ""},
  };
  for (const auto& c : cases) {
    auto ctx = server_ctx(listener_tls(c.server));
    Conn conn(*ctx, ClientOpts{.sni = "ec.test", .alpn = c.client});
    ASSERT_TRUE(conn.result.ok) << c.chosen;
    EXPECT_EQ(conn.server.alpn(), c.chosen);
    EXPECT_EQ(conn.client.alpn(), c.chosen);
  }
}

TEST(TlsVersions, OldProtocolsAreRefused) {
  auto ctx = server_ctx(listener_tls());
  for (int version : {TLS1_VERSION, TLS1_1_VERSION}) {
    Conn conn(*ctx, ClientOpts{.min_version = version, .max_version = version, .legacy = true});
    EXPECT_FALSE(conn.result.ok);
    EXPECT_EQ(conn.result.server, kIoError);
    EXPECT_NE(conn.server.last_error().find("unsupported protocol"), std::string::npos)
        << conn.server.last_error();
    EXPECT_FALSE(conn.server.handshake_done());
  }
}

TEST(TlsVersions, MinimumTls13RefusesTls12) {
  auto ctx = server_ctx(listener_tls({"h2", "http/1.1"}, 13));
  Conn old(*ctx, ClientOpts{.max_version = TLS1_2_VERSION});
  EXPECT_FALSE(old.result.ok);
  EXPECT_EQ(old.result.server, kIoError);
  EXPECT_EQ(old.result.client, kIoError);
  EXPECT_NE(old.server.last_error().find("unsupported protocol"), std::string::npos)
      << old.server.last_error();

  Conn current(*ctx, ClientOpts{});
  ASSERT_TRUE(current.result.ok);
  EXPECT_EQ(SSL_version(current.server.native_handle()), TLS1_3_VERSION);
}

TEST(TlsVersions, NotTlsAtAll) {
  auto ctx = server_ctx(listener_tls());
  SocketPair sock;
  TlsTransport server(ctx->new_session());
  const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::write(sock.client(), req, sizeof req - 1), static_cast<ssize_t>(sizeof req - 1));
  char buf[64];
  EXPECT_EQ(server.read(sock.server(), buf, sizeof buf), kIoError);
  EXPECT_FALSE(server.last_error().empty());
  EXPECT_EQ(ERR_peek_error(), 0u);  // nothing left behind in the thread's error queue
}

TEST(TlsContext, BuildErrorsNameTheFile) {
  const Certs& c = certs();
  auto build = [](config::TlsCertificate cert) {
    config::ListenerTls t;
    t.certificates.push_back(std::move(cert));
    std::string error;
    auto ctx = ServerContext::build(t, std::make_shared<TicketKeys>(), error);
    EXPECT_EQ(ctx, nullptr);
    return error;
  };
  EXPECT_EQ(build(cert_entry(c.path("missing.pem"), c.rsa_key)),
            "cannot load certificate " + c.path("missing.pem") + ": No such file or directory");
  EXPECT_EQ(build(cert_entry(c.rsa_cert, c.path("missing.key"))),
            "cannot load key " + c.path("missing.key") + ": No such file or directory");
  EXPECT_EQ(build(cert_entry(c.garbage, c.rsa_key)),
            "cannot load certificate " + c.garbage + ": no start line");
  std::string mismatch = build(cert_entry(c.rsa_cert, c.ec_key));
  EXPECT_TRUE(mismatch == "key " + c.ec_key + " does not match certificate " + c.rsa_cert ||
              mismatch.rfind("cannot load key " + c.ec_key, 0) == 0)
      << mismatch;
  EXPECT_EQ(build(cert_entry(c.ec_cert, c.stray_key)),
            "key " + c.stray_key + " does not match certificate " + c.ec_cert);
  config::ListenerTls none;
  std::string error;
  EXPECT_EQ(ServerContext::build(none, nullptr, error), nullptr);
  EXPECT_FALSE(error.empty());
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(TlsContext, SessionsOutliveTheContext) {
  auto ctx = server_ctx(listener_tls());
  SocketPair sock;
  TlsTransport server(ctx->new_session());
  ctx.reset();  // a reload dropped it while a handshake is about to run
  TlsTransport client(client_session(ClientOpts{.sni = "x.wild.test", .alpn = {"h2"}}));
  auto r = handshake(server, sock.server(), client, sock.client());
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(peer_cn(client), "eccn.test");
  EXPECT_EQ(server.alpn(), "h2");
}

}  // namespace
}  // namespace weir::net::tls
