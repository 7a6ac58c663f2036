#pragma once
// Helpers shared by the files of net/tls (not part of its interface).
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace weir::net::tls::detail {

// Read-ahead buffer of a session: two full records come in one recv. Released while idle
// (SSL_MODE_RELEASE_BUFFERS).
constexpr size_t kTlsReadBufferLen =
    2 * (SSL3_RT_MAX_PLAIN_LENGTH + SSL3_RT_MAX_ENCRYPTED_OVERHEAD + SSL3_RT_HEADER_LENGTH);
constexpr long kTlsModes =
    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

// The reason of the oldest error in this thread's OpenSSL queue ("no start line", "No such file
// or directory"…), "unknown error" if it is empty. Clears the queue.
// `with_data`: with the error's data text, e.g. "received error (code=404, ...)".
std::string openssl_reason(bool with_data = false);
// Every error of the queue, as ERR_error_string_n writes them, joined by "; ". Clears the queue.
std::string openssl_errors();

// An IPv4 or IPv6 address literal (no brackets).
bool is_ip_literal(const std::string& host);

// The DNS names a certificate answers for, lower-cased: its SAN dNSName entries, or its subject
// CN when it has none.
std::vector<std::string> certificate_names(X509* cert);
// `name` (lower-cased, no trailing dot) against a certificate name: exact, or "*.rest" matching
// exactly one more label on the left.
bool name_matches(std::string_view pattern, std::string_view name);

}  // namespace weir::net::tls::detail
