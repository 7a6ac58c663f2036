// OCSP stapling: what a response says and whether it may be stapled (fetching: ocsp_fetch.cpp).
#include "net/tls/ocsp.hpp"

#include "net/tls/ocsp_internal.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/log.hpp"
#include "net/address.hpp"

namespace weir::net::tls {
namespace {

using detail::BioPtr;
using detail::X509Ptr;
using std::chrono::milliseconds;

constexpr time_t kClockSkew = 300;        // a thisUpdate this far ahead is still fine
constexpr size_t kMaxFile = 1024 * 1024;  // an OCSP response file, with room to spare
using namespace ocsp_detail;              // NOLINT(google-build-using-namespace)

X509Ptr up_ref(X509* x) {
  if (x) X509_up_ref(x);
  return X509Ptr(x);
}

bool to_time(const ASN1_GENERALIZEDTIME* t, time_t& out) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return false;
  out = timegm(&tm);
  return true;
}

std::string serial_hex(const ASN1_INTEGER* serial) {
  BIGNUM* bn = serial ? ASN1_INTEGER_to_BN(serial, nullptr) : nullptr;
  char* hex = bn ? BN_bn2hex(bn) : nullptr;
  std::string out = hex ? hex : "?";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

std::string hex(const unsigned char* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

// The first certificate of `chain` that issued `leaf`.
X509Ptr find_issuer(X509* leaf, const std::vector<X509Ptr>& chain) {
  for (const X509Ptr& c : chain) {
    if (X509_check_issued(c.get(), leaf) == X509_V_OK) return up_ref(c.get());
  }
  return nullptr;
}

// The single response of `bs` about `target`, matched by the hash algorithm each one uses.
OCSP_SINGLERESP* find_single(OCSP_BASICRESP* bs, const OcspTarget& target, std::string& other) {
  int n = OCSP_resp_count(bs);
  for (int i = 0; i < n; ++i) {
    OCSP_SINGLERESP* single = OCSP_resp_get0(bs, i);
    const OCSP_CERTID* cid = OCSP_SINGLERESP_get0_id(single);
    ASN1_OBJECT* md_oid = nullptr;
    ASN1_INTEGER* serial = nullptr;
    if (!cid ||
        OCSP_id_get0_info(nullptr, &md_oid, nullptr, &serial, const_cast<OCSP_CERTID*>(cid)) != 1)
      continue;
    if (other.empty()) other = serial_hex(serial);
    const EVP_MD* md = EVP_get_digestbyobj(md_oid);
    if (!md) continue;
    CertIdPtr mine(OCSP_cert_to_id(md, target.leaf.get(), target.issuer.get()));
    if (mine && OCSP_id_cmp(mine.get(), cid) == 0) return single;
  }
  ERR_clear_error();
  return nullptr;
}

bool read_whole_file(const std::string& path, std::string& data, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    error = std::strerror(errno);
    return false;
  }
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    data.append(buf, n);
    if (data.size() > kMaxFile) break;
  }
  bool ok = !std::ferror(f);
  if (!ok) error = std::strerror(errno);
  std::fclose(f);
  return ok;
}

}  // namespace

std::string ocsp_detail::fingerprint(X509* x) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!x || X509_digest(x, EVP_sha256(), md, &n) != 1) return "-";
  return hex(md, n);
}

std::string_view ocsp_status_name(int status) {
  switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:
      return "good";
    case V_OCSP_CERTSTATUS_REVOKED:
      return "revoked";
    default:
      return "unknown";
  }
}

std::string ocsp_time(time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// --- OcspTarget ------------------------------------------------------------------------------

bool OcspTarget::from_ctx(SSL_CTX* ctx, const std::string& name, OcspTarget& out,
                          std::string& error) {
  X509* leaf = SSL_CTX_get0_certificate(ctx);
  if (!leaf) {
    error = "no certificate in " + name;
    return false;
  }
  out = OcspTarget{};
  out.name = name;
  out.leaf = up_ref(leaf);
  STACK_OF(X509)* chain = nullptr;
  if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain) {
    for (int i = 0; i < sk_X509_num(chain); ++i)
      out.chain.push_back(up_ref(sk_X509_value(chain, i)));
  }
  out.issuer = find_issuer(leaf, out.chain);
  return true;
}

bool OcspTarget::from_file(const std::string& path, OcspTarget& out, std::string& error) {
  std::string data;
  if (!read_whole_file(path, data, error)) {
    error = "cannot read certificate " + path + ": " + error;
    return false;
  }
  out = OcspTarget{};
  out.name = path;
  BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  while (bio) {
    X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!x) break;
    if (!out.leaf)
      out.leaf = std::move(x);
    else
      out.chain.push_back(std::move(x));
  }
  ERR_clear_error();
  if (!out.leaf) {
    error = "no PEM certificate in " + path;
    return false;
  }
  out.issuer = find_issuer(out.leaf.get(), out.chain);
  return true;
}

