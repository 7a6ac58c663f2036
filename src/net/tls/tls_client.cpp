// ClientContext: TLS towards a server (re-encryption), verified against a CA and a name.
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "net/tls/internal.hpp"
#include "net/tls/tls.hpp"

namespace weir::net::tls {

using detail::CtxPtr;
using detail::openssl_reason;

struct ClientContext::Impl {
  CtxPtr ctx;
  std::string name;  // sent as SNI (unless an IP address) and verified
  bool ip = false;
  bool verify = true;
};

std::shared_ptr<ClientContext> ClientContext::build(const config::ServerTls& cfg,
                                                    const std::string& server_host,
                                                    std::string& error, std::string_view alpn) {
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    error = "cannot create a TLS context: " + openssl_reason();
    return nullptr;
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_read_ahead(c, 1);
  SSL_CTX_set_default_read_buffer_len(c, detail::kTlsReadBufferLen);
  SSL_CTX_set_mode(c, detail::kTlsModes);
  if (cfg.verify) {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    if (!cfg.ca.empty()) {
      if (SSL_CTX_load_verify_locations(c, cfg.ca.c_str(), nullptr) != 1) {
        error = "cannot load CA file " + cfg.ca + ": " + openssl_reason();
        return nullptr;
      }
    } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
      error = "cannot load the system's trusted certificates: " + openssl_reason();
      return nullptr;
    }
  } else {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
  }
  if (alpn.empty()) alpn = "\x08http/1.1";
  if (SSL_CTX_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(alpn.data()),
                              static_cast<unsigned>(alpn.size())) != 0) {  // 0 is success here
    error = "cannot set ALPN: " + openssl_reason();
    return nullptr;
  }
  std::shared_ptr<ClientContext> out(new ClientContext());
  out->impl_ = std::make_unique<Impl>();
  out->impl_->ctx = std::move(ctx);
  out->impl_->name = cfg.sni.empty() ? server_host : cfg.sni;
  out->impl_->ip = detail::is_ip_literal(out->impl_->name);
  out->impl_->verify = cfg.verify;
  return out;
}

ClientContext::~ClientContext() = default;

SSL* ClientContext::new_session() const {
  SSL* ssl = SSL_new(impl_->ctx.get());
  if (!ssl) return nullptr;
  SSL_set_connect_state(ssl);
  const std::string& name = impl_->name;
  bool ok = true;
  if (!impl_->ip && !name.empty()) ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
  if (ok && impl_->verify && !name.empty()) {
    if (impl_->ip) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1;
    } else {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl, name.c_str()) == 1;
    }
  }
  if (!ok) {
    ERR_clear_error();
    SSL_free(ssl);
    return nullptr;
  }
  return ssl;
}

}  // namespace weir::net::tls
