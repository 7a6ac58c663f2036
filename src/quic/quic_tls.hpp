#pragma once
// TLS for QUIC: GnuTLS, through ngtcp2's GnuTLS glue (Debian's OpenSSL 3.0 has no QUIC API).
// This file is the only place that knows: certificates load from the same PEM files the TCP
// listener's OpenSSL context uses (every `tls.certificates` entry; GnuTLS picks the one whose
// names match the client's SNI, else the first), TLS 1.3 only (QUIC requires it), ALPN h3.
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <memory>
#include <string>

namespace weir::config {
struct ListenerTls;
}

namespace weir::quic {

class TlsContext {
 public:
  // Null with `error` (naming the file) when a certificate or key cannot be loaded.
  static std::unique_ptr<TlsContext> load(const config::ListenerTls& tls, std::string& error);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A server session for one QUIC connection, wired to ngtcp2 through `ref` (which must outlive
  // it). Null with `error` on failure.
  gnutls_session_t new_session(ngtcp2_crypto_conn_ref* ref, std::string& error) const;

 private:
  TlsContext() = default;
  gnutls_certificate_credentials_t cred_ = nullptr;
  gnutls_priority_t prio_ = nullptr;
  // Session tickets (resumption: a returning client skips the certificate exchange): one key
  // per context, so shared by the workers and replaced by each reload. No 0-RTT.
  gnutls_datum_t ticket_key_{nullptr, 0};
};

// `weir check` and (re)load for an http3 listener: can GnuTLS use this certificate and key?
// Empty if so, else why not.
std::string check_pair(const std::string& cert_file, const std::string& key_file);

}  // namespace weir::quic
