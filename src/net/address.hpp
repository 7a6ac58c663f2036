#pragma once
// Socket addresses: parsing "HOST:PORT" / "[V6]:PORT", resolving names, printing.
#include <netinet/in.h>
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

// An IPv4 or IPv6 address with its port in 20 bytes (what a client connection keeps: a
// SocketAddress is 132). The address bytes are in network order: 4 for IPv4, 16 for IPv6.
struct PeerAddress {
  uint16_t family_ = 0;  // AF_INET, AF_INET6, or 0 (none)
  uint16_t port_ = 0;    // host order
  uint8_t bytes[16]{};
  PeerAddress() = default;
  // Families other than AF_INET/AF_INET6 give an empty address (family 0).
  static PeerAddress from(const sockaddr_storage& ss);
  static PeerAddress from(const SocketAddress& a) { return from(a.storage); }
  SocketAddress full() const;
  int family() const { return family_; }
  uint16_t port() const { return port_; }
  std::string to_string() const { return full().to_string(); }
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
