// ServerContext: one SSL_CTX per certificate, SNI and ALPN selection, shared ticket keys,
// OCSP stapling.
#include <openssl/err.h>
#include <openssl/x509.h>

#include <cctype>
#include <cstring>
#include <ctime>

#include "net/tls/internal.hpp"
#include "net/tls/ocsp.hpp"
#include "net/tls/tls.hpp"

namespace weir::net::tls {
namespace {

using detail::CtxPtr;
using detail::openssl_reason;

// TLS 1.2: forward-secret AEAD suites only. TLS 1.3 keeps OpenSSL's default suites.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kGroups = "X25519:P-256:P-384";
constexpr unsigned char kSessionIdContext[] = "weir";

struct Cert {
  CtxPtr ctx;
  std::vector<std::string> names;  // lower-cased; "*.example.com" for wildcards
  std::shared_ptr<OcspSlot> ocsp;  // the response to staple (`ocsp:`), else null
};

// What the handshake callbacks need. Every session holds a reference (SSL ex_data), so a
// context dropped by a reload stays valid for the handshakes still running on it.
struct State {
  std::vector<Cert> certs;  // the first answers an unknown or missing SNI
  std::vector<std::string> alpn;
  std::shared_ptr<TicketKeys> keys;
};
using StateRef = std::shared_ptr<const State>;

void free_state(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/, long /*argl*/,
                void* /*argp*/) {
  delete static_cast<StateRef*>(ptr);
}

int state_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_state);
  return index;
}

const State* state_of(SSL* ssl) {
  auto* ref = static_cast<StateRef*>(SSL_get_ex_data(ssl, state_index()));
  return ref ? ref->get() : nullptr;
}

const Cert* find_cert(const State& st, const std::string& name) {
  for (bool wildcard : {false, true}) {
    for (const Cert& c : st.certs) {
      for (const std::string& pattern : c.names) {
        if ((pattern.rfind("*.", 0) == 0) == wildcard && detail::name_matches(pattern, name))
          return &c;
      }
    }
  }
  return nullptr;
}

int on_servername(SSL* ssl, int* /*alert*/, void* /*arg*/) {
  const State* st = state_of(ssl);
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!st || !sni) return SSL_TLSEXT_ERR_NOACK;
  std::string name(sni);
  if (!name.empty() && name.back() == '.') name.pop_back();
  for (char& c : name)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const Cert* cert = find_cert(*st, name);
  if (!cert) return SSL_TLSEXT_ERR_NOACK;  // the default certificate answers
  if (cert->ctx.get() != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, cert->ctx.get());
  return SSL_TLSEXT_ERR_OK;
}

