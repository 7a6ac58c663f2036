#include "quic/quic_tls.hpp"

#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "config/config.hpp"

namespace weir::quic {
namespace {

// TLS 1.3 with the AEADs QUIC defines (RFC 9001 §5.3) and the usual groups; no middlebox
// compatibility mode (RFC 9001 §8.4).
constexpr const char* kPriority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "+AES-128-CCM:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"
    "%DISABLE_TLS13_COMPAT_MODE";

std::string gnutls_error(int rv) {
  return gnutls_strerror(rv);
}

// RFC 9001 §8.2: a ClientHello without quic_transport_parameters ends the handshake
// (missing_extension). Without this check ngtcp2 goes on with no negotiated version and
// asserts (aborting the process) when it first writes a 1-RTT packet.
int client_hello_done(gnutls_session_t s, unsigned, unsigned, unsigned, const gnutls_datum_t*) {
  auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(s));
  ngtcp2_conn* conn = ref ? ref->get_conn(ref) : nullptr;
  if (conn && ngtcp2_conn_get_remote_transport_params(conn) == nullptr)
    return GNUTLS_E_MISSING_EXTENSION;
  return 0;
}

}  // namespace

std::unique_ptr<TlsContext> TlsContext::load(const config::ListenerTls& tls, std::string& error) {
  std::unique_ptr<TlsContext> ctx(new TlsContext());
  int rv = gnutls_certificate_allocate_credentials(&ctx->cred_);
  if (rv != 0) {
    error = "GnuTLS credentials: " + gnutls_error(rv);
    return nullptr;
  }
  for (const auto& c : tls.certificates) {
    rv = gnutls_certificate_set_x509_key_file2(ctx->cred_, c.cert.c_str(), c.key.c_str(),
                                               GNUTLS_X509_FMT_PEM, nullptr, 0);
    if (rv < 0) {
      error = "certificate " + c.cert + " with key " + c.key +
              " (for HTTP/3, GnuTLS): " + gnutls_error(rv);
      return nullptr;
    }
  }
  if ((rv = gnutls_session_ticket_key_generate(&ctx->ticket_key_)) != 0) {
    error = "GnuTLS session ticket key: " + gnutls_error(rv);
    return nullptr;
  }
  const char* where = nullptr;
  rv = gnutls_priority_init(&ctx->prio_, kPriority, &where);
  if (rv != 0) {
    error = "GnuTLS priority string: " + gnutls_error(rv);
    return nullptr;
  }
  return ctx;
}

TlsContext::~TlsContext() {
  if (ticket_key_.data) {
    gnutls_memset(ticket_key_.data, 0, ticket_key_.size);
    gnutls_free(ticket_key_.data);
  }
  if (prio_) gnutls_priority_deinit(prio_);
  if (cred_) gnutls_certificate_free_credentials(cred_);
}

gnutls_session_t TlsContext::new_session(ngtcp2_crypto_conn_ref* ref, std::string& error) const {
  gnutls_session_t s = nullptr;
  int rv = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_END_OF_EARLY_DATA);
  if (rv != 0) {
    error = "gnutls_init: " + gnutls_error(rv);
    return nullptr;
  }
  auto fail = [&](const char* what, int r) -> gnutls_session_t {
    error = std::string(what) + ": " + gnutls_error(r);
    gnutls_deinit(s);
    return nullptr;
  };
  if ((rv = gnutls_priority_set(s, prio_)) != 0) return fail("gnutls_priority_set", rv);
  if ((rv = ngtcp2_crypto_gnutls_configure_server_session(s)) != 0)
    return fail("ngtcp2_crypto_gnutls_configure_server_session", rv);
  gnutls_session_set_ptr(s, ref);
  gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_POST,
                                     client_hello_done);
  if ((rv = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred_)) != 0)
    return fail("gnutls_credentials_set", rv);
  if ((rv = gnutls_session_ticket_enable_server(s, &ticket_key_)) != 0)
    return fail("gnutls_session_ticket_enable_server", rv);
  static const char kH3[] = "h3";
  gnutls_datum_t alpn{reinterpret_cast<unsigned char*>(const_cast<char*>(kH3)), 2};
  if ((rv = gnutls_alpn_set_protocols(s, &alpn, 1, GNUTLS_ALPN_MANDATORY)) != 0)
    return fail("gnutls_alpn_set_protocols", rv);
  return s;
}

std::string check_pair(const std::string& cert_file, const std::string& key_file) {
  gnutls_certificate_credentials_t cred = nullptr;
  int rv = gnutls_certificate_allocate_credentials(&cred);
  if (rv != 0) return "GnuTLS credentials: " + gnutls_error(rv);
  rv = gnutls_certificate_set_x509_key_file2(cred, cert_file.c_str(), key_file.c_str(),
                                             GNUTLS_X509_FMT_PEM, nullptr, 0);
  gnutls_certificate_free_credentials(cred);
  if (rv < 0) return "GnuTLS (HTTP/3) cannot use this certificate and key: " + gnutls_error(rv);
  return {};
}

}  // namespace weir::quic
