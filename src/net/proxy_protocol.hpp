#pragma once
// The PROXY protocol (HAProxy, proxy-protocol.txt, versions 1 and 2): the header a load balancer
// in front of us prepends to a connection to tell us the real client, and the one we prepend to
// an upstream connection for a server that wants to know it. Pure functions over bytes, no
// sockets: the caller reads, calls parse() on everything received so far, and consumes `length`.
//
// Hostile input first: parse() looks at each byte once, left to right, and decides as soon as a
// byte cannot continue a valid header (so "GET / HTTP/1.1" fails on its first byte), never
// reads past a bound (v1: 107 bytes; v2: `max_v2_length`), and allocates nothing except the
// optional TLV strings (capped). The verdict on a prefix never contradicts the verdict on the
// whole input: a prefix is NeedMore, or the same Invalid, or the same Done.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/address.hpp"

namespace weir::net::proxy_protocol {

enum class Status { NeedMore, Done, Invalid };

constexpr size_t kV1MaxLength = 107;               // "PROXY UNKNOWN <v6> <v6> 65535 65535\r\n"
constexpr size_t kV2DefaultMaxLength = 16 + 2048;  // fixed part + address block and TLVs
constexpr size_t kMaxUniqueId = 128;               // PP2_TYPE_UNIQUE_ID, per the spec
constexpr size_t kMaxAuthority = 255;              // PP2_TYPE_AUTHORITY: a host name

struct Header {
  int version = 0;  // 1 or 2
  // No addresses: a v2 LOCAL (health check from the balancer itself), a v1 "UNKNOWN", or a v2
  // PROXY for a family or transport other than TCP over IPv4/IPv6 (UNIX, UDP, UNSPEC), as HAProxy
  // does. The connection's own peer stays the client.
  bool local = false;
  // When !local: AF_INET or AF_INET6, ports set. A v4-mapped IPv6 address (::ffff:a.b.c.d) is
  // returned as AF_INET, so access lists and X-Forwarded-For see the IPv4 client.
  SocketAddress source, destination;
  size_t length = 0;       // bytes the header occupies, to consume from the stream (when Done)
  std::string_view error;  // static text (when Invalid)
  // v2 TLVs kept for later use (empty when absent; v1 has none):
  std::string authority;  // PP2_TYPE_AUTHORITY: the host name the client asked for (SNI)
  std::string unique_id;  // PP2_TYPE_UNIQUE_ID: an opaque id the balancer gave the connection
};

// Parses the start of a connection's bytes. NeedMore while `in` is a valid prefix of a header;
// Done with `out` filled and `out.length` ≤ in.size() (bytes after the header are payload);
// Invalid with `out.error` at the first byte that rules a header out. `out` is reset each call.
//  v1: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" exactly: single spaces, addresses that
//      parse as the stated family, ports 0-65535 in decimal without leading zeros, CRLF, at most
//      107 bytes. "PROXY UNKNOWN" is followed by CRLF or by a space and anything but CR/LF.
//  v2: signature, version 2, command LOCAL or PROXY, family/transport among those assigned
//      (ignored for LOCAL), 16 + length ≤ max_v2_length, the address block inside the length,
//      TLVs well-formed up to the last byte. A CRC32C TLV is verified (a mismatch is Invalid);
//      unknown TLVs are skipped; AUTHORITY, UNIQUE_ID and CRC32C may appear once each.
Status parse(std::string_view in, Header& out, size_t max_v2_length = kV2DefaultMaxLength);

// Headers for weir → server, for a TCP connection from `src` (the client) to `dst` (the address
// it reached). A v4-mapped IPv6 address is sent as IPv4. Two IPv4 addresses give TCP4 / INET;
// IPv4 with IPv6 gives TCP6 / INET6 with the IPv4 one written v4-mapped (as HAProxy does); any
// other family (AF_UNIX, empty) gives "PROXY UNKNOWN\r\n" / a v2 LOCAL header with UNSPEC, so
// the server uses the connection's own addresses. Neither adds TLVs.
std::string encode_v1(const SocketAddress& src, const SocketAddress& dst);
std::string encode_v2(const SocketAddress& src, const SocketAddress& dst);

// CRC32C (Castagnoli, RFC 4960 appendix B) as PP2_TYPE_CRC32C uses it; exposed for tests.
uint32_t crc32c(std::string_view bytes);

}  // namespace weir::net::proxy_protocol
