#pragma once
// What ocsp.cpp (checking) and ocsp_fetch.cpp (fetching, the fetcher thread) share: owners of
// OpenSSL's OCSP objects and a certificate's fingerprint for log lines.
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace weir::net::tls::ocsp_detail {

constexpr size_t kMaxResponse = 64 * 1024;  // an OCSP response is a few KiB at most

struct OcspResponseFree {
  void operator()(OCSP_RESPONSE* r) const { OCSP_RESPONSE_free(r); }
};
struct BasicRespFree {
  void operator()(OCSP_BASICRESP* r) const { OCSP_BASICRESP_free(r); }
};
struct CertIdFree {
  void operator()(OCSP_CERTID* c) const { OCSP_CERTID_free(c); }
};
struct RequestFree {
  void operator()(OCSP_REQUEST* r) const { OCSP_REQUEST_free(r); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StackFree {  // the stack only: its certificates belong to someone else
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};
struct HttpCtxFree {
  void operator()(OSSL_HTTP_REQ_CTX* c) const { OSSL_HTTP_REQ_CTX_free(c); }
};
struct OpensslFree {
  void operator()(char* p) const { OPENSSL_free(p); }
};
using ResponsePtr = std::unique_ptr<OCSP_RESPONSE, OcspResponseFree>;
using BasicPtr = std::unique_ptr<OCSP_BASICRESP, BasicRespFree>;
using CertIdPtr = std::unique_ptr<OCSP_CERTID, CertIdFree>;
using RequestPtr = std::unique_ptr<OCSP_REQUEST, RequestFree>;
using StorePtr = std::unique_ptr<X509_STORE, StoreFree>;
using StackPtr = std::unique_ptr<STACK_OF(X509), StackFree>;
using HttpCtxPtr = std::unique_ptr<OSSL_HTTP_REQ_CTX, HttpCtxFree>;
using OsslString = std::unique_ptr<char, OpensslFree>;

// SHA-256 of the certificate, in hex ("-" if none): names a certificate in log lines.
std::string fingerprint(X509* x);

}  // namespace weir::net::tls::ocsp_detail
