// OCSP stapling: checking responses against their certificate, the certificate's issuer and
// responder URL, stapling in real handshakes, fetching over HTTP and the fetcher thread.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ocsp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <thread>

#include "net/tls/ocsp.hpp"
#include "tls_test_util.hpp"

namespace weir::net::tls {
namespace {

using namespace std::chrono_literals;
using test::Cert;
using test::check;
using test::kDay;
using test::Pkey;

// `nid` = `value` in place of whatever x had, signed again by `issuer_key`.
void set_ext(X509* x, X509* issuer, EVP_PKEY* issuer_key, int nid, const std::string& value) {
  int at = X509_get_ext_by_NID(x, nid, -1);
  if (at >= 0) X509_EXTENSION_free(X509_delete_ext(x, at));
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  test::add_ext(x, &ctx, nid, value);
  check(X509_sign(x, issuer_key, EVP_sha256()) > 0, "sign");
}

// A CA, a leaf with an OCSP URL, a second leaf, responders, and their files.
struct Pki {
  std::string dir;
  time_t at = std::time(nullptr);
  Pkey ca_key = test::new_ec_key(), other_ca_key = test::new_ec_key();
  Cert ca, other_ca;
  Pkey leaf_key = test::new_ec_key(), other_key = test::new_ec_key();
  Cert leaf, other;  // both by ca; leaf has the OCSP URL http://127.0.0.1:9/ocsp
  Pkey responder_key = test::new_ec_key();
  Cert responder;    // by ca, extendedKeyUsage OCSPSigning
  Cert server_auth;  // by ca, serverAuth only: not allowed to sign responses
  std::string leaf_pem, leaf_key_file, lonely_pem, other_pem, https_pem;

  Pki() {
    char tmpl[] = "/tmp/weir-ocsp-test-XXXXXX";
    check(mkdtemp(tmpl) != nullptr, "mkdtemp");
    dir = tmpl;
    ca = test::make_cert(ca_key.get(), "OCSP Test CA", "", nullptr, nullptr, at, -kDay, 3650 * kDay,
                         true);
    other_ca = test::make_cert(other_ca_key.get(), "Other CA", "", nullptr, nullptr, at, -kDay,
                               3650 * kDay, true);
    leaf = test::make_cert(leaf_key.get(), "a.test", "DNS:a.test", ca.get(), ca_key.get(), at,
                           -kDay, 30 * kDay);
    set_ext(leaf.get(), ca.get(), ca_key.get(), NID_info_access,
            "OCSP;URI:http://127.0.0.1:9/ocsp");
    other = test::make_cert(other_key.get(), "b.test", "DNS:b.test", ca.get(), ca_key.get(), at,
                            -kDay, 30 * kDay);
    responder = test::make_cert(responder_key.get(), "OCSP responder", "", ca.get(), ca_key.get(),
                                at, -kDay, 30 * kDay);
    set_ext(responder.get(), ca.get(), ca_key.get(), NID_ext_key_usage, "OCSPSigning");
    server_auth = test::make_cert(responder_key.get(), "not a responder", "", ca.get(),
                                  ca_key.get(), at, -kDay, 30 * kDay);
    leaf_pem = path("leaf.pem");
    test::write_certs(leaf_pem, {leaf.get(), ca.get()});
    leaf_key_file = path("leaf.key");
    test::write_key(leaf_key_file, leaf_key.get());
    lonely_pem = path("lonely.pem");
    test::write_certs(lonely_pem, {leaf.get()});
    other_pem = path("other.pem");
    test::write_certs(other_pem, {other.get(), ca.get()});
    Cert https_leaf = test::make_cert(other_key.get(), "c.test", "DNS:c.test", ca.get(),
                                      ca_key.get(), at, -kDay, 30 * kDay);
    set_ext(https_leaf.get(), ca.get(), ca_key.get(), NID_info_access,
            "OCSP;URI:https://ocsp.example/");
    https_pem = path("https.pem");
    test::write_certs(https_pem, {https_leaf.get(), ca.get()});
  }
  ~Pki() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string path(const std::string& name) const { return dir + "/" + name; }
};

const Pki& pki() {
  static const Pki p;
  return p;
}

struct Response {
  X509* cert = pki().leaf.get();
  X509* issuer = pki().ca.get();
  X509* signer = pki().responder.get();
  EVP_PKEY* key = pki().responder_key.get();
  int status = V_OCSP_CERTSTATUS_GOOD;
  long this_update = -60;  // seconds from pki().at
  long next_update = 3 * kDay;
  bool no_next_update = false;
  unsigned long flags = 0;  // OCSP_basic_sign flags (OCSP_NOCERTS: the signer is not included)

