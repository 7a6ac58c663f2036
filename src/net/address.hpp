#pragma once
// Socket addresses: parsing "HOST:PORT" / "[V6]:PORT", resolving names, printing.
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weir::net {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t len = 0;

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  std::string to_string() const;  // "1.2.3.4:80" or "[::1]:80"
  std::string ip_string() const;  // "1.2.3.4" or "::1"
  uint16_t port() const;
};

// Splits "host:port" or "[v6]:port". Returns false on bad syntax.
bool split_host_port(std::string_view text, std::string& host, uint16_t& port);

// Numeric addresses only; no DNS.
std::optional<SocketAddress> parse_numeric(std::string_view host, uint16_t port);

// Numeric or a name resolved with getaddrinfo (blocking: call at load time only).
// On failure returns nullopt and sets `error`.
std::optional<SocketAddress> resolve(const std::string& host, uint16_t port, std::string& error);

// The client's IP as written in X-Forwarded-For (v4-mapped v6 shown as v4).
std::string peer_ip(const sockaddr_storage& ss);

}  // namespace weir::net