// Our preference order; no common protocol: no ALPN at all (HTTP/1.1 is assumed).
int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
            unsigned int inlen, void* /*arg*/) {
  const State* st = state_of(ssl);
  if (!st) return SSL_TLSEXT_ERR_NOACK;
  for (const std::string& proto : st->alpn) {
    for (unsigned int i = 0; i < inlen;) {
      unsigned int len = in[i];
      if (i + 1 + len > inlen) break;
      if (len == proto.size() && std::memcmp(in + i + 1, proto.data(), len) == 0) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

int on_ticket(SSL* ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
              EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
  const State* st = state_of(ssl);
  if (!st || !st->keys) return 0;  // no ticket issued / not resumed
  return st->keys->callback(key_name, iv, cipher, mac, encrypt);
}

// The client asked for the certificate's status (status_request): staple the current response
// of the certificate this SSL now uses (the status callback and its argument are those of the
// SNI-selected context), unless there is none or it is past its nextUpdate.
int on_status(SSL* ssl, void* arg) {
  const auto* slot = static_cast<const OcspSlot*>(arg);
  OcspResponsePtr r = slot ? slot->get() : nullptr;
  if (!r || !r->fresh(std::time(nullptr))) return SSL_TLSEXT_ERR_NOACK;
  void* copy = OPENSSL_memdup(r->der.data(), r->der.size());
  if (!copy) return SSL_TLSEXT_ERR_NOACK;
  // OpenSSL takes the copy and frees it with the session.
  if (SSL_set_tlsext_status_ocsp_resp(ssl, static_cast<unsigned char*>(copy),
                                      static_cast<long>(r->der.size())) != 1) {
    OPENSSL_free(copy);
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}

// `ocsp:` of one certificate: the file's response, checked now, or the fetcher's slot for it.
// Null `slot` and true when the certificate staples nothing.
bool setup_ocsp(const config::TlsCertificate& cert, SSL_CTX* ctx, std::shared_ptr<OcspSlot>& slot,
                std::string& error) {
  if (!cert.ocsp || (cert.ocsp->file.empty() && !cert.ocsp->fetch)) return true;
  OcspTarget target;
  if (!OcspTarget::from_ctx(ctx, cert.cert, target, error)) return false;
  if (!target.issuer) {
    error = "OCSP: the issuer of certificate " + cert.cert +
            " is not in that file (append the issuer's certificate after it)";
    return false;
  }
  if (!cert.ocsp->file.empty()) {
    OcspResponsePtr r = load_ocsp_file(cert.ocsp->file, target, std::time(nullptr), error);
    if (!r) return false;
    slot = std::make_shared<OcspSlot>();
    slot->set(std::move(r));
    return true;
  }
  std::string url, why;
  if (!target.responder_url(url, why)) {
    error = "OCSP: " + why;
    return false;
  }
  slot = OcspFetcher::global().watch(std::move(target), url);
  return true;
}

int no_password(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
  return 0;
}

CtxPtr build_ctx(const config::ListenerTls& cfg, const config::TlsCertificate& cert, bool tickets,
                 std::string& error) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    error = "cannot create a TLS context: " + openssl_reason();
    return nullptr;
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_default_passwd_cb(c, no_password);  // never prompt on the terminal
  if (SSL_CTX_use_certificate_chain_file(c, cert.cert.c_str()) != 1) {
    error = "cannot load certificate " + cert.cert + ": " + openssl_reason();
    return nullptr;
  }
  if (SSL_CTX_use_PrivateKey_file(c, cert.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 && (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
                                           ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH)) {
      ERR_clear_error();
      error = "key " + cert.key + " does not match certificate " + cert.cert;
    } else {
      error = "cannot load key " + cert.key + ": " + openssl_reason();
    }
    return nullptr;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    ERR_clear_error();
    error = "key " + cert.key + " does not match certificate " + cert.cert;
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(c, cfg.min_version >= 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  if (SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1 || SSL_CTX_set1_groups_list(c, kGroups) != 1) {
    error = "cannot set the TLS ciphers: " + openssl_reason();
    return nullptr;
  }
  uint64_t options =
      SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE;
#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
  options |= SSL_OP_NO_CLIENT_RENEGOTIATION;
#endif
  SSL_CTX_set_options(c, options);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);  // resumption by tickets only
  SSL_CTX_set_session_id_context(c, kSessionIdContext, sizeof kSessionIdContext - 1);
  SSL_CTX_set_read_ahead(c, 1);
  SSL_CTX_set_default_read_buffer_len(c, detail::kTlsReadBufferLen);
  SSL_CTX_set_mode(c, detail::kTlsModes);
  SSL_CTX_set_tlsext_servername_callback(c, on_servername);
  SSL_CTX_set_alpn_select_cb(c, on_alpn, nullptr);
  if (tickets) SSL_CTX_set_tlsext_ticket_key_evp_cb(c, on_ticket);
  return ctx;
}

}  // namespace

struct ServerContext::Impl {
  std::shared_ptr<State> state;
};

std::shared_ptr<ServerContext> ServerContext::build(const config::ListenerTls& cfg,
                                                    std::shared_ptr<TicketKeys> keys,
                                                    std::string& error) {
  if (cfg.certificates.empty()) {
    error = "no certificate for the TLS listener";
    return nullptr;
  }
  auto state = std::make_shared<State>();
  state->keys = std::move(keys);
  for (const std::string& proto : cfg.alpn) {
    if (!proto.empty() && proto.size() <= 255) state->alpn.push_back(proto);
  }
  for (const config::TlsCertificate& cert : cfg.certificates) {
    CtxPtr ctx = build_ctx(cfg, cert, state->keys != nullptr, error);
    if (!ctx) return nullptr;
    std::shared_ptr<OcspSlot> ocsp;
    if (!setup_ocsp(cert, ctx.get(), ocsp, error)) return nullptr;
    if (ocsp) {
      SSL_CTX_set_tlsext_status_cb(ctx.get(), on_status);
      SSL_CTX_set_tlsext_status_arg(ctx.get(), ocsp.get());
    }
    auto names = detail::certificate_names(SSL_CTX_get0_certificate(ctx.get()));
    state->certs.push_back(Cert{std::move(ctx), std::move(names), std::move(ocsp)});
  }
  std::shared_ptr<ServerContext> out(new ServerContext());
  out->impl_ = std::make_unique<Impl>();
  out->impl_->state = std::move(state);
  return out;
}

ServerContext::~ServerContext() = default;

SSL* ServerContext::new_session() const {
  SSL* ssl = SSL_new(impl_->state->certs.front().ctx.get());
  if (!ssl) return nullptr;
  auto* ref = new StateRef(impl_->state);
  if (SSL_set_ex_data(ssl, state_index(), ref) != 1) {
    delete ref;
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return ssl;
}

}  // namespace weir::net::tls
