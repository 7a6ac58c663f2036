// net::proxy_protocol: the PROXY header, v1 (text) and v2 (binary), from HAProxy's
// proxy-protocol.txt. Good headers of each kind, every prefix of each (NeedMore until the last
// byte, payload after it untouched), early rejection of what is not a header, every bound, TLVs
// and their checksum, and the encoders against hand-written bytes and through the parser.
#include "net/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace weir::net::proxy_protocol {
namespace {

using namespace std::string_literals;

const std::string kSig = "\r\n\r\n\0\r\nQUIT\n"s;

SocketAddress addr(const char* ip, uint16_t port) {
  auto a = parse_numeric(ip, port);
  EXPECT_TRUE(a.has_value()) << ip;
  return a.value_or(SocketAddress{});
}

SocketAddress unix_addr() {
  SocketAddress a;
  auto* sun = reinterpret_cast<sockaddr_un*>(&a.storage);
  sun->sun_family = AF_UNIX;
  std::strcpy(sun->sun_path, "/run/weir.sock");
  a.len = sizeof(sockaddr_un);
  return a;
}

std::string be16(unsigned v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
}

// A v2 header: signature, ver_cmd, fam, length of `body`, body.
std::string v2(unsigned ver_cmd, unsigned fam, const std::string& body) {
  return kSig + static_cast<char>(ver_cmd) + static_cast<char>(fam) + be16(body.size()) + body;
}

std::string tlv(unsigned type, const std::string& value) {
  return static_cast<char>(type) + be16(value.size()) + value;
}

// The 12-byte TCP/IPv4 block of 192.0.2.1:12345 → 198.51.100.7:443.
const std::string kInetBlock = "\xC0\x00\x02\x01\xC6\x33\x64\x07\x30\x39\x01\xBB"s;

Header parsed(std::string_view in, Status expect = Status::Done) {
  Header h;
  EXPECT_EQ(parse(in, h), expect) << testing::PrintToString(std::string(in)) << " " << h.error;
  return h;
}

std::string invalid(std::string_view in, size_t max = kV2DefaultMaxLength) {
  Header h;
  EXPECT_EQ(parse(in, h, max), Status::Invalid) << testing::PrintToString(std::string(in));
  EXPECT_FALSE(h.error.empty());
  return std::string(h.error);
}

// Every proper prefix is NeedMore, the whole is Done with `length` = its size, and the whole
// followed by payload is Done with the same length.
void expect_prefixes(const std::string& header) {
  Header h;
  for (size_t n = 0; n < header.size(); ++n) {
    ASSERT_EQ(parse(std::string_view(header).substr(0, n), h), Status::NeedMore)
        << testing::PrintToString(header) << " cut at " << n << ": " << h.error;
  }
  ASSERT_EQ(parse(header, h), Status::Done) << h.error;
  EXPECT_EQ(h.length, header.size());
  const std::string with_payload = header + "GET / HTTP/1.1\r\n\r\n";
  ASSERT_EQ(parse(with_payload, h), Status::Done);
  EXPECT_EQ(h.length, header.size());
}

// ---------------------------------------------------------------------------------------------
// Version 1

TEST(ProxyProtocolV1, Tcp4) {
  const std::string line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  Header h = parsed(line + "GET / HTTP/1.1\r\n");
  EXPECT_EQ(h.version, 1);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.length, line.size());
  EXPECT_EQ(h.source.family(), AF_INET);
  EXPECT_EQ(h.source.to_string(), "192.168.0.1:56324");
  EXPECT_EQ(h.destination.to_string(), "192.168.0.11:443");
  EXPECT_EQ(h.source.len, sizeof(sockaddr_in));
}

TEST(ProxyProtocolV1, Tcp6) {
  Header h = parsed("PROXY TCP6 2001:db8::1 ::1 0 65535\r\n");
  EXPECT_EQ(h.source.family(), AF_INET6);
  EXPECT_EQ(h.source.to_string(), "[2001:db8::1]:0");
  EXPECT_EQ(h.destination.to_string(), "[::1]:65535");
  EXPECT_EQ(h.source.len, sizeof(sockaddr_in6));
  // Upper-case hex is as good.
  EXPECT_EQ(parsed("PROXY TCP6 2001:DB8::A ::1 1 2\r\n").source.ip_string(), "2001:db8::a");
}

