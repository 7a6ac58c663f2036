#pragma once
// Throwaway certificates made with OpenSSL at test time, and a socketpair on which a server and
// a client TlsTransport are driven by hand until their handshake is done.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "net/tls/tls.hpp"

namespace weir::net::tls::test {

constexpr time_t kDay = 24 * 3600;

inline void check(bool ok, const char* what) {
  if (!ok) {
    ERR_print_errors_fp(stderr);
    throw std::runtime_error(std::string("test certificates: ") + what);
  }
}

struct PkeyDel {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Del {
  void operator()(X509* x) const { X509_free(x); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDel>;
using Cert = std::unique_ptr<X509, X509Del>;

inline Pkey new_rsa_key() {
  return Pkey(EVP_RSA_gen(2048));
}
inline Pkey new_ec_key() {
  return Pkey(EVP_EC_gen("P-256"));
}

inline void add_ext(X509* x, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  check(ext != nullptr, "extension");
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` valid from `at + from` to `at + until` (seconds), signed by `issuer`
// (self-signed when null). `san`: "DNS:a,DNS:*.b,IP:127.0.0.1" or "" for none.
inline Cert make_cert(EVP_PKEY* key, const std::string& cn, const std::string& san, X509* issuer,
                      EVP_PKEY* issuer_key, time_t at, long from, long until, bool ca = false) {
  Cert x(X509_new());
  X509_set_version(x.get(), 2);
  unsigned char serial[8];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x.get()));
  BN_free(bn);
  check(X509_time_adj_ex(X509_getm_notBefore(x.get()), 0, from, &at) != nullptr, "notBefore");
  check(X509_time_adj_ex(X509_getm_notAfter(x.get()), 0, until, &at) != nullptr, "notAfter");
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  if (ca) {
    add_ext(x.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x.get(), &ctx, NID_basic_constraints, "CA:FALSE");
    add_ext(x.get(), &ctx, NID_ext_key_usage, "serverAuth");
  }
  if (!san.empty()) add_ext(x.get(), &ctx, NID_subject_alt_name, san);
  check(X509_sign(x.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0, "sign");
  return x;
}

inline void write_file(const std::string& path, const std::string& data) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  check(f != nullptr, "open");
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

inline void write_key(const std::string& path, EVP_PKEY* key) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  check(f && PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1, "key");
  std::fclose(f);
}

inline void write_certs(const std::string& path, std::initializer_list<X509*> chain) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  check(f != nullptr, "open");
  for (X509* x : chain)
    check(PEM_write_X509(f, x) == 1, "cert");
  std::fclose(f);
}

// Every file the tests use, made once per process in a temporary folder removed at exit.
struct Certs {
  std::string dir;
  time_t at = 0;             // "now" when they were made: the validity dates are relative to it
  std::string ca, other_ca;  // CA certificates (PEM)
  std::string rsa_cert,
      rsa_key;                  // RSA, CN default.test, SAN default.test www.default.test 127.0.0.1
  std::string ec_cert, ec_key;  // EC, CN eccn.test, SAN ec.test *.wild.test
  std::string cn_cert, cn_key;  // EC, CN cn.test, no SAN
  std::string other_cert, other_key;        // by other_ca, SAN default.test
  std::string expired_cert, expired_key;    // expired a day ago
  std::string expiring_cert, expiring_key;  // expires in 3 days
  std::string future_cert, future_key;      // valid from in 2 days
  std::string stray_key;                    // matches none of the certificates
  std::string garbage;                      // not PEM

  Certs() {
    char tmpl[] = "/tmp/weir-tls-test-XXXXXX";
    check(mkdtemp(tmpl) != nullptr, "mkdtemp");
    dir = tmpl;
    at = std::time(nullptr);
    const long year = 365 * kDay;
    Pkey ca_key = new_ec_key(), other_ca_key = new_ec_key();
    Cert ca_cert =
        make_cert(ca_key.get(), "Weir Test CA", "", nullptr, nullptr, at, -kDay, 10 * year, true);
    Cert other_ca_cert = make_cert(other_ca_key.get(), "Other Test CA", "", nullptr, nullptr, at,
                                   -kDay, 10 * year, true);
    ca = path("ca.pem");
    write_certs(ca, {ca_cert.get()});
    other_ca = path("other-ca.pem");
    write_certs(other_ca, {other_ca_cert.get()});

    auto leaf = [&](const std::string& base, Pkey key, const std::string& cn,
                    const std::string& san, long from, long until, X509* issuer,
                    EVP_PKEY* issuer_key, std::string& cert_path, std::string& key_path) {
      Cert c = make_cert(key.get(), cn, san, issuer, issuer_key, at, from, until);
      cert_path = path(base + ".pem");
      key_path = path(base + ".key");
      write_certs(cert_path, {c.get(), issuer});  // chain: leaf first
      write_key(key_path, key.get());
    };
    leaf("rsa", new_rsa_key(), "default.test", "DNS:default.test,DNS:www.default.test,IP:127.0.0.1",
         -kDay, year, ca_cert.get(), ca_key.get(), rsa_cert, rsa_key);
    leaf("ec", new_ec_key(), "eccn.test", "DNS:ec.test,DNS:*.wild.test", -kDay, year, ca_cert.get(),
         ca_key.get(), ec_cert, ec_key);
    leaf("cn", new_ec_key(), "cn.test", "", -kDay, year, ca_cert.get(), ca_key.get(), cn_cert,
         cn_key);
    leaf("other", new_ec_key(), "default.test", "DNS:default.test", -kDay, year,
         other_ca_cert.get(), other_ca_key.get(), other_cert, other_key);
    leaf("expired", new_ec_key(), "expired.test", "DNS:expired.test", -30 * kDay, -kDay,
         ca_cert.get(), ca_key.get(), expired_cert, expired_key);
    leaf("expiring", new_ec_key(), "expiring.test", "DNS:expiring.test", -30 * kDay, 3 * kDay,
         ca_cert.get(), ca_key.get(), expiring_cert, expiring_key);
    leaf("future", new_ec_key(), "future.test", "DNS:future.test", 2 * kDay, year, ca_cert.get(),
         ca_key.get(), future_cert, future_key);
    Pkey stray = new_ec_key();
    stray_key = path("stray.key");
    write_key(stray_key, stray.get());
    garbage = path("garbage.pem");
    write_file(garbage, "this is not a certificate\n");
  }
  ~Certs() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string path(const std::string& name) const { return dir + "/" + name; }
};

inline const Certs& certs() {
  static const Certs c;
  return c;
}

// "YYYY-MM-DD" of certs().at + offset.
inline std::string day(long offset) {
  time_t t = certs().at + offset;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

inline config::TlsCertificate cert_entry(const std::string& cert, const std::string& key,
                                         int line = 1) {
  config::TlsCertificate c;
  c.cert = cert;
  c.key = key;
  c.pos = config::SourcePos{"t.yaml", line, 9};
  return c;
}

// A listener with the RSA (default), EC and CN-only certificates.
inline config::ListenerTls listener_tls(std::vector<std::string> alpn = {"h2", "http/1.1"},
                                        int min_version = 12) {
  config::ListenerTls t;
  t.certificates.push_back(cert_entry(certs().rsa_cert, certs().rsa_key));
  t.certificates.push_back(cert_entry(certs().ec_cert, certs().ec_key));
  t.certificates.push_back(cert_entry(certs().cn_cert, certs().cn_key));
  t.alpn = std::move(alpn);
  t.min_version = min_version;
  return t;
}

inline std::shared_ptr<ServerContext> server_ctx(const config::ListenerTls& t,
                                                 std::shared_ptr<TicketKeys> keys = nullptr) {
  if (!keys) keys = std::make_shared<TicketKeys>();
  std::string error;
  auto ctx = ServerContext::build(t, keys, error);
  if (!ctx) throw std::runtime_error("ServerContext::build: " + error);
  return ctx;
}

// A bare client (no verification) with the given SNI, ALPN offer and versions.
struct ClientOpts {
  std::string sni;
  std::vector<std::string> alpn;
  int min_version = TLS1_2_VERSION;
  int max_version = TLS1_3_VERSION;
  bool legacy = false;  // security level 0: lets OpenSSL 3 even try TLS 1.0/1.1
  SSL_SESSION* session = nullptr;
};

inline SSL* client_session(const ClientOpts& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, o.min_version);
  SSL_CTX_set_max_proto_version(ctx, o.max_version);
  if (o.legacy) SSL_CTX_set_cipher_list(ctx, "DEFAULT@SECLEVEL=0");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  if (!o.alpn.empty()) {
    std::string wire;
    for (const auto& p : o.alpn)
      wire += static_cast<char>(p.size()) + p;
    SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()));
  }
  SSL* ssl = SSL_new(ctx);
  SSL_CTX_free(ctx);  // the session holds its own reference
  SSL_set_connect_state(ssl);
  if (!o.sni.empty()) SSL_set_tlsext_host_name(ssl, o.sni.c_str());
  if (o.session) SSL_set_session(ssl, o.session);
  return ssl;
}

// A connected pair of non-blocking Unix sockets: [0] the server's end, [1] the client's.
struct SocketPair {
  int fd[2] = {-1, -1};
  explicit SocketPair(int sndbuf = 0) {
    check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd) == 0, "socketpair");
    if (sndbuf > 0) {
      for (int f : fd)
        setsockopt(f, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }
  }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  void close_client() {
    ::close(fd[1]);
    fd[1] = -1;
  }
  void close_server() {
    ::close(fd[0]);
    fd[0] = -1;
  }
  int server() const { return fd[0]; }
  int client() const { return fd[1]; }
};

struct HandshakeResult {
  bool ok = false;
  ssize_t server = kWouldBlock;  // the last read() result of each side
  ssize_t client = kWouldBlock;
};

// Reads on both sides in turn until both handshakes are done (then once more on the client, for
// TLS 1.3 session tickets) or both sides failed or closed.
inline HandshakeResult handshake(TlsTransport& server, int sfd, TlsTransport& client, int cfd) {
  HandshakeResult r;
  char buf[256];
  auto live = [](ssize_t n) { return n == kWouldBlock || n > 0; };
  for (int i = 0; i < 200; ++i) {
    if (live(r.client)) r.client = client.read(cfd, buf, sizeof buf);
    if (live(r.server)) r.server = server.read(sfd, buf, sizeof buf);
    if (server.handshake_done() && client.handshake_done() && live(r.client) && live(r.server)) {
      r.client = client.read(cfd, buf, sizeof buf);
      r.ok = live(r.client);
      return r;
    }
    if (!live(r.client) && !live(r.server)) break;
  }
  return r;
}

// The subject CN of the certificate the server presented.
inline std::string peer_cn(const TlsTransport& t) {
  X509* peer = SSL_get0_peer_certificate(t.native_handle());
  if (!peer) return "";
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
  return cn;
}

}  // namespace weir::net::tls::test
