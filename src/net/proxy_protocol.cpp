#include "net/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <optional>

namespace weir::net::proxy_protocol {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr char kV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                   '\n', 'Q',  'U',  'I',  'T',  '\n'};
constexpr size_t kV2FixedLength = 16;

// v2 byte 13 (index 12): the version in the high nibble, the command in the low one.
constexpr unsigned kV2Version = 0x2;
constexpr unsigned kCmdLocal = 0x0, kCmdProxy = 0x1;
// v2 byte 14 (index 13): the family in the high nibble, the transport in the low one;
// bytes 15-16: the length of what follows, big-endian.
constexpr unsigned kFamUnspec = 0x0, kFamInet = 0x1, kFamInet6 = 0x2, kFamUnix = 0x3;
constexpr unsigned kTransStream = 0x1, kTransDgram = 0x2;
// Size of the address block for each family (UNIX: two 108-byte paths).
constexpr size_t kAddrLength[4] = {0, 12, 36, 216};

constexpr uint8_t kTlvAuthority = 0x02, kTlvCrc32c = 0x03, kTlvUniqueId = 0x05;

// ---------------------------------------------------------------------------------------------
// Addresses

void set_v4(SocketAddress& a, const uint8_t* ip, uint16_t port) {
  a = SocketAddress{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage);
  sin->sin_family = AF_INET;
  std::memcpy(&sin->sin_addr, ip, 4);
  sin->sin_port = htons(port);
  a.len = sizeof(sockaddr_in);
}

// A v4-mapped address becomes AF_INET: the client is an IPv4 client whatever the balancer's
// socket family was, and our access lists and logs compare it as one.
void set_v6(SocketAddress& a, const uint8_t* ip, uint16_t port) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(ip, kMapped, sizeof kMapped) == 0) return set_v4(a, ip + 12, port);
  a = SocketAddress{};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  sin6->sin6_family = AF_INET6;
  std::memcpy(&sin6->sin6_addr, ip, 16);
  sin6->sin6_port = htons(port);
  a.len = sizeof(sockaddr_in6);
}

uint16_t read16(const char* p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(p[0]) << 8 | static_cast<uint8_t>(p[1]));
}

// ---------------------------------------------------------------------------------------------
// Version 1: one left-to-right pass, each byte looked at once. Running out of input is NeedMore
// wherever it happens, and needing a 108th byte is Invalid, so a prefix of the input never
// gets a verdict the whole input would not.

enum class Step { Ok, NeedMore, Invalid };

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_v4_char(char c) {
  return is_digit(c) || c == '.';
}
bool is_v6_char(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

struct V1Scanner {
  std::string_view in;
  size_t pos = 0;
  std::string_view error;

  Step fail(std::string_view why) {
    error = why;
    return Step::Invalid;
  }
  // Byte `pos` can be read (Ok), is not there yet, or lies past the 107-byte bound.
  Step available() {
    if (pos >= kV1MaxLength) return fail("v1 line too long");
    return pos < in.size() ? Step::Ok : Step::NeedMore;
  }
  Step literal(std::string_view text, std::string_view why) {
    for (char c : text) {
      if (Step s = available(); s != Step::Ok) return s;
      if (in[pos] != c) return fail(why);
      ++pos;
    }
    return Step::Ok;
  }
  // 1 to `max_len` bytes accepted by `allowed`, then `end` (consumed, not part of the token).
  Step token(bool (*allowed)(char), size_t max_len, char end, std::string_view& out,
             std::string_view why) {
    const size_t start = pos;
    for (;;) {
      if (Step s = available(); s != Step::Ok) return s;
      const char c = in[pos];
      if (c == end && pos > start) {
        out = in.substr(start, pos - start);
        ++pos;
        return Step::Ok;
      }
      if (!allowed(c) || pos - start >= max_len) return fail(why);
      ++pos;
    }
  }
  Step address(int family, char end, uint8_t (&ip)[16]) {
    std::string_view text;
    const bool v4 = family == AF_INET;
    // 15: "255.255.255.255"; 45: INET6_ADDRSTRLEN - 1, the longest IPv6 text with a dotted tail.
    if (Step s = token(v4 ? is_v4_char : is_v6_char, v4 ? 15 : 45, end, text, "bad v1 address");
        s != Step::Ok)
      return s;
    char buf[INET6_ADDRSTRLEN] = {};
    std::memcpy(buf, text.data(), text.size());
    if (inet_pton(family, buf, ip) != 1) return fail("bad v1 address");
    return Step::Ok;
  }
  // Decimal 0-65535: "0" or a non-zero digit first.
  Step port(char end, uint16_t& out) {
    std::string_view text;
    if (Step s = token(is_digit, 5, end, text, "bad v1 port"); s != Step::Ok) return s;
    if (text.size() > 1 && text[0] == '0') return fail("bad v1 port");
    unsigned v = 0;
    for (char c : text)
      v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > 65535) return fail("bad v1 port");
    out = static_cast<uint16_t>(v);
    return Step::Ok;
  }
  // "UNKNOWN" then CRLF, or a space and anything but CR or LF up to the CRLF: the spec has the
  // receiver ignore what a sender may put there, but a lone CR or LF still ends nothing.
  Step unknown_rest() {
    if (Step s = available(); s != Step::Ok) return s;
    if (in[pos] == ' ') {
      ++pos;
      for (;;) {
        if (Step s = available(); s != Step::Ok) return s;
        if (in[pos] == '\r') break;
        if (in[pos] == '\n') return fail("v1 missing CRLF");
        ++pos;
      }
    } else if (in[pos] == '\n') {
      return fail("v1 missing CRLF");
    } else if (in[pos] != '\r') {
      return fail("bad v1 protocol");
    }
    return literal("\r\n", "v1 missing CRLF");
  }
};