  std::string der() const {
    OCSP_BASICRESP* bs = OCSP_BASICRESP_new();
    OCSP_CERTID* id = OCSP_cert_to_id(nullptr, cert, issuer);
    time_t at = pki().at;
    ASN1_GENERALIZEDTIME* tu = ASN1_GENERALIZEDTIME_set(nullptr, at + this_update);
    ASN1_GENERALIZEDTIME* nu =
        no_next_update ? nullptr : ASN1_GENERALIZEDTIME_set(nullptr, at + next_update);
    ASN1_GENERALIZEDTIME* rev = status == V_OCSP_CERTSTATUS_REVOKED
                                    ? ASN1_GENERALIZEDTIME_set(nullptr, at - kDay)
                                    : nullptr;
    int reason = status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : -1;
    check(OCSP_basic_add1_status(bs, id, status, reason, rev, tu, nu) != nullptr, "add status");
    check(OCSP_basic_sign(bs, signer, key, EVP_sha256(), nullptr, flags) == 1, "sign response");
    OCSP_RESPONSE* r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    unsigned char* buf = nullptr;
    int len = i2d_OCSP_RESPONSE(r, &buf);
    check(len > 0, "encode response");
    std::string out(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
    OPENSSL_free(buf);
    OCSP_RESPONSE_free(r);
    OCSP_BASICRESP_free(bs);
    OCSP_CERTID_free(id);
    ASN1_GENERALIZEDTIME_free(tu);
    ASN1_GENERALIZEDTIME_free(nu);
    ASN1_GENERALIZEDTIME_free(rev);
    return out;
  }
};

OcspTarget target(const std::string& pem = pki().leaf_pem) {
  OcspTarget t;
  std::string error;
  EXPECT_TRUE(OcspTarget::from_file(pem, t, error)) << error;
  return t;
}

// The error of check_ocsp_response (at pki().at), or "" when it accepts the response.
std::string check_error(const std::string& der, const OcspTarget& t = target(), long now = 0) {
  std::string error;
  OcspResponsePtr r = check_ocsp_response(der, t, pki().at + now, error);
  EXPECT_EQ(r == nullptr, !error.empty()) << error;
  return r ? "" : error;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---- checking --------------------------------------------------------------------------------

TEST(OcspCheck, GoodResponseFromADelegatedResponder) {
  Response resp;
  std::string der = resp.der(), error;
  OcspResponsePtr r = check_ocsp_response(der, target(), pki().at, error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_EQ(r->status, V_OCSP_CERTSTATUS_GOOD);
  EXPECT_EQ(ocsp_status_name(r->status), "good");
  EXPECT_EQ(r->this_update, pki().at - 60);
  EXPECT_EQ(r->next_update, pki().at + 3 * kDay);
  EXPECT_EQ(r->der, der);
  EXPECT_TRUE(r->fresh(pki().at));
  EXPECT_TRUE(r->fresh(pki().at + 3 * kDay - 1));
  EXPECT_FALSE(r->fresh(pki().at + 3 * kDay));
}

TEST(OcspCheck, SignedByTheIssuerItself) {
  Response resp;
  resp.signer = pki().ca.get();
  resp.key = pki().ca_key.get();
  EXPECT_EQ(check_error(resp.der()), "");
  resp.flags = OCSP_NOCERTS;  // the signer is found in the certificate's chain
  EXPECT_EQ(check_error(resp.der()), "");
}

TEST(OcspCheck, RevokedAndUnknownAreNotErrors) {
  Response resp;
  resp.status = V_OCSP_CERTSTATUS_REVOKED;
  std::string error;
  OcspResponsePtr r = check_ocsp_response(resp.der(), target(), pki().at, error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_EQ(ocsp_status_name(r->status), "revoked");
  EXPECT_EQ(r->revoked_at, pki().at - kDay);
  resp.status = V_OCSP_CERTSTATUS_UNKNOWN;
  r = check_ocsp_response(resp.der(), target(), pki().at, error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_EQ(ocsp_status_name(r->status), "unknown");
}

TEST(OcspCheck, NotAnOcspResponse) {
  EXPECT_EQ(check_error(""), "is empty");
  EXPECT_EQ(check_error("garbage, not DER"), "is not a DER OCSP response");
  std::string der = Response().der();
  EXPECT_EQ(check_error(der.substr(0, der.size() - 10)), "is not a DER OCSP response");
  EXPECT_EQ(check_error(der + "xy"), "is not a DER OCSP response (2 bytes follow the response)");
}

TEST(OcspCheck, UnsuccessfulResponse) {
  OCSP_RESPONSE* r = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER, nullptr);
  unsigned char* buf = nullptr;
  int len = i2d_OCSP_RESPONSE(r, &buf);
  std::string der(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  OCSP_RESPONSE_free(r);
  EXPECT_EQ(check_error(der),
            "is not a successful OCSP response (the responder said \"trylater\")");
}

TEST(OcspCheck, ForAnotherCertificate) {
  Response resp;
  resp.cert = pki().other.get();
  std::string e = check_error(resp.der());
  EXPECT_TRUE(contains(e, "is for another certificate (serial ")) << e;
  EXPECT_TRUE(contains(e, "not for " + pki().leaf_pem + " (serial ")) << e;
  // The same response is fine for the certificate it is about.
  EXPECT_EQ(check_error(resp.der(), target(pki().other_pem)), "");
}

TEST(OcspCheck, ExpiredOrNotYetValid) {
  Response resp;
  resp.this_update = -2 * kDay;
  resp.next_update = -1;
  std::string e = check_error(resp.der());
  EXPECT_EQ(e, "expired on " + ocsp_time(pki().at - 1) +
                   " (its nextUpdate): a stale response is never stapled");
  resp.next_update = 0;  // nextUpdate == now: stale already
  EXPECT_TRUE(contains(check_error(resp.der()), "expired on")) << check_error(resp.der());
  resp.next_update = 1;
  EXPECT_EQ(check_error(resp.der()), "");

  resp.this_update = 3600;  // an hour ahead: more than clock skew
  resp.next_update = 3 * kDay;
  EXPECT_EQ(check_error(resp.der()),
            "is not valid before " + ocsp_time(pki().at + 3600) + " (its thisUpdate)");
  resp.this_update = 120;  // two minutes ahead: clocks differ that much
  EXPECT_EQ(check_error(resp.der()), "");

  resp.this_update = -60;
  resp.no_next_update = true;  // allowed: fresh until replaced
  std::string error;
  OcspResponsePtr r = check_ocsp_response(resp.der(), target(), pki().at, error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_EQ(r->next_update, 0);
  EXPECT_TRUE(r->fresh(pki().at + 365 * kDay));
}

TEST(OcspCheck, SignatureMustComeFromTheIssuer) {
  Response resp;
  resp.signer = pki().other_ca.get();  // another CA
  resp.key = pki().other_ca_key.get();
  std::string e = check_error(resp.der());
  EXPECT_TRUE(contains(
      e, "is not signed by the issuer of " + pki().leaf_pem + " or a responder it delegated to ("))
      << e;
  resp.signer = pki().server_auth.get();  // issued by the CA, but not for OCSP signing
  resp.key = pki().responder_key.get();
  e = check_error(resp.der());
  EXPECT_TRUE(contains(e, "is not signed by the issuer")) << e;
}

TEST(OcspTarget, IssuerAndResponderUrl) {
  OcspTarget t = target();
  ASSERT_TRUE(t.leaf && t.issuer);
  EXPECT_EQ(X509_cmp(t.issuer.get(), pki().ca.get()), 0);
  EXPECT_EQ(t.chain.size(), 1u);
  EXPECT_EQ(t.name, pki().leaf_pem);
  std::string url, error;
  EXPECT_TRUE(t.responder_url(url, error)) << error;
  EXPECT_EQ(url, "http://127.0.0.1:9/ocsp");

  OcspTarget lonely = target(pki().lonely_pem);
  ASSERT_TRUE(lonely.leaf);
  EXPECT_FALSE(lonely.issuer);
  EXPECT_EQ(check_error(Response().der(), lonely),
            "cannot be checked: the issuer of " + pki().lonely_pem +
                " is not in that file (append the issuer's certificate after it)");

  EXPECT_FALSE(target(pki().other_pem).responder_url(url, error));
  EXPECT_EQ(error, "certificate " + pki().other_pem +
                       " names no OCSP responder (Authority Information Access) to fetch from");
  EXPECT_FALSE(target(pki().https_pem).responder_url(url, error));
  EXPECT_EQ(error, "the OCSP responder of certificate " + pki().https_pem +
                       " is https://ocsp.example/: only http responders are supported");

  OcspTarget none;
  EXPECT_FALSE(OcspTarget::from_file(pki().path("missing.pem"), none, error));
  EXPECT_EQ(error,
            "cannot read certificate " + pki().path("missing.pem") + ": No such file or directory");
}

TEST(OcspFile, LoadAndCheck) {
  std::string file = pki().path("good.der"), error;
  test::write_file(file, Response().der());
  EXPECT_NE(load_ocsp_file(file, target(), pki().at, error), nullptr) << error;
  EXPECT_EQ(load_ocsp_file(pki().path("none.der"), target(), pki().at, error), nullptr);
  EXPECT_EQ(error,
            "cannot read OCSP response " + pki().path("none.der") + ": No such file or directory");
  test::write_file(file, "junk");
  EXPECT_EQ(load_ocsp_file(file, target(), pki().at, error), nullptr);
  EXPECT_EQ(error, "OCSP response " + file + " is not a DER OCSP response");
}

// ---- stapling in handshakes ------------------------------------------------------------------

config::ListenerTls ocsp_listener(const std::string& file) {
  config::ListenerTls t;
  t.certificates.push_back(test::cert_entry(pki().leaf_pem, pki().leaf_key_file));
  config::TlsOcsp o;
  o.file = file;
  t.certificates.back().ocsp = o;
  t.alpn = {"http/1.1"};
  return t;
}

// The OCSP response the client got in a handshake ("" for none).
std::string stapled(ServerContext& ctx, bool ask, int version, const std::string& sni = "a.test") {
  test::ClientOpts o;
  o.sni = sni;
  o.min_version = o.max_version = version;
  SSL* c = test::client_session(o);
  if (ask) SSL_set_tlsext_status_type(c, TLSEXT_STATUSTYPE_ocsp);
  TlsTransport server(ctx.new_session()), client(c);
  test::SocketPair sp;
  EXPECT_TRUE(test::handshake(server, sp.server(), client, sp.client()).ok);
  const unsigned char* p = nullptr;
  long len = SSL_get_tlsext_status_ocsp_resp(client.native_handle(), &p);
  return p && len > 0 ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(len))
                      : "";
}

TEST(OcspStaple, FileResponseStapledWhenAsked) {
  std::string file = pki().path("staple.der");
  std::string der = Response().der();
  test::write_file(file, der);
  auto ctx = test::server_ctx(ocsp_listener(file));
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version);
    EXPECT_EQ(stapled(*ctx, true, version), der);
    EXPECT_EQ(stapled(*ctx, false, version), "");
  }
  // Picked by SNI: the certificate's own status callback and response. A default certificate
  // without `ocsp:` staples nothing.
  config::ListenerTls two = ocsp_listener(file);
  two.certificates.insert(two.certificates.begin(),
                          test::cert_entry(test::certs().rsa_cert, test::certs().rsa_key));
  auto ctx2 = test::server_ctx(two);
  EXPECT_EQ(stapled(*ctx2, true, TLS1_3_VERSION), der);
  EXPECT_EQ(stapled(*ctx2, true, TLS1_2_VERSION, "default.test"), "");
  // Without `ocsp:`, nothing is stapled even when asked.
  config::ListenerTls plain = ocsp_listener("");
  plain.certificates.back().ocsp.reset();
  EXPECT_EQ(stapled(*test::server_ctx(plain), true, TLS1_3_VERSION), "");
}

TEST(OcspStaple, StaleResponseIsNotStapled) {
  // Valid for 2 more seconds when the context is built, then never sent again.
  Response resp;
  resp.next_update = std::time(nullptr) - pki().at + 2;
  std::string file = pki().path("short.der");
  test::write_file(file, resp.der());
  auto ctx = test::server_ctx(ocsp_listener(file));
  EXPECT_NE(stapled(*ctx, true, TLS1_3_VERSION), "");
  std::this_thread::sleep_for(2100ms);
  EXPECT_EQ(stapled(*ctx, true, TLS1_3_VERSION), "");
}

TEST(OcspStaple, BuildRefusesABadFile) {
  std::string file = pki().path("expired.der"), error;
  Response resp;
  resp.this_update = -2 * kDay;
  resp.next_update = -kDay;
  test::write_file(file, resp.der());
  EXPECT_EQ(ServerContext::build(ocsp_listener(file), nullptr, error), nullptr);
  EXPECT_TRUE(contains(error, "OCSP response " + file + " expired on")) << error;

  config::ListenerTls lonely = ocsp_listener(file);
  lonely.certificates.back().cert = pki().lonely_pem;
  EXPECT_EQ(ServerContext::build(lonely, nullptr, error), nullptr);
  EXPECT_EQ(error, "OCSP: the issuer of certificate " + pki().lonely_pem +
                       " is not in that file (append the issuer's certificate after it)");
}

// ---- fetching --------------------------------------------------------------------------------

// A one-thread HTTP server on 127.0.0.1: each connection's request (head and body) goes to
// `answer`, whose result is sent back before closing; nullopt leaves the client waiting.
class FakeResponder {
 public:
  using Answer =
      std::function<std::optional<std::string>(const std::string& head, const std::string& body)>;
  explicit FakeResponder(Answer answer) : answer_(std::move(answer)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    check(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind");
    check(::listen(fd_, 16) == 0, "listen");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeResponder() {
    uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one);
    thread_.join();
    for (int c : held_)
      ::close(c);
    ::close(fd_);
    ::close(stop_fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/ocsp"; }
  int requests() const { return requests_; }

 private:
  void loop() {
    for (;;) {
      pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 || (fds[1].revents & POLLIN)) return;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{2, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string in;
      char buf[4096];
      size_t head_end = std::string::npos, want = 0;
      while (head_end == std::string::npos || in.size() < head_end + 4 + want) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        if (head_end == std::string::npos &&
            (head_end = in.find("\r\n\r\n")) != std::string::npos) {
          size_t cl = in.find("Content-Length: ");
          if (cl != std::string::npos && cl < head_end) want = std::stoul(in.substr(cl + 16));
        }
      }
      ++requests_;
      std::string head = head_end == std::string::npos ? in : in.substr(0, head_end);
      std::string body = head_end == std::string::npos ? "" : in.substr(head_end + 4);
      std::optional<std::string> out = answer_(head, body);
      if (!out) {
        held_.push_back(c);
        continue;
      }
      ::send(c, out->data(), out->size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }

  Answer answer_;
  int fd_ = -1, stop_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::vector<int> held_;
  std::atomic<int> requests_{0};
};

std::string http_ok(const std::string& body) {
  return "HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A response made now (fetches check against the real clock).
std::string fresh_der(long valid_for = 3 * kDay) {
  Response resp;
  resp.this_update = std::time(nullptr) - pki().at - 60;
  resp.next_update = std::time(nullptr) - pki().at + valid_for;
  return resp.der();
}

TEST(OcspFetch, PostsARequestForTheCertificate) {
  std::string der = fresh_der();
  std::string seen_head;
  bool request_ok = false;
  FakeResponder responder([&](const std::string& head, const std::string& body) {
    seen_head = head;
    const auto* p = reinterpret_cast<const unsigned char*>(body.data());
    OCSP_REQUEST* req = d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(body.size()));
    if (req && OCSP_request_onereq_count(req) == 1) {
      OCSP_CERTID* mine = OCSP_cert_to_id(nullptr, pki().leaf.get(), pki().ca.get());
      request_ok = OCSP_id_cmp(OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, 0)), mine) == 0;
      OCSP_CERTID_free(mine);
    }
    OCSP_REQUEST_free(req);
    return http_ok(der);
  });
  std::string error;
  OcspResponsePtr r = fetch_ocsp_response(target(), responder.url(), 5000ms, -1, error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_EQ(r->der, der);
  EXPECT_TRUE(request_ok);
  EXPECT_EQ(seen_head.rfind("POST /ocsp HTTP/1.", 0), 0u) << seen_head;
  EXPECT_TRUE(contains(seen_head, "Content-Type: application/ocsp-request")) << seen_head;
  EXPECT_TRUE(contains(seen_head, "Host: 127.0.0.1:")) << seen_head;
}

TEST(OcspFetch, Failures) {
  std::string error;
  {
    FakeResponder responder(
        [](const std::string&, const std::string&) { return "HTTP/1.0 404 Not Found\r\n\r\n"; });
    EXPECT_EQ(fetch_ocsp_response(target(), responder.url(), 5000ms, -1, error), nullptr);
    EXPECT_TRUE(contains(error, "HTTP exchange with " + responder.url() + " failed")) << error;
    EXPECT_TRUE(contains(error, "404")) << error;
  }
  {
    FakeResponder responder([](const std::string&, const std::string&) {
      Response other;
      other.cert = pki().other.get();
      other.this_update = std::time(nullptr) - pki().at;
      return http_ok(other.der());
    });
    EXPECT_EQ(fetch_ocsp_response(target(), responder.url(), 5000ms, -1, error), nullptr);
    EXPECT_TRUE(
        contains(error, "the response from " + responder.url() + " is for another certificate"))
        << error;
  }
  {
    // Nobody listens there any more.
    std::string url;
    {
      FakeResponder gone([](const std::string&, const std::string&) { return std::nullopt; });
      url = gone.url();
    }
    EXPECT_EQ(fetch_ocsp_response(target(), url, 5000ms, -1, error), nullptr);
    EXPECT_TRUE(contains(error, "Connection refused")) << error;
  }
  {
    FakeResponder silent([](const std::string&, const std::string&) { return std::nullopt; });
    auto started = std::chrono::steady_clock::now();
    EXPECT_EQ(fetch_ocsp_response(target(), silent.url(), 300ms, -1, error), nullptr);
    EXPECT_EQ(error, "no answer from " + silent.url() + " within 300 ms");
    EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);

    // Cancelled by its eventfd while waiting.
    int cancel = ::eventfd(0, EFD_CLOEXEC);
    std::thread canceller([cancel] {
      std::this_thread::sleep_for(200ms);
      uint64_t one = 1;
      (void)!::write(cancel, &one, sizeof one);
    });
    started = std::chrono::steady_clock::now();
    EXPECT_EQ(fetch_ocsp_response(target(), silent.url(), 30000ms, cancel, error), nullptr);
    EXPECT_EQ(error, "cancelled (stopping)");
    EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
    canceller.join();
    ::close(cancel);
  }
  EXPECT_EQ(fetch_ocsp_response(target(pki().lonely_pem), "http://127.0.0.1:9/", 1000ms, -1, error),
            nullptr);
  EXPECT_EQ(error, "no issuer certificate to ask about");
  EXPECT_EQ(fetch_ocsp_response(target(), "https://127.0.0.1:9/", 1000ms, -1, error), nullptr);
  EXPECT_EQ(error,
            "the responder URL https://127.0.0.1:9/ is https: only http responders are "
            "supported");
}

template <typename F>
bool eventually(F pred, std::chrono::milliseconds limit = 5000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

TEST(OcspFetcher, FetchesRetriesAndSharesSlots) {
  std::atomic<bool> up{false};
  std::string der = fresh_der();
  FakeResponder responder(
      [&](const std::string&, const std::string&) -> std::optional<std::string> {
        if (!up) return "HTTP/1.0 503 Service Unavailable\r\n\r\n";
        return http_ok(der);
      });
  OcspFetcher::Options opts;
  opts.min_retry = 100ms;
  opts.max_retry = 200ms;
  OcspFetcher fetcher(opts);
  std::shared_ptr<OcspSlot> slot = fetcher.watch(target(), responder.url());
  EXPECT_EQ(fetcher.watch(target(), responder.url()), slot);  // a reload: the same slot
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(responder.requests(), 0);  // nothing before start()
  fetcher.start();
  EXPECT_TRUE(eventually([&] { return responder.requests() >= 3; }));  // retried
  EXPECT_EQ(slot->get(), nullptr);
  up = true;
  ASSERT_TRUE(eventually([&] { return slot->get() != nullptr; }));
  EXPECT_EQ(slot->get()->der, der);
  int after = responder.requests();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(responder.requests(), after);  // valid for days: no refresh for now

  // A slot nobody holds is forgotten: watching again starts afresh, with a fetch at once.
  slot.reset();
  std::shared_ptr<OcspSlot> again = fetcher.watch(target(), responder.url());
  ASSERT_TRUE(eventually([&] { return again->get() != nullptr; }));
  EXPECT_GT(responder.requests(), after);
  auto started = std::chrono::steady_clock::now();
  fetcher.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
}

TEST(OcspFetcher, RefreshesAtHalfTheValidityAndDropsAStaleResponse) {
  std::atomic<int> mode{0};  // 0: a response valid 2 s, 1: failing
  FakeResponder responder(
      [&](const std::string&, const std::string&) -> std::optional<std::string> {
        if (mode == 1) return "HTTP/1.0 500 Internal Server Error\r\n\r\n";
        return http_ok(fresh_der(2));
      });
  OcspFetcher::Options opts;
  opts.min_retry = 100ms;
  opts.max_retry = 5000ms;
  OcspFetcher fetcher(opts);
  fetcher.start();
  std::shared_ptr<OcspSlot> slot = fetcher.watch(target(), responder.url());
  ASSERT_TRUE(eventually([&] { return slot->get() != nullptr; }));
  // Refreshed about a second later (half of 2 s, whole seconds).
  EXPECT_TRUE(eventually([&] { return responder.requests() >= 2; }, 3000ms));
  mode = 1;
  // Failing from now on: once the last response passes its nextUpdate, the slot is emptied
  // even though the retries back off (the retry comes no later than the expiry).
  EXPECT_TRUE(eventually([&] { return slot->get() == nullptr; }, 5000ms));
  fetcher.stop();
}

}  // namespace
}  // namespace weir::net::tls