bool OcspTarget::responder_url(std::string& url, std::string& error) const {
  STACK_OF(OPENSSL_STRING)* urls = leaf ? X509_get1_ocsp(leaf.get()) : nullptr;
  std::string first;
  url.clear();
  for (int i = 0; urls && i < sk_OPENSSL_STRING_num(urls); ++i) {
    std::string u = sk_OPENSSL_STRING_value(urls, i);
    if (first.empty()) first = u;
    if (url.empty() && u.size() > 7 && strncasecmp(u.c_str(), "http://", 7) == 0) url = u;
  }
  X509_email_free(urls);
  if (!url.empty()) return true;
  if (first.empty()) {
    error = "certificate " + name +
            " names no OCSP responder (Authority Information Access) to fetch from";
  } else {
    error = "the OCSP responder of certificate " + name + " is " + first +
            ": only http responders are supported";
  }
  return false;
}

// --- checking ------------------------------------------------------------------------------

OcspResponsePtr check_ocsp_response(std::string_view der, const OcspTarget& target, time_t now,
                                    std::string& error) {
  if (der.empty()) {
    error = "is empty";
    return nullptr;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  ResponsePtr resp(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  ERR_clear_error();
  if (!resp) {
    error = "is not a DER OCSP response";
    return nullptr;
  }
  if (p != end) {
    error =
        "is not a DER OCSP response (" + std::to_string(end - p) + " bytes follow the response)";
    return nullptr;
  }
  int rstatus = OCSP_response_status(resp.get());
  if (rstatus != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    error = std::string("is not a successful OCSP response (the responder said \"") +
            OCSP_response_status_str(rstatus) + "\")";
    return nullptr;
  }
  BasicPtr bs(OCSP_response_get1_basic(resp.get()));
  if (!bs) {
    ERR_clear_error();
    error = "holds no basic OCSP response";
    return nullptr;
  }
  if (!target.leaf) {
    error = "cannot be checked: no certificate";
    return nullptr;
  }
  if (!target.issuer) {
    error = "cannot be checked: the issuer of " + target.name +
            " is not in that file (append the issuer's certificate after it)";
    return nullptr;
  }
  std::string other;
  OCSP_SINGLERESP* single = find_single(bs.get(), target, other);
  if (!single) {
    error = "is for another certificate (serial " + (other.empty() ? "?" : other) + "), not for " +
            target.name + " (serial " + serial_hex(X509_get0_serialNumber(target.leaf.get())) + ")";
    return nullptr;
  }
  // Signed by the issuer itself or by a responder certificate it issued for OCSP signing: the
  // issuer is the trust anchor (an intermediate CA is enough), the PEM's chain and the response's
  // own certificates help build the signer's chain.
  StorePtr store(X509_STORE_new());
  StackPtr certs(sk_X509_new_null());
  if (!store || !certs || X509_STORE_add_cert(store.get(), target.issuer.get()) != 1) {
    error = "cannot be checked: " + detail::openssl_reason();
    return nullptr;
  }
  X509_VERIFY_PARAM* param = X509_STORE_get0_param(store.get());
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  X509_VERIFY_PARAM_set_time(param, now);
  for (const X509Ptr& c : target.chain)
    sk_X509_push(certs.get(), c.get());
  if (OCSP_basic_verify(bs.get(), certs.get(), store.get(), 0) <= 0) {
    error = "is not signed by the issuer of " + target.name + " or a responder it delegated to (" +
            detail::openssl_reason() + ")";
    return nullptr;
  }
  int reason = 0;
  ASN1_GENERALIZEDTIME *revoked = nullptr, *this_upd = nullptr, *next_upd = nullptr;
  auto out = std::make_shared<OcspResponse>();
  out->status = OCSP_single_get0_status(single, &reason, &revoked, &this_upd, &next_upd);
  if (out->status < 0 || !to_time(this_upd, out->this_update)) {
    ERR_clear_error();
    error = "has an invalid status or thisUpdate";
    return nullptr;
  }
  if (next_upd && !to_time(next_upd, out->next_update)) {
    error = "has an invalid nextUpdate";
    return nullptr;
  }
  if (revoked) to_time(revoked, out->revoked_at);
  if (out->this_update > now + kClockSkew) {
    error = "is not valid before " + ocsp_time(out->this_update) + " (its thisUpdate)";
    return nullptr;
  }
  if (out->next_update != 0 && out->next_update <= now) {
    error = "expired on " + ocsp_time(out->next_update) +
            " (its nextUpdate): a stale response is never stapled";
    return nullptr;
  }
  if (out->next_update != 0 && out->next_update < out->this_update) {
    error = "has a nextUpdate before its thisUpdate";
    return nullptr;
  }
  out->der.assign(der.data(), der.size());
  return out;
}

OcspResponsePtr load_ocsp_file(const std::string& path, const OcspTarget& target, time_t now,
                               std::string& error) {
  std::string data, why;
  if (!read_whole_file(path, data, why)) {
    error = "cannot read OCSP response " + path + ": " + why;
    return nullptr;
  }
  OcspResponsePtr out = check_ocsp_response(data, target, now, why);
  if (!out) error = "OCSP response " + path + " " + why;
  return out;
}

}  // namespace weir::net::tls
