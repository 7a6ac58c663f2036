// check_certificates: `weir check` (and a reload) loads every certificate, key and CA file.
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "net/tls/internal.hpp"
#include "quic/quic_tls.hpp"
#include "net/tls/ocsp.hpp"
#include "net/tls/tls.hpp"
#include "quic/quic_tls.hpp"

namespace weir::net::tls {
namespace {

using config::Diagnostic;
using detail::BioPtr;
using detail::PkeyPtr;
using detail::X509Ptr;

constexpr time_t kDay = 24 * 3600;
constexpr time_t kWarnBefore = 14 * kDay;

int no_password(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
  return 0;
}

// The whole file, or false with `err` = errno.
bool read_file(const std::string& path, std::string& data, int& err) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    err = errno;
    return false;
  }
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    data.append(buf, n);
  bool ok = !std::ferror(f);
  err = errno;
  std::fclose(f);
  return ok;
}

BioPtr mem_bio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// The time as seconds since the epoch and as "YYYY-MM-DD".
bool asn1_time(const ASN1_TIME* t, time_t& when, std::string& day) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return false;
  when = timegm(&tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  day = buf;
  return true;
}

class Checker {
 public:
  Checker(std::vector<Diagnostic>& out, time_t now) : out_(out), now_(now) {}

  void certificate(const config::TlsCertificate& c) {
    size_t before = errors();
    X509Ptr cert = load_cert(c);
    PkeyPtr key = load_key(c);
    if (cert && key && X509_check_private_key(cert.get(), key.get()) != 1) {
      ERR_clear_error();
      error(c.pos, "key " + c.key + " does not match certificate " + c.cert);
    }
    if (cert) dates(c, cert.get());
    if (errors() == before && cert && key) {
      // What the listener itself will do (chain, security level…), for what the above misses.
      // OCSP is checked below, at its own key (and a check fetches nothing).
      config::ListenerTls one;
      one.certificates.push_back(c);
      one.certificates.back().ocsp.reset();
      std::string why;
      if (!ServerContext::build(one, nullptr, why)) error(c.pos, why);
    }
    if (cert) ocsp(c);
  }

  // `ocsp:` (errors at its key): the issuer must be in the certificate's file; `fetch` needs an
  // http responder URL in the certificate; a `file` must hold a current response for this
  // certificate (a revoked or unknown status is a warning: it is the truth, stapled as such).
  void ocsp(const config::TlsCertificate& c) {
    if (!c.ocsp || (c.ocsp->file.empty() && !c.ocsp->fetch)) return;
    const config::SourcePos& at = c.ocsp->pos;
    OcspTarget target;
    std::string why;
    if (!OcspTarget::from_file(c.cert, target, why)) return;  // reported at `cert:` already
    if (!target.issuer) {
      error(at, "OCSP: the issuer of certificate " + c.cert +
                    " is not in that file (append the issuer's certificate after it: OCSP "
                    "responses are requested and checked with it)");
      return;
    }
    if (c.ocsp->fetch) {
      std::string url;
      if (!target.responder_url(url, why)) error(at, "OCSP: " + why);
      return;
    }
    OcspResponsePtr r = load_ocsp_file(c.ocsp->file, target, now_, why);
    if (!r) {
      error(at, why);
    } else if (r->status == V_OCSP_CERTSTATUS_REVOKED) {
      warning(at, "OCSP response " + c.ocsp->file + " says certificate " + c.cert +
                      " is revoked (since " + ocsp_time(r->revoked_at) + ")");
    } else if (r->status != V_OCSP_CERTSTATUS_GOOD) {
      warning(at, "OCSP response " + c.ocsp->file + " gives the status of certificate " + c.cert +
                      " as unknown");
    }
  }

