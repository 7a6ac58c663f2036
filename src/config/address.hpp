#pragma once
// Syntax checks for the addresses and host names written in the config (private to config/).
#include <cstdint>
#include <string>
#include <string_view>

namespace weir::config {

struct HostPort {
  std::string host;  // without brackets
  uint16_t port = 0;
};

// "HOST:PORT" or "[V6]:PORT" where HOST is a dotted-quad IPv4 address or a DNS name and the
// port is 1-65535. Returns "" and fills `out`, or a message saying what is wrong.
std::string parse_host_port(std::string_view text, HostPort& out);

bool is_ipv4(std::string_view text);
bool is_ipv6(std::string_view text);
// Letters, digits, '-' and '_' in dot-separated labels of 1-63 characters, at most 253 in all.
bool is_hostname(std::string_view text);

}  // namespace weir::config
