#include "config/address.hpp"

#include <arpa/inet.h>

#include <algorithm>

namespace weir::config {
namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// "1.2.3" or "300.1.1.1": meant as an IPv4 address, not a host name.
bool looks_numeric(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

}  // namespace

bool is_ipv4(std::string_view text) {
  in_addr addr{};
  return inet_pton(AF_INET, std::string(text).c_str(), &addr) == 1;
}

bool is_ipv6(std::string_view text) {
  in6_addr addr{};
  return inet_pton(AF_INET6, std::string(text).c_str(), &addr) == 1;
}

bool is_hostname(std::string_view text) {
  if (text.empty() || text.size() > 253) return false;
  if (looks_numeric(text)) return is_ipv4(text);
  size_t start = 0;
  while (true) {
    size_t dot = text.find('.', start);
    std::string_view label = text.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    if (!std::all_of(label.begin(), label.end(), is_label_char)) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::string parse_host_port(std::string_view text, HostPort& out) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return "missing \"]\" in address " + quoted;
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return "address " + quoted + " needs a port, e.g. [::1]:8080";
    }
    port = rest.substr(1);
    if (!is_ipv6(host)) return "invalid IPv6 address \"" + std::string(host) + "\" in " + quoted;
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return "address " + quoted + " needs a port, e.g. 127.0.0.1:8080";
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return "IPv6 address in " + quoted + " must be in brackets, e.g. [::1]:8080";
    }
    if (host.empty()) {
      return "address " + quoted + " needs a host (0.0.0.0 or [::] for every interface)";
    }
    if (looks_numeric(host) && !is_ipv4(host)) {
      return "invalid IPv4 address \"" + std::string(host) + "\" in " + quoted;
    }
    if (!is_hostname(host)) return "invalid host name \"" + std::string(host) + "\" in " + quoted;
  }
  if (port.empty()) return "address " + quoted + " needs a port after \":\"";
  if (!all_digits(port) || port.size() > 5) {
    return "invalid port \"" + std::string(port) + "\" in " + quoted + " (expected 1-65535)";
  }
  int value = std::stoi(std::string(port));
  if (value < 1 || value > 65535) {
    return "invalid port \"" + std::string(port) + "\" in " + quoted + " (expected 1-65535)";
  }
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(value);
  return "";
}

}  // namespace weir::config