Step scan_v1(V1Scanner& s, Header& out) {
  if (Step r = s.literal(kV1Prefix, "bad signature"); r != Step::Ok) return r;
  if (Step r = s.available(); r != Step::Ok) return r;
  if (s.in[s.pos] == 'U') {
    if (Step r = s.literal("UNKNOWN", "bad v1 protocol"); r != Step::Ok) return r;
    out.local = true;
    return s.unknown_rest();
  }
  if (Step r = s.literal("TCP", "bad v1 protocol"); r != Step::Ok) return r;
  if (Step r = s.available(); r != Step::Ok) return r;
  const char which = s.in[s.pos];
  if (which != '4' && which != '6') return s.fail("bad v1 protocol");
  ++s.pos;
  if (Step r = s.literal(" ", "bad v1 protocol"); r != Step::Ok) return r;
  const int family = which == '4' ? AF_INET : AF_INET6;
  uint8_t src[16], dst[16];
  uint16_t sport = 0, dport = 0;
  if (Step r = s.address(family, ' ', src); r != Step::Ok) return r;
  if (Step r = s.address(family, ' ', dst); r != Step::Ok) return r;
  if (Step r = s.port(' ', sport); r != Step::Ok) return r;
  if (Step r = s.port('\r', dport); r != Step::Ok) return r;
  if (Step r = s.literal("\n", "v1 missing CRLF"); r != Step::Ok) return r;
  if (family == AF_INET) {
    set_v4(out.source, src, sport);
    set_v4(out.destination, dst, dport);
  } else {
    set_v6(out.source, src, sport);
    set_v6(out.destination, dst, dport);
  }
  return Step::Ok;
}

Status parse_v1(std::string_view in, Header& out) {
  V1Scanner s{in};
  switch (scan_v1(s, out)) {
    case Step::Ok:
      out.version = 1;
      out.length = s.pos;
      return Status::Done;
    case Step::NeedMore:
      break;
    case Step::Invalid:
      out.error = s.error;
      return Status::Invalid;
  }
  return Status::NeedMore;
}

// ---------------------------------------------------------------------------------------------
// Version 2: fixed positions, so each check runs as soon as its byte has arrived.

