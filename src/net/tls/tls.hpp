#pragma once
// TLS on the worker's own reactor (OpenSSL 3): contexts built from the config, and the
// Transport that reads and writes a non-blocking socket through a TLS session.
//
// Contexts are immutable once built and shared by all workers (SSL_CTX is thread-safe for
// creating sessions); a reload builds new ones. Ticket keys live apart from the contexts so
// that sessions resume across reloads and across workers.
#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "config/loader.hpp"
#include "net/stream.hpp"

namespace weir::net::tls {

// Session-ticket keys shared by every listener and worker of the process. rotate() makes a new
// key current; the previous one still decrypts (resumes) until the next rotation.
class TicketKeys {
 public:
  TicketKeys();
  void rotate();
  uint64_t rotations() const;

  // For the OpenSSL ticket callback: fills name/iv and keys the cipher and MAC (encrypt = 1),
  // or finds the key by name (encrypt = 0). Returns OpenSSL's callback result.
  int callback(unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
               EVP_MAC_CTX* mac, int encrypt);

 private:
  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
  };
  mutable std::mutex mu_;  // rotation is rare; a handshake holds it for a copy of 80 bytes
  Key current_{};
  Key previous_{};
  bool has_previous_ = false;
  uint64_t rotations_ = 0;
};

// Server side of a TLS listener: one SSL_CTX per certificate, chosen by SNI against each
// certificate's own DNS names (SAN; CN only when there is no SAN), exact or "*." wildcard (one
// label); the first certificate answers an unknown or missing SNI. A certificate with `ocsp:`
// staples its response (net/tls/ocsp.hpp) to clients that ask (status_request): the file's,
// read and checked by build(), or the one OcspFetcher::global() keeps fresh.
class ServerContext {
 public:
  // Paths are already resolved by the config loader. On failure returns null and sets `error`
  // (what, which file, OpenSSL's reason). Sessions keep what they need alive: the context may
  // be dropped (reload) while its connections go on.
  static std::shared_ptr<ServerContext> build(const config::ListenerTls& cfg,
                                              std::shared_ptr<TicketKeys> keys, std::string& error);
  ~ServerContext();
  SSL* new_session() const;  // accept state, ready for a non-blocking socket

  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;
  struct Impl;

 private:
  ServerContext() = default;
  std::unique_ptr<Impl> impl_;
};

// Client side towards a server with `tls:`: verifies the server's chain against `ca` (or the
// system's store) and its name (sni, or the address's host; IP addresses verified as IPs).
class ClientContext {
 public:
  // `alpn`: the protocols offered, in ALPN wire format ("\x08http/1.1" by default).
  static std::shared_ptr<ClientContext> build(const config::ServerTls& cfg,
                                              const std::string& server_host, std::string& error,
                                              std::string_view alpn = {});
  ~ClientContext();
  SSL* new_session() const;  // connect state, SNI and the name to verify set

  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;
  struct Impl;

 private:
  ClientContext() = default;
  std::unique_ptr<Impl> impl_;
};

// A TLS session over a non-blocking socket. The handshake runs inside the first read()/write()
// calls (no thread, no blocking). Reads and writes follow Transport's conventions.
class TlsTransport final : public Transport {
 public:
  explicit TlsTransport(SSL* ssl);  // takes ownership
  ~TlsTransport() override;

  ssize_t read(int fd, char* buf, size_t len) override;
  ssize_t write(int fd, const char* buf, size_t len) override;
  bool drained() const override;
  bool needs_write_for_read() const override { return true; }
  void shutdown(int fd) override;

  bool handshake_done() const override;
  std::string_view alpn() const override;  // the negotiated protocol, "" if none
  std::string_view version() const override;
  bool resumed() const;
  // Why the last kIoError happened (handshake failure, verify error…), for logs.
  std::string_view last_error() const override { return last_error_; }
  // The last write() returned kWouldBlock because OpenSSL must read first (handshake): a
  // read-readiness edge means "write again" too.
  bool write_needs_read() const { return write_needs_read_; }
  SSL* native_handle() const { return ssl_; }  // e.g. for the peer certificate

  TlsTransport(const TlsTransport&) = delete;  // the BIO points at this object
  TlsTransport& operator=(const TlsTransport&) = delete;

 private:
  friend struct TransportBio;  // the custom BIO (tls_transport.cpp) reads/writes fd_
  ssize_t fail(int rc);

  SSL* ssl_;
  std::string last_error_;
  bool drained_ = false;  // the last raw recv was short, hit EAGAIN or EOF
  int fd_ = -1;           // the socket of the current call (the BIO reads and writes it)
  bool eof_ = false;      // the raw socket returned EOF
  int raw_errno_ = 0;     // errno of the last failed raw recv/send
  bool failed_ = false;   // a fatal error: no close_notify
  bool write_needs_read_ = false;
};

// `weir check` and (re)load: every listener certificate and key, every server `tls.ca`.
// Errors: a missing/unreadable file, no certificate or key in it, a key that does not match its
// certificate, an expired (or not yet valid) certificate. Warning: expiring within 14 days.
// Each diagnostic points at the `cert:` key (servers: the `tls:` key). `ocsp:` (at its key):
// no issuer in the certificate's file, no http responder to fetch from, a response file that is
// unreadable, not a successful response, not for this certificate or expired are errors; a
// revoked or unknown status is a warning.
std::vector<config::Diagnostic> check_certificates(const config::Config& cfg,
                                                   std::chrono::system_clock::time_point now);

}  // namespace weir::net::tls