TEST(ProxyProtocolV1, Tcp6MappedSourceIsIpv4) {
  Header h = parsed("PROXY TCP6 ::ffff:10.1.2.3 2001:db8::2 4000 443\r\n");
  EXPECT_EQ(h.source.family(), AF_INET);
  EXPECT_EQ(h.source.to_string(), "10.1.2.3:4000");
  EXPECT_EQ(h.destination.family(), AF_INET6);
}

TEST(ProxyProtocolV1, Unknown) {
  Header h = parsed("PROXY UNKNOWN\r\nabc");
  EXPECT_EQ(h.version, 1);
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.length, 15u);
  EXPECT_EQ(h.source.family(), AF_UNSPEC);
  // Whatever follows "UNKNOWN " up to the CRLF is ignored, as the spec asks.
  const std::string line = "PROXY UNKNOWN ffff:f::ffff whatever \x01 65535\r\n";
  h = parsed(line + "x");
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.length, line.size());
}

TEST(ProxyProtocolV1, LongestLinesFit) {
  // The spec's worst case is exactly 107 bytes.
  const std::string v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const std::string unknown = "PROXY UNKNOWN " + v6 + " " + v6 + " 65535 65535\r\n";
  ASSERT_EQ(unknown.size(), kV1MaxLength);
  EXPECT_EQ(parsed(unknown).length, kV1MaxLength);
  const std::string tcp6 = "PROXY TCP6 " + v6 + " " + v6 + " 65535 65535\r\n";
  EXPECT_EQ(parsed(tcp6).source.port(), 65535);
  const std::string tcp4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
  EXPECT_EQ(parsed(tcp4).destination.to_string(), "255.255.255.255:65535");
}

TEST(ProxyProtocolV1, LineTooLong) {
  // 108 bytes: rejected once the 108th byte would be needed, however much has arrived.
  const std::string line = "PROXY UNKNOWN " + std::string(92, 'x') + "\r\n";
  ASSERT_EQ(line.size(), kV1MaxLength + 1);
  EXPECT_EQ(invalid(line), "v1 line too long");
  Header h;
  EXPECT_EQ(parse(line.substr(0, kV1MaxLength - 1), h), Status::NeedMore);
  EXPECT_EQ(parse(line.substr(0, kV1MaxLength), h), Status::Invalid);
  // A line that never ends stops at the bound, not at the end of the input.
  EXPECT_EQ(invalid("PROXY UNKNOWN " + std::string(4096, 'x')), "v1 line too long");
  EXPECT_EQ(invalid("PROXY TCP6 " + std::string(200, ':')), "bad v1 address");
}