// CRC32C, reflected polynomial 0x82F63B78, one bit at a time: a header is a few KiB at most and
// is checked once per connection, so a table would buy nothing worth its cache lines.
uint32_t crc32c_update(uint32_t crc, std::string_view bytes) {
  for (unsigned char c : bytes) {
    crc ^= c;
    for (int k = 0; k < 8; ++k)
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return crc;
}

// The CRC32C of the header with the checksum's 4 value bytes read as zeros, as the spec asks.
uint32_t header_crc(std::string_view header, size_t value_at) {
  static constexpr char kZeros[4] = {};
  uint32_t crc = crc32c_update(~0u, header.substr(0, value_at));
  crc = crc32c_update(crc, std::string_view(kZeros, 4));
  return ~crc32c_update(crc, header.substr(value_at + 4));
}

Status invalid(Header& out, std::string_view why) {
  out.error = why;
  return Status::Invalid;
}

// TLVs from `at` to the end of the header: each one's 3-byte head and value inside it.
Status parse_tlvs(std::string_view header, size_t at, Header& out) {
  bool seen_authority = false, seen_unique_id = false, seen_crc = false;
  while (at < header.size()) {
    if (header.size() - at < 3) return invalid(out, "bad v2 TLV");
    const uint8_t type = static_cast<uint8_t>(header[at]);
    const size_t len = read16(header.data() + at + 1);
    if (header.size() - at - 3 < len) return invalid(out, "bad v2 TLV");
    const std::string_view value = header.substr(at + 3, len);
    switch (type) {
      case kTlvAuthority:
        if (seen_authority) return invalid(out, "v2 duplicate TLV");
        if (value.size() > kMaxAuthority) return invalid(out, "v2 authority too long");
        seen_authority = true;
        out.authority.assign(value);
        break;
      case kTlvUniqueId:
        if (seen_unique_id) return invalid(out, "v2 duplicate TLV");
        if (value.size() > kMaxUniqueId) return invalid(out, "v2 unique id too long");
        seen_unique_id = true;
        out.unique_id.assign(value);
        break;
      case kTlvCrc32c: {
        if (seen_crc) return invalid(out, "v2 duplicate TLV");
        if (value.size() != 4) return invalid(out, "bad v2 TLV");
        seen_crc = true;
        const uint32_t sent = uint32_t{read16(value.data())} << 16 | read16(value.data() + 2);
        if (header_crc(header, at + 3) != sent) return invalid(out, "v2 checksum mismatch");
        break;
      }
      default:  // ALPN, NOOP, SSL, NETNS and the unknown: nothing we use yet.
        break;
    }
    at += 3 + len;
  }
  return Status::Done;
}

Status parse_v2(std::string_view in, Header& out, size_t max_length) {
  for (size_t i = 0; i < sizeof kV2Signature && i < in.size(); ++i) {
    if (in[i] != kV2Signature[i]) return invalid(out, "bad signature");
  }
  if (in.size() < 13) return Status::NeedMore;
  const unsigned ver_cmd = static_cast<uint8_t>(in[12]);
  if (ver_cmd >> 4 != kV2Version) return invalid(out, "bad v2 version");
  const unsigned command = ver_cmd & 0xF;
  if (command != kCmdLocal && command != kCmdProxy) return invalid(out, "bad v2 command");
  if (in.size() < 14) return Status::NeedMore;
  // The spec has LOCAL ignore the family byte; for PROXY unassigned values are invalid.
  const unsigned family = static_cast<uint8_t>(in[13]) >> 4;
  const unsigned transport = static_cast<uint8_t>(in[13]) & 0xF;
  if (command == kCmdProxy && (family > kFamUnix || transport > kTransDgram))
    return invalid(out, "bad v2 family");
  if (in.size() < kV2FixedLength) return Status::NeedMore;
  const size_t total = kV2FixedLength + read16(in.data() + 14);
  if (total > max_length) return invalid(out, "v2 header too long");
  const size_t addr_length = command == kCmdProxy ? kAddrLength[family] : 0;
  if (total - kV2FixedLength < addr_length) return invalid(out, "v2 address block too short");
  if (in.size() < total) return Status::NeedMore;

  out.version = 2;
  out.length = total;
  // LOCAL: the balancer's own connection (a health check); the block is discarded unread.
  if (command == kCmdLocal) {
    out.local = true;
    return Status::Done;
  }
  const std::string_view header = in.substr(0, total);
  const auto* addr = reinterpret_cast<const uint8_t*>(in.data() + kV2FixedLength);
  if (transport == kTransStream && family == kFamInet) {
    set_v4(out.source, addr, read16(in.data() + 24));
    set_v4(out.destination, addr + 4, read16(in.data() + 26));
  } else if (transport == kTransStream && family == kFamInet6) {
    set_v6(out.source, addr, read16(in.data() + 48));
    set_v6(out.destination, addr + 16, read16(in.data() + 50));
  } else {
    // UNSPEC, UNIX, or UDP: nothing we can use as a TCP client address.
    out.local = true;
  }
  return parse_tlvs(header, kV2FixedLength + addr_length, out);
}

// ---------------------------------------------------------------------------------------------
// Encoders

struct Endpoint {
  bool v4 = false;
  uint8_t ip[16] = {};  // v4: the first 4 bytes
  uint16_t port = 0;
};

// AF_INET, or AF_INET6 with v4-mapped turned back into IPv4; nothing for other families.
std::optional<Endpoint> endpoint(const SocketAddress& a) {
  Endpoint e;
  if (a.family() == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&a.storage);
    e.v4 = true;
    std::memcpy(e.ip, &sin->sin_addr, 4);
    e.port = ntohs(sin->sin_port);
    return e;
  }
  if (a.family() == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    e.port = ntohs(sin6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      e.v4 = true;
      std::memcpy(e.ip, &sin6->sin6_addr.s6_addr[12], 4);
    } else {
      std::memcpy(e.ip, &sin6->sin6_addr, 16);
    }
    return e;
  }
  return std::nullopt;
}