  void ca(const config::ServerTls& tls) {
    std::string data;
    int err = 0;
    if (!read_file(tls.ca, data, err)) {
      error(tls.pos, "cannot load CA file " + tls.ca + ": " + std::strerror(err));
      return;
    }
    X509_STORE* store = X509_STORE_new();
    if (!store || X509_STORE_load_file(store, tls.ca.c_str()) != 1)
      error(tls.pos, "cannot load CA file " + tls.ca + ": " + detail::openssl_reason());
    X509_STORE_free(store);
  }

 private:
  size_t errors() const {
    size_t n = 0;
    for (const Diagnostic& d : out_)
      n += d.warning ? 0 : 1;
    return n;
  }
  void error(const config::SourcePos& pos, std::string msg) {
    out_.push_back(Diagnostic{pos, std::move(msg), false});
  }
  void warning(const config::SourcePos& pos, std::string msg) {
    out_.push_back(Diagnostic{pos, std::move(msg), true});
  }

  X509Ptr load_cert(const config::TlsCertificate& c) {
    std::string data;
    int err = 0;
    if (!read_file(c.cert, data, err)) {
      error(c.pos, "cannot read certificate " + c.cert + ": " + std::strerror(err));
      return nullptr;
    }
    BioPtr bio = mem_bio(data);
    X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr) : nullptr);
    ERR_clear_error();
    if (!cert) error(c.pos, "no PEM certificate in " + c.cert);
    return cert;
  }

  PkeyPtr load_key(const config::TlsCertificate& c) {
    std::string data;
    int err = 0;
    if (!read_file(c.key, data, err)) {
      error(c.pos, "cannot read key " + c.key + ": " + std::strerror(err));
      return nullptr;
    }
    BioPtr bio = mem_bio(data);
    PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr) : nullptr);
    ERR_clear_error();
    if (!key) {
      if (data.find("ENCRYPTED") != std::string::npos)
        error(c.pos, "key " + c.key + " is encrypted (weir needs it without a passphrase)");
      else
        error(c.pos, "no PEM private key in " + c.key);
    }
    return key;
  }

  void dates(const config::TlsCertificate& c, X509* cert) {
    time_t not_before = 0, not_after = 0;
    std::string from, until;
    if (!asn1_time(X509_get0_notBefore(cert), not_before, from) ||
        !asn1_time(X509_get0_notAfter(cert), not_after, until)) {
      error(c.pos, "certificate " + c.cert + " has invalid validity dates");
      return;
    }
    if (not_after < now_) {
      error(c.pos, "certificate " + c.cert + " expired on " + until);
    } else if (not_before > now_) {
      error(c.pos, "certificate " + c.cert + " is not valid before " + from);
    } else if (not_after - now_ < kWarnBefore) {
      long days = static_cast<long>((not_after - now_ + kDay - 1) / kDay);
      warning(c.pos, "certificate " + c.cert + " expires on " + until + " (in " +
                         std::to_string(days) + (days == 1 ? " day)" : " days)"));
    }
  }

  std::vector<Diagnostic>& out_;
  time_t now_;
};

}  // namespace

std::vector<config::Diagnostic> check_certificates(const config::Config& cfg,
                                                   std::chrono::system_clock::time_point now) {
  std::vector<Diagnostic> out;
  Checker check(out, std::chrono::system_clock::to_time_t(now));
  for (const config::Listener& l : cfg.listeners) {
    if (!l.tls) continue;
    for (const config::TlsCertificate& c : l.tls->certificates) {
      size_t before = out.size();
      check.certificate(c);
      // HTTP/3 loads the same files with GnuTLS (src/quic/quic_tls.cpp): checked here once.
      if (l.http3 && out.size() == before) {
        std::string why = quic::check_pair(c.cert, c.key);
        if (!why.empty()) out.push_back(Diagnostic{c.pos, why + " (" + c.cert + ")", false});
      }
    }
  }
  for (const config::Backend& b : cfg.backends) {
    for (const config::Server& s : b.servers) {
      if (s.tls && !s.tls->ca.empty()) check.ca(*s.tls);
    }
  }
  return out;
}

}  // namespace weir::net::tls