TEST(ProxyProtocolV1, Malformed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad signature"},
      {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
      {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
      {"PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
      {"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
      {"PROXY UNKNOWNX\r\n", "bad v1 protocol"},
      {"PROXY UNKNOWN\n", "v1 missing CRLF"},
      {"PROXY UNKNOWN\rX", "v1 missing CRLF"},
      {"PROXY UNKNOWN abc\ndef\r\n", "v1 missing CRLF"},
      {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 address"},
      {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "bad v1 address"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "bad v1 address"},
      {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "bad v1 address"},
      {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad v1 address"},  // no octal ambiguity
      {"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "bad v1 address"},
      {"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "bad v1 address"},
      {"PROXY TCP4 ::1 ::1 1 2\r\n", "bad v1 address"},
      {"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 address"},
      {"PROXY TCP6 ::1 ::1::1 1 2\r\n", "bad v1 address"},
      {"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad v1 address"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 0443 2\r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bad v1 port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "v1 missing CRLF"},
  };
  for (const auto& [line, error] : cases) {
    EXPECT_EQ(invalid(line), error) << testing::PrintToString(line);
    // Whatever arrives after the faulty byte changes nothing.
    EXPECT_EQ(invalid(line + "PROXY UNKNOWN\r\n"), error) << testing::PrintToString(line);
  }
  // Zero is a port like any other; "0" is its only spelling.
  EXPECT_EQ(parsed("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n").source.port(), 0);
}

TEST(ProxyProtocolV1, EveryPrefixNeedsMore) {
  for (const std::string line : {
           "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
           "PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 2\r\n",
           "PROXY UNKNOWN\r\n",
           "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
       }) {
    expect_prefixes(line);
  }
}

// ---------------------------------------------------------------------------------------------
// Which bytes are a header at all

TEST(ProxyProtocol, NotAHeaderFailsOnFirstBytes) {
  Header h;
  EXPECT_EQ(parse("", h), Status::NeedMore);
  // A client speaking HTTP (or TLS) is turned away on its first byte.
  EXPECT_EQ(parse("G", h), Status::Invalid);
  EXPECT_EQ(h.error, "bad signature");
  EXPECT_EQ(invalid("GET / HTTP/1.1\r\n"), "bad signature");
  EXPECT_EQ(invalid("\x16\x03\x01"), "bad signature");
  EXPECT_EQ(invalid("\n"), "bad signature");
  // "P" could still be "PROXY", "PO" cannot; "POST" therefore fails on its second byte.
  EXPECT_EQ(parse("P", h), Status::NeedMore);
  EXPECT_EQ(invalid("PO"), "bad signature");
  EXPECT_EQ(invalid("PROXZ"), "bad signature");
  // The v2 signature, byte by byte.
  for (size_t n = 1; n <= kSig.size(); ++n) {
    EXPECT_EQ(parse(std::string_view(kSig).substr(0, n), h), Status::NeedMore) << n;
    std::string wrong = kSig.substr(0, n);
    wrong.back() ^= 0x20;
    EXPECT_EQ(invalid(wrong), "bad signature") << n;
  }
  // CRLF CRLF then an HTTP-looking byte: not a v2 header.
  EXPECT_EQ(invalid("\r\n\r\nGET"), "bad signature");
}

TEST(ProxyProtocol, ResetsTheHeaderEachCall) {
  Header h = parsed("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
  EXPECT_EQ(parse("PROXY TCP4 1.2", h), Status::NeedMore);
  EXPECT_EQ(h.version, 0);
  EXPECT_EQ(h.length, 0u);
  EXPECT_EQ(h.source.family(), AF_UNSPEC);
  EXPECT_EQ(parse(v2(0x21, 0x11, kInetBlock + tlv(0x02, "a.example")), h), Status::Done);
  EXPECT_EQ(h.authority, "a.example");
  EXPECT_EQ(parse(v2(0x21, 0x11, kInetBlock + tlv(0x02, "a")), h, 20), Status::Invalid);
  EXPECT_TRUE(h.authority.empty());
  EXPECT_EQ(h.length, 0u);
}

// ---------------------------------------------------------------------------------------------
// Version 2

TEST(ProxyProtocolV2, Tcp4) {
  const std::string header = v2(0x21, 0x11, kInetBlock);
  Header h = parsed(header + "payload");
  EXPECT_EQ(h.version, 2);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.length, 28u);
  EXPECT_EQ(h.source.to_string(), "192.0.2.1:12345");
  EXPECT_EQ(h.destination.to_string(), "198.51.100.7:443");
  expect_prefixes(header);
}

TEST(ProxyProtocolV2, Tcp6) {
  in6_addr a{}, b{};
  inet_pton(AF_INET6, "2001:db8::1", &a);
  inet_pton(AF_INET6, "::ffff:203.0.113.9", &b);
  const std::string block = std::string(reinterpret_cast<char*>(&a), 16) +
                            std::string(reinterpret_cast<char*>(&b), 16) + be16(1) + be16(65535);
  const std::string header = v2(0x21, 0x21, block);
  Header h = parsed(header);
  EXPECT_EQ(h.length, 52u);
  EXPECT_EQ(h.source.to_string(), "[2001:db8::1]:1");
  EXPECT_EQ(h.destination.family(), AF_INET);  // v4-mapped comes back as IPv4
  EXPECT_EQ(h.destination.to_string(), "203.0.113.9:65535");
  expect_prefixes(header);
  // Its mapped source is an IPv4 client.
  h = parsed(v2(0x21, 0x21, block.substr(16, 16) + block.substr(0, 16) + be16(7) + be16(8)));
  EXPECT_EQ(h.source.to_string(), "203.0.113.9:7");
}

TEST(ProxyProtocolV2, Local) {
  Header h = parsed(v2(0x20, 0x00, ""));
  EXPECT_EQ(h.version, 2);
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.length, 16u);
  EXPECT_EQ(h.source.family(), AF_UNSPEC);
  // LOCAL discards its block unread, whatever family byte and content it carries.
  h = parsed(v2(0x20, 0xFF, "\x01\x02\x03"s) + "rest");
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.length, 19u);
  expect_prefixes(v2(0x20, 0x11, kInetBlock));
}

TEST(ProxyProtocolV2, OtherFamiliesAreLocal) {
  // AF_UNIX stream: two 108-byte paths.
  Header h = parsed(v2(0x21, 0x31, std::string(216, '\0')));
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.length, 16u + 216);
  // UDP over IPv4 and IPv6, UNSPEC, UNIX datagram: no TCP client address either.
  EXPECT_TRUE(parsed(v2(0x21, 0x12, kInetBlock)).local);
  EXPECT_TRUE(parsed(v2(0x21, 0x22, std::string(36, '\x01'))).local);
  EXPECT_TRUE(parsed(v2(0x21, 0x00, "")).local);
  EXPECT_TRUE(parsed(v2(0x21, 0x32, std::string(216, 'x'))).local);
  // Inet with an unspecified transport: addresses present but not usable as TCP.
  EXPECT_TRUE(parsed(v2(0x21, 0x10, kInetBlock)).local);
  // The TLVs after a UNIX block are still parsed.
  EXPECT_EQ(parsed(v2(0x21, 0x31, std::string(216, '\0') + tlv(0x05, "id-1"))).unique_id, "id-1");
}

TEST(ProxyProtocolV2, BadVersionCommandFamily) {
  // Each is decided on the byte that carries it, before the length arrives.
  EXPECT_EQ(invalid(kSig + "\x11"), "bad v2 version");
  EXPECT_EQ(invalid(kSig + "\x31"), "bad v2 version");
  EXPECT_EQ(invalid(kSig + "\x22"), "bad v2 command");
  EXPECT_EQ(invalid(kSig + "\x2F"), "bad v2 command");
  EXPECT_EQ(invalid(kSig + "\x21\x41"), "bad v2 family");
  EXPECT_EQ(invalid(kSig + "\x21\x13"), "bad v2 family");
  EXPECT_EQ(invalid(kSig + "\x21\xF1"), "bad v2 family");
}

TEST(ProxyProtocolV2, LengthBounds) {
  // Over the bound: rejected once the length bytes are in, not after reading the rest.
  EXPECT_EQ(invalid(kSig + "\x21\x11" + be16(2049)), "v2 header too long");
  EXPECT_EQ(invalid(kSig + "\x21\x11\xFF\xFF"), "v2 header too long");
  EXPECT_EQ(invalid(kSig + "\x20\x00\xFF\xFF"s), "v2 header too long");
  const std::string at_bound = v2(0x21, 0x11, kInetBlock + tlv(0xEE, std::string(2033, 'z')));
  ASSERT_EQ(at_bound.size(), kV2DefaultMaxLength);
  EXPECT_EQ(parsed(at_bound).length, kV2DefaultMaxLength);
  EXPECT_EQ(invalid(at_bound, kV2DefaultMaxLength - 1), "v2 header too long");
  EXPECT_EQ(invalid(v2(0x21, 0x11, kInetBlock), 27), "v2 header too long");
  Header h;
  EXPECT_EQ(parse(v2(0x21, 0x11, kInetBlock), h, 28), Status::Done);
  // The address block must fit in the length.
  EXPECT_EQ(invalid(v2(0x21, 0x11, kInetBlock.substr(0, 11))), "v2 address block too short");
  EXPECT_EQ(invalid(kSig + "\x21\x21" + be16(35)), "v2 address block too short");
  EXPECT_EQ(invalid(kSig + "\x21\x31" + be16(215)), "v2 address block too short");
  // Truncated: NeedMore for as long as the declared length is not there.
  EXPECT_EQ(parse(v2(0x21, 0x11, kInetBlock).substr(0, 27), h), Status::NeedMore);
}

TEST(ProxyProtocolV2, Tlvs) {
  const std::string tlvs = tlv(0x04, "") + tlv(0x02, "www.example.com") + tlv(0x01, "h2") +
                           tlv(0xE0, std::string(300, '\xAA')) + tlv(0x05, std::string(128, 'u')) +
                           tlv(0x20, "\x01\x00\x00\x00\x00"s + tlv(0x21, "TLSv1.3"));
  const std::string header = v2(0x21, 0x11, kInetBlock + tlvs);
  Header h = parsed(header);
  EXPECT_EQ(h.authority, "www.example.com");
  EXPECT_EQ(h.unique_id, std::string(128, 'u'));
  EXPECT_EQ(h.source.to_string(), "192.0.2.1:12345");
  EXPECT_EQ(h.length, header.size());
  expect_prefixes(header);
}

TEST(ProxyProtocolV2, MalformedTlvs) {
  const auto with = [](const std::string& tlvs) { return v2(0x21, 0x11, kInetBlock + tlvs); };
  // A value running past the end of the header.
  EXPECT_EQ(invalid(with("\x04\x00\x0A"
                         "abcde"s)),
            "bad v2 TLV");
  EXPECT_EQ(invalid(with(tlv(0x02, "ok") + "\x04\xFF\xFF")), "bad v2 TLV");
  // A TLV head cut short (1 or 2 bytes left).
  EXPECT_EQ(invalid(with("\x04")), "bad v2 TLV");
  EXPECT_EQ(invalid(with("\x04\x00"s)), "bad v2 TLV");
  EXPECT_EQ(invalid(with(tlv(0x04, "x") + "\x04\x00"s)), "bad v2 TLV");
  // Known TLVs over their bounds or repeated.
  EXPECT_EQ(invalid(with(tlv(0x05, std::string(129, 'u')))), "v2 unique id too long");
  EXPECT_EQ(invalid(with(tlv(0x02, std::string(256, 'a')))), "v2 authority too long");
  EXPECT_EQ(invalid(with(tlv(0x02, "a") + tlv(0x02, "b"))), "v2 duplicate TLV");
  EXPECT_EQ(invalid(with(tlv(0x05, "a") + tlv(0x05, "a"))), "v2 duplicate TLV");
  EXPECT_EQ(invalid(with(tlv(0x03, "abc"))), "bad v2 TLV");
  // The payload after the header is not the header's business: a TLV may not reach into it.
  Header h;
  EXPECT_EQ(parse(with("\x04\x00\x05"
                       "ab"s) +
                      "cdefgh",
                  h),
            Status::Invalid);
}

TEST(ProxyProtocolV2, Crc32c) {
  // RFC 3720 B.4 / the usual check value.
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  // The checksum covers the whole header with its own value zeroed, sent big-endian.
  std::string header = v2(0x21, 0x11, kInetBlock + tlv(0x02, "x.test") + tlv(0x03, "\0\0\0\0"s));
  const uint32_t crc = crc32c(header);
  header.replace(header.size() - 4, 4, be16(crc >> 16) + be16(crc & 0xFFFF));
  Header h = parsed(header);
  EXPECT_EQ(h.authority, "x.test");
  expect_prefixes(header);
  for (size_t i = 16; i < header.size(); ++i) {  // the block: addresses and TLVs
    std::string bad = header;
    bad[i] ^= 0x01;
    EXPECT_EQ(parse(bad, h), Status::Invalid) << i;
  }
  std::string bad = header;
  bad[header.size() - 1] ^= 0x80;
  EXPECT_EQ(invalid(bad), "v2 checksum mismatch");
  EXPECT_EQ(invalid(v2(0x21, 0x11, kInetBlock + tlv(0x03, "\0\0\0\0"s))), "v2 checksum mismatch");
}

// ---------------------------------------------------------------------------------------------
// Encoders

TEST(ProxyProtocolEncode, V2GoldenBytes) {
  // Written by hand from the spec: signature; 0x21 = version 2, PROXY; 0x11 = INET, STREAM;
  // length 12; 192.0.2.1, 198.51.100.7, ports 12345 (0x3039) and 443 (0x01BB).
  const std::string v4 =
      "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
      "\x21\x11\x00\x0C"
      "\xC0\x00\x02\x01"
      "\xC6\x33\x64\x07"
      "\x30\x39\x01\xBB"s;
  EXPECT_EQ(encode_v2(addr("192.0.2.1", 12345), addr("198.51.100.7", 443)), v4);
  // 0x21 = INET6, STREAM; length 36; 2001:db8::1 and ::1, ports 1 and 2.
  const std::string v6 =
      "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
      "\x21\x21\x00\x24"
      "\x20\x01\x0D\xB8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
      "\x00\x01\x00\x02"s;
  EXPECT_EQ(encode_v2(addr("2001:db8::1", 1), addr("::1", 2)), v6);
  // LOCAL, UNSPEC, no block.
  const std::string local = "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A\x20\x00\x00\x00"s;
  EXPECT_EQ(encode_v2(unix_addr(), addr("::1", 2)), local);
}

TEST(ProxyProtocolEncode, V1Text) {
  EXPECT_EQ(encode_v1(addr("192.0.2.1", 12345), addr("198.51.100.7", 443)),
            "PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\n");
  EXPECT_EQ(encode_v1(addr("2001:db8::1", 1), addr("::1", 0)),
            "PROXY TCP6 2001:db8::1 ::1 1 0\r\n");
  // A dual-stack listener sees IPv4 clients as v4-mapped: they go out as TCP4.
  EXPECT_EQ(encode_v1(addr("::ffff:192.0.2.1", 5), addr("::ffff:10.0.0.1", 80)),
            "PROXY TCP4 192.0.2.1 10.0.0.1 5 80\r\n");
  // Mixed families: TCP6, the IPv4 side written v4-mapped.
  EXPECT_EQ(encode_v1(addr("192.0.2.1", 5), addr("2001:db8::2", 80)),
            "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 5 80\r\n");
  EXPECT_EQ(encode_v1(unix_addr(), addr("::1", 80)), "PROXY UNKNOWN\r\n");
  EXPECT_EQ(encode_v1(addr("::1", 80), SocketAddress{}), "PROXY UNKNOWN\r\n");
}

TEST(ProxyProtocolEncode, RoundTrip) {
  struct Pair {
    const char *src, *dst;
    uint16_t sport, dport;
    const char *want_src, *want_dst;  // as parsed back
  };
  const Pair pairs[] = {
      {"192.0.2.1", "198.51.100.7", 12345, 443, "192.0.2.1:12345", "198.51.100.7:443"},
      {"0.0.0.0", "255.255.255.255", 0, 65535, "0.0.0.0:0", "255.255.255.255:65535"},
      {"2001:db8::1", "::1", 1, 2, "[2001:db8::1]:1", "[::1]:2"},
      {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::", 65535, 0,
       "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[::]:0"},
      {"::ffff:192.0.2.1", "::ffff:10.0.0.1", 5, 80, "192.0.2.1:5", "10.0.0.1:80"},
      {"192.0.2.1", "2001:db8::2", 5, 80, "192.0.2.1:5", "[2001:db8::2]:80"},
      {"2001:db8::2", "10.0.0.1", 5, 80, "[2001:db8::2]:5", "10.0.0.1:80"},
  };
  for (const Pair& p : pairs) {
    const SocketAddress src = addr(p.src, p.sport), dst = addr(p.dst, p.dport);
    for (const std::string& wire : {encode_v1(src, dst), encode_v2(src, dst)}) {
      Header h = parsed(wire + "data");
      EXPECT_FALSE(h.local) << p.src;
      EXPECT_EQ(h.length, wire.size());
      EXPECT_EQ(h.source.to_string(), p.want_src);
      EXPECT_EQ(h.destination.to_string(), p.want_dst);
      expect_prefixes(wire);
    }
  }
  for (const std::string& wire :
       {encode_v1(unix_addr(), unix_addr()), encode_v2(unix_addr(), unix_addr())}) {
    Header h = parsed(wire);
    EXPECT_TRUE(h.local);
    EXPECT_EQ(h.length, wire.size());
  }
}

}  // namespace
}  // namespace weir::net::proxy_protocol