// Writes an IPv4 endpoint as v4-mapped IPv6, for a pair whose other side is IPv6.
void widen(Endpoint& e) {
  if (!e.v4) return;
  uint8_t v4[4];
  std::memcpy(v4, e.ip, 4);
  std::memset(e.ip, 0, 10);
  e.ip[10] = e.ip[11] = 0xff;
  std::memcpy(e.ip + 12, v4, 4);
  e.v4 = false;
}

// Both endpoints usable, in one family (IPv6 when they differ), or nothing.
bool pair(const SocketAddress& src, const SocketAddress& dst, Endpoint& s, Endpoint& d) {
  auto a = endpoint(src), b = endpoint(dst);
  if (!a || !b) return false;
  s = *a;
  d = *b;
  if (s.v4 != d.v4) {
    widen(s);
    widen(d);
  }
  return true;
}

void put16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}

}  // namespace

Status parse(std::string_view in, Header& out, size_t max_v2_length) {
  out = Header{};
  Status status = Status::NeedMore;
  // The two signatures differ on their first byte, so anything else fails there.
  if (in.empty()) {
    status = Status::NeedMore;
  } else if (in[0] == kV1Prefix[0]) {
    status = parse_v1(in, out);
  } else if (in[0] == kV2Signature[0]) {
    status = parse_v2(in, out, max_v2_length);
  } else {
    status = invalid(out, "bad signature");
  }
  if (status != Status::Done) out = Header{.error = out.error};  // nothing half-filled
  return status;
}

std::string encode_v1(const SocketAddress& src, const SocketAddress& dst) {
  Endpoint s, d;
  if (!pair(src, dst, s, d)) return "PROXY UNKNOWN\r\n";
  const int family = s.v4 ? AF_INET : AF_INET6;
  char sbuf[INET6_ADDRSTRLEN], dbuf[INET6_ADDRSTRLEN];
  inet_ntop(family, s.ip, sbuf, sizeof sbuf);
  inet_ntop(family, d.ip, dbuf, sizeof dbuf);
  std::string out = s.v4 ? "PROXY TCP4 " : "PROXY TCP6 ";
  out.append(sbuf).append(" ").append(dbuf).append(" ");
  out.append(std::to_string(s.port)).append(" ").append(std::to_string(d.port)).append("\r\n");
  return out;
}

std::string encode_v2(const SocketAddress& src, const SocketAddress& dst) {
  std::string out(kV2Signature, sizeof kV2Signature);
  Endpoint s, d;
  if (!pair(src, dst, s, d)) {
    out.push_back(static_cast<char>(kV2Version << 4 | kCmdLocal));
    out.push_back(static_cast<char>(kFamUnspec << 4));
    put16(out, 0);
    return out;
  }
  const size_t ip_len = s.v4 ? 4 : 16;
  out.push_back(static_cast<char>(kV2Version << 4 | kCmdProxy));
  out.push_back(static_cast<char>((s.v4 ? kFamInet : kFamInet6) << 4 | kTransStream));
  put16(out, static_cast<uint16_t>(2 * ip_len + 4));
  out.append(reinterpret_cast<const char*>(s.ip), ip_len);
  out.append(reinterpret_cast<const char*>(d.ip), ip_len);
  put16(out, s.port);
  put16(out, d.port);
  return out;
}

uint32_t crc32c(std::string_view bytes) {
  return ~crc32c_update(~0u, bytes);
}

}  // namespace weir::net::proxy_protocol
