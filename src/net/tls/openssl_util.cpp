// OpenSSL error queue to text, and address literals.
#include <arpa/inet.h>
#include <openssl/err.h>

#include <cstring>

#include "net/tls/internal.hpp"

namespace weir::net::tls::detail {

std::string openssl_reason(bool with_data) {
  const char* data = nullptr;
  int flags = 0;
  unsigned long e = ERR_peek_error_all(nullptr, nullptr, nullptr, &data, &flags);
  std::string out;
  if (e == 0) {
    out = "unknown error";
  } else if (ERR_SYSTEM_ERROR(e)) {
    out = std::strerror(static_cast<int>(ERR_GET_REASON(e)));
  } else if (const char* r = ERR_reason_error_string(e)) {
    out = r;
  } else {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out = buf;
  }
  if (with_data && data && (flags & ERR_TXT_STRING) && *data) out += std::string(" (") + data + ")";
  ERR_clear_error();
  return out;
}

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

bool is_ip_literal(const std::string& host) {
  unsigned char addr[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), addr) == 1 ||
         inet_pton(AF_INET6, host.c_str(), addr) == 1;
}

}  // namespace weir::net::tls::detail
