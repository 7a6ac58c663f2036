#include "net/address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace weir::net {

std::string peer_ip(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    }
  }
  return buf;
}

std::string SocketAddress::ip_string() const {
  return peer_ip(storage);
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

std::string SocketAddress::to_string() const {
  std::string ip = ip_string();
  if (family() == AF_INET6) return "[" + ip + "]:" + std::to_string(port());
  return ip + ":" + std::to_string(port());
}

bool split_host_port(std::string_view text, std::string& host, uint16_t& port) {
  std::string_view h, p;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return false;
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
    if (h.find(':') != std::string_view::npos) return false;
  }
  if (h.empty() || p.empty()) return false;
  unsigned v = 0;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (ec != std::errc() || ptr != p.data() + p.size() || v == 0 || v > 65535) return false;
  host.assign(h);
  port = static_cast<uint16_t>(v);
  return true;
}

std::optional<SocketAddress> parse_numeric(std::string_view host, uint16_t port) {
  SocketAddress a;
  std::string h(host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(sockaddr_in);
    return a;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(sockaddr_in6);
    return a;
  }
  return std::nullopt;
}

std::optional<SocketAddress> resolve(const std::string& host, uint16_t port, std::string& error) {
  if (auto a = parse_numeric(host, port)) return a;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) {
    error = std::string("cannot resolve \"") + host + "\": " + gai_strerror(rc);
    return std::nullopt;
  }
  SocketAddress a;
  std::memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
  a.len = res->ai_addrlen;
  freeaddrinfo(res);
  if (a.family() == AF_INET) reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(port);
  if (a.family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(port);
  return a;
}

PeerAddress PeerAddress::from(const sockaddr_storage& ss) {
  PeerAddress p;
  if (ss.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    p.family_ = AF_INET;
    p.port_ = ntohs(in.sin_port);
    std::memcpy(p.bytes, &in.sin_addr, 4);
  } else if (ss.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
    p.family_ = AF_INET6;
    p.port_ = ntohs(in6.sin6_port);
    std::memcpy(p.bytes, &in6.sin6_addr, 16);
  }
  return p;
}

SocketAddress PeerAddress::full() const {
  SocketAddress a;
  if (family_ == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(a.storage);
    in.sin_family = AF_INET;
    in.sin_port = htons(port_);
    std::memcpy(&in.sin_addr, bytes, 4);
    a.len = sizeof(sockaddr_in);
  } else if (family_ == AF_INET6) {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(a.storage);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port_);
    std::memcpy(&in6.sin6_addr, bytes, 16);
    a.len = sizeof(sockaddr_in6);
  }
  return a;
}

}  // namespace weir::net
