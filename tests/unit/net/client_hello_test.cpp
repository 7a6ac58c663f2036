// net::read_client_hello: SNI and ALPN out of a ClientHello, without TLS. Real hellos from
// OpenSSL (TLS 1.2 and 1.3, with and without SNI, one big enough to span records), the same
// messages re-fragmented into records of every size and fed a byte at a time, the catch-all's
// early "not TLS" answer, and hand-built hellos with each length field broken in turn.
#include "net/client_hello.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace weir::net {
namespace {

using namespace std::string_literals;

std::string be16(size_t v) {
  return {static_cast<char>(v >> 8 & 0xFF), static_cast<char>(v & 0xFF)};
}
std::string be24(size_t v) {
  return static_cast<char>(v >> 16 & 0xFF) + be16(v & 0xFFFF);
}

// ---------------------------------------------------------------------------------------------
// Real hellos from OpenSSL: a client on memory BIOs, stopped after its first flight.

struct ClientOptions {
  const char* sni = nullptr;
  int max_version = TLS1_3_VERSION;
  std::vector<std::string> alpn;
};

std::string openssl_hello(const ClientOptions& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  EXPECT_NE(ctx, nullptr);
  SSL_CTX_set_max_proto_version(ctx, o.max_version);
  SSL* ssl = SSL_new(ctx);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_connect_state(ssl);
  if (o.sni != nullptr) {
    EXPECT_EQ(SSL_set_tlsext_host_name(ssl, o.sni), 1);
  }
  if (!o.alpn.empty()) {
    std::string wire;
    for (const std::string& p : o.alpn)
      wire += static_cast<char>(p.size()) + p;
    // 0 is success for this one.
    EXPECT_EQ(SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()),
                                  static_cast<unsigned>(wire.size())),
              0);
  }
  EXPECT_EQ(SSL_do_handshake(ssl), -1);
  EXPECT_EQ(SSL_get_error(ssl, -1), SSL_ERROR_WANT_READ);
  std::string out(static_cast<size_t>(BIO_pending(wbio)), '\0');
  EXPECT_EQ(BIO_read(wbio, out.data(), static_cast<int>(out.size())), static_cast<int>(out.size()));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return out;
}

// The handshake bytes carried by a run of records (trusted input: our own or OpenSSL's).
std::string unframe(std::string_view records) {
  std::string out;
  while (records.size() >= 5) {
    const size_t len = size_t{uint8_t(records[3])} << 8 | uint8_t(records[4]);
    out.append(records.substr(5, len));
    records.remove_prefix(5 + len);
  }
  return out;
}

size_t record_count(std::string_view records) {
  size_t n = 0;
  while (records.size() >= 5) {
    const size_t len = size_t{uint8_t(records[3])} << 8 | uint8_t(records[4]);
    records.remove_prefix(std::min(records.size(), 5 + len));
    ++n;
  }
  return n;
}

// Handshake bytes into records whose payload sizes `size(i)` gives (the last one cut short).
std::string frame(std::string_view message, const std::function<size_t(size_t)>& size) {
  std::string out;
  for (size_t i = 0; !message.empty(); ++i) {
    const size_t n = std::min(message.size(), size(i));
    out += "\x16\x03\x01"s + be16(n);
    out.append(message.substr(0, n));
    message.remove_prefix(n);
  }
  return out;
}
std::string frame(std::string_view message, size_t each = 16384) {
  return frame(message, [each](size_t) { return each; });
}

// ---------------------------------------------------------------------------------------------
// Hand-built hellos, each field in reach.

struct Hello {
  std::string version = "\x03\x03";
  std::string random = std::string(32, 'r');
  std::string session_id = std::string(32, 's');
  std::string ciphers = "\x13\x01\x13\x02\x00\x2f"s;
  std::string compression = "\x00"s;
  std::vector<std::pair<unsigned, std::string>> extensions;
  bool omit_extensions = false;

  std::string body() const {
    std::string exts;
    for (const auto& [type, data] : extensions)
      exts += be16(type) + be16(data.size()) + data;
    std::string b = version + random + static_cast<char>(session_id.size()) + session_id +
                    be16(ciphers.size()) + ciphers + static_cast<char>(compression.size()) +
                    compression;
    if (!omit_extensions) b += be16(exts.size()) + exts;
    return b;
  }
  std::string message() const { return "\x01"s + be24(body().size()) + body(); }
  std::string records() const { return frame(message()); }
};

std::string host_name_list(const std::string& name) {
  const std::string entry = "\x00"s + be16(name.size()) + name;
  return be16(entry.size()) + entry;
}
std::string alpn_list(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& n : names)
    list += static_cast<char>(n.size()) + n;
  return be16(list.size()) + list;
}

Hello with_sni(const std::string& name) {
  Hello h;
  h.extensions = {
      {0x000a, "\x00\x02\x00\x1d"s}, {0, host_name_list(name)}, {0x002b, "\x02\x03\x04"}};
  return h;
}

// ---------------------------------------------------------------------------------------------
// Checks

ClientHelloInfo expect_done(std::string_view in, size_t max_bytes = kClientHelloMaxBytes) {
  ClientHelloInfo info;
  EXPECT_EQ(read_client_hello(in, info, max_bytes), HelloStatus::Done) << info.error;
  return info;
}

std::string expect_invalid(std::string_view in, size_t max_bytes = kClientHelloMaxBytes) {
  ClientHelloInfo info;
  EXPECT_EQ(read_client_hello(in, info, max_bytes), HelloStatus::Invalid);
  EXPECT_FALSE(info.error.empty());
  EXPECT_TRUE(info.sni.empty());
  return std::string(info.error);
}

// Fed a byte at a time: NeedMore until the last byte of the hello, then Done with the same
// answer as the whole input.
void expect_prefixes(const std::string& records, const std::string& sni) {
  ClientHelloInfo info;
  size_t n = 0;
  for (; n <= records.size(); ++n) {
    const HelloStatus s = read_client_hello(std::string_view(records).substr(0, n), info);
    if (s == HelloStatus::Done) break;
    ASSERT_EQ(s, HelloStatus::NeedMore) << "at " << n << ": " << info.error;
  }
  EXPECT_EQ(n, records.size());  // the hello ends with its last record
  EXPECT_EQ(info.sni, sni);
}

// ---------------------------------------------------------------------------------------------
// OpenSSL's hellos

TEST(ClientHello, Tls13WithSni) {
  const std::string records = openssl_hello({.sni = "www.example.com"});
  ASSERT_GT(records.size(), 100u);
  const ClientHelloInfo info = expect_done(records);
  EXPECT_EQ(info.sni, "www.example.com");
  EXPECT_TRUE(info.alpn.empty());
  expect_prefixes(records, "www.example.com");
  // The sni-only entry point agrees.
  std::string sni;
  EXPECT_EQ(read_client_hello_sni(records, sni), HelloStatus::Done);
  EXPECT_EQ(sni, "www.example.com");
}

TEST(ClientHello, Tls12WithSni) {
  const std::string records =
      openssl_hello({.sni = "api.test", .max_version = TLS1_2_VERSION, .alpn = {"h2", "http/1.1"}});
  const ClientHelloInfo info = expect_done(records);
  EXPECT_EQ(info.sni, "api.test");
  EXPECT_EQ(info.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  expect_prefixes(records, "api.test");
}

TEST(ClientHello, WithoutSni) {
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    const std::string records = openssl_hello({.max_version = version});
    const ClientHelloInfo info = expect_done(records);
    EXPECT_TRUE(info.sni.empty());
    expect_prefixes(records, "");
  }
}

TEST(ClientHello, NameIsLowercased) {
  EXPECT_EQ(expect_done(openssl_hello({.sni = "WWW.Example.COM"})).sni, "www.example.com");
}

TEST(ClientHello, TrailingBytesAreNotLookedAt) {
  const std::string records = openssl_hello({.sni = "a.test"});
  EXPECT_EQ(expect_done(records + "\x17\x03\x03garbage").sni, "a.test");
  EXPECT_EQ(expect_done(records + "\xff").sni, "a.test");
}

// A hello over 16 KiB: OpenSSL itself splits it into records; we split it every other way.
TEST(ClientHello, BigHelloOverManyRecords) {
  std::vector<std::string> alpn;
  for (int i = 0; i < 70; ++i)
    alpn.push_back(std::string(240, static_cast<char>('a' + i % 26)) + std::to_string(i));
  const std::string records = openssl_hello({.sni = "big.test", .alpn = alpn});
  ASSERT_GT(records.size(), 16384u + 5);
  ASSERT_GE(record_count(records), 2u);
  ClientHelloInfo info = expect_done(records);
  EXPECT_EQ(info.sni, "big.test");
  ASSERT_EQ(info.alpn.size(), kMaxAlpnKept);  // the rest were checked, not kept
  EXPECT_EQ(info.alpn[15], alpn[15]);

  const std::string message = unframe(records);
  std::mt19937 rng(7);
  const std::vector<std::function<size_t(size_t)>> sizes = {
      [](size_t) { return size_t{1}; },
      [](size_t) { return size_t{3}; },
      [](size_t) { return size_t{4}; },
      [](size_t) { return size_t{5}; },
      [](size_t) { return size_t{1000}; },
      [](size_t) { return size_t{16384}; },
      [](size_t i) { return i % 2 == 0 ? size_t{1} : size_t{16384}; },
      [&rng](size_t) { return size_t{1} + rng() % 3000; },
  };
  for (const auto& size : sizes) {
    const std::string refragmented = frame(message, size);
    info = expect_done(refragmented, 1 << 20);
    EXPECT_EQ(info.sni, "big.test");
    EXPECT_EQ(info.alpn.size(), kMaxAlpnKept);
    // Cut into TCP segments at arbitrary points: NeedMore up to the end.
    ClientHelloInfo part;
    for (size_t n = 0; n < refragmented.size(); n += 1 + rng() % 4000)
      ASSERT_EQ(read_client_hello(std::string_view(refragmented).substr(0, n), part, 1 << 20),
                HelloStatus::NeedMore)
          << n;
  }
}

TEST(ClientHello, OneByteRecordsFedOneByteAtATime) {
  const std::string message = unframe(openssl_hello({.sni = "tiny.test", .alpn = {"h2"}}));
  for (size_t each : {1, 2, 3, 4, 5, 17}) {
    const std::string records = frame(message, each);
    expect_prefixes(records, "tiny.test");
    EXPECT_EQ(expect_done(records).alpn, std::vector<std::string>{"h2"});
  }
  // The handshake header split over records, then the rest in one.
  expect_prefixes(frame(message, [](size_t i) { return i < 3 ? size_t{1} : size_t{16384}; }),
                  "tiny.test");
}

// ---------------------------------------------------------------------------------------------
// Not TLS, told on the first bytes

TEST(ClientHello, NotTlsOnFirstByte) {
  ClientHelloInfo info;
  EXPECT_EQ(read_client_hello("", info), HelloStatus::NeedMore);
  EXPECT_EQ(read_client_hello("G", info), HelloStatus::NotTls);
  EXPECT_EQ(read_client_hello("GET / HTTP/1.1\r\nHost: a\r\n\r\n", info), HelloStatus::NotTls);
  EXPECT_EQ(read_client_hello("PROXY TCP4 ", info), HelloStatus::NotTls);
  EXPECT_EQ(read_client_hello("\x80\x2e\x01\x03\x01", info), HelloStatus::NotTls);  // SSLv2
  EXPECT_EQ(read_client_hello("\x15\x03\x01\x00\x02", info), HelloStatus::NotTls);  // alert
  EXPECT_EQ(read_client_hello("\x16", info), HelloStatus::NeedMore);
  EXPECT_EQ(read_client_hello("\x16\x03", info), HelloStatus::NeedMore);
  EXPECT_EQ(read_client_hello("\x16\x02", info), HelloStatus::NotTls);
  EXPECT_EQ(read_client_hello("\x16\x04\x00", info), HelloStatus::NotTls);
  EXPECT_EQ(read_client_hello("\x16\x16\x03\x01\x00", info), HelloStatus::NotTls);
}

// ---------------------------------------------------------------------------------------------
// Hand-built hellos

TEST(ClientHello, HandBuilt) {
  const Hello h = with_sni("example.org");
  EXPECT_EQ(expect_done(h.records()).sni, "example.org");
  expect_prefixes(h.records(), "example.org");
  // No extensions at all is a legal (TLS 1.2) hello.
  Hello bare;
  bare.omit_extensions = true;
  EXPECT_TRUE(expect_done(bare.records()).sni.empty());
  // An empty extension block too.
  EXPECT_TRUE(expect_done(Hello{}.records()).sni.empty());
  // A record version of 3.0 or 3.4 is fine (RFC 8446: legacy, ignored).
  std::string records = h.records();
  records[2] = 0x00;
  EXPECT_EQ(expect_done(records).sni, "example.org");
  // Other name types before the host name are skipped by their length.
  Hello other = h;
  other.extensions[1].second = be16(5 + 14) + "\x07\x00\x02xy"s +
                               "\x00\x00\x0b"
                               "example.org"s;
  EXPECT_EQ(expect_done(other.records()).sni, "example.org");
}

TEST(ClientHello, NamesThatAreNotDnsNamesAreNoSni) {
  const std::string label63(63, 'a'), label64(64, 'a');
  std::string name253 = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
  ASSERT_EQ(name253.size(), 253u);
  for (const std::string& good :
       {"a"s, "xn--bcher-kva.example"s, "1.2.3.4"s, "a-b.c-d"s, label63 + ".test", name253}) {
    EXPECT_EQ(expect_done(with_sni(good).records()).sni, good);
  }
  for (const std::string& bad :
       {"bad_name.test"s, "a..b"s, ".a"s, "a."s, "."s, label64 + ".test", name253 + "c", "a b"s,
        "a\0b"s, "caf\xc3\xa9.test"s, "a/b"s, "*.wild.test"s, "host:443"s}) {
    const ClientHelloInfo info = expect_done(with_sni(bad).records());
    EXPECT_TRUE(info.sni.empty()) << testing::PrintToString(bad);
  }
}

TEST(ClientHello, BrokenLengthFields) {
  const auto error = [](const Hello& h) { return expect_invalid(h.records()); };
  Hello h = with_sni("x.test");
  h.version = "\x02\x00"s;
  EXPECT_EQ(error(h), "bad client hello version");
  h = with_sni("x.test");
  h.session_id = std::string(33, 's');
  EXPECT_EQ(error(h), "bad session id");
  h.session_id = "";
  EXPECT_EQ(expect_done(h.records()).sni, "x.test");
  h.ciphers = "";
  EXPECT_EQ(error(h), "bad cipher suites");
  h.ciphers = "\x13\x01\x13"s;
  EXPECT_EQ(error(h), "bad cipher suites");
  h = with_sni("x.test");
  h.compression = "";
  EXPECT_EQ(error(h), "bad compression methods");

  // The extension block's length, one off either way.
  const std::string good = with_sni("x.test").message();
  const size_t ext_len_at = 4 + 2 + 32 + 1 + 32 + 2 + 6 + 1 + 1;
  const size_t ext_len = size_t{uint8_t(good[ext_len_at])} << 8 | uint8_t(good[ext_len_at + 1]);
  ASSERT_EQ(ext_len_at + 2 + ext_len, good.size());
  for (size_t wrong : {ext_len - 1, ext_len + 1, size_t{0}, size_t{0xFFFF}}) {
    std::string m = good;
    m.replace(ext_len_at, 2, be16(wrong));
    EXPECT_EQ(expect_invalid(frame(m)), "bad extensions length") << wrong;
  }
  // A single stray byte after the extensions, or one byte of an extension length.
  {
    Hello extra = with_sni("x.test");
    std::string body = extra.body() + "\x00"s;
    EXPECT_EQ(expect_invalid(frame("\x01"s + be24(body.size()) + body)), "bad extensions length");
  }
  // An extension whose data runs past the block.
  h = with_sni("x.test");
  h.extensions.push_back({0xff01, ""});
  std::string m = h.message();
  m.replace(m.size() - 2, 2, be16(1));
  EXPECT_EQ(expect_invalid(frame(m)), "bad extension length");

  // server_name: list length off, empty list, empty name, two host names, name past the list.
  const std::vector<std::string> bad_sni = {
      be16(10) + "\x00\x00\x06x.test"s,
      be16(8) + "\x00\x00\x06x.test"s,
      be16(0),
      "",
      be16(3) + "\x00\x00\x00"s,
      be16(18) + "\x00\x00\x06x.test"s + "\x00\x00\x06y.test"s,
      be16(9) + "\x00\x00\x07x.test"s,
      be16(9) + "\x00\x00\x06x.test"s + "z",
  };
  for (const std::string& data : bad_sni) {
    h = with_sni("x.test");
    h.extensions[1].second = data;
    EXPECT_EQ(error(h), "bad server_name extension") << testing::PrintToString(data);
  }
  // ALPN: empty list, empty name, name past the list.
  for (const std::string& data : {be16(0), be16(1) + "\x00"s, be16(3) + "\x03h2"s, ""s}) {
    h = with_sni("x.test");
    h.extensions.push_back({16, data});
    EXPECT_EQ(error(h), "bad alpn extension") << testing::PrintToString(data);
  }
  h = with_sni("x.test");
  h.extensions.push_back({16, alpn_list({"h2", "http/1.1"})});
  EXPECT_EQ(expect_done(h.records()).alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  // The same extension twice.
  h.extensions.push_back({0x000a, "\x00\x02\x00\x17"s});
  EXPECT_EQ(error(h), "duplicate extension");
  // Truncated body: the handshake length covers less than the fields claim.
  const std::string body = with_sni("x.test").body();
  for (size_t cut : {size_t{0}, size_t{1}, size_t{34}, size_t{35}, size_t{70}, size_t{75}}) {
    std::string short_body = body.substr(0, cut);
    const std::string error_text =
        expect_invalid(frame("\x01"s + be24(short_body.size()) + short_body));
    EXPECT_TRUE(error_text == "truncated client hello" || error_text == "bad compression methods" ||
                error_text == "bad cipher suites")
        << cut << ": " << error_text;
  }
}

TEST(ClientHello, BrokenRecords) {
  const std::string message = with_sni("x.test").message();
  const std::string two = frame(message, 50);
  ASSERT_GE(record_count(two), 2u);
  // Zero-length and oversized records.
  EXPECT_EQ(expect_invalid("\x16\x03\x01\x00\x00"s + two), "empty handshake record");
  EXPECT_EQ(expect_invalid("\x16\x03\x01\x40\x01"s), "record too long");
  EXPECT_EQ(expect_invalid("\x16\x03\x01\xFF\xFF"s), "record too long");
  EXPECT_EQ(expect_done("\x16\x03\x01\x40\x00"s + message).sni, "x.test");
  // Another content type, or version, in the middle of the hello.
  std::string m = two;
  m[55] = 23;
  EXPECT_EQ(expect_invalid(m), "unexpected record type");
  m = two;
  m[55] = 20;  // change_cipher_spec
  EXPECT_EQ(expect_invalid(m), "unexpected record type");
  m = two;
  m[56] = 2;
  EXPECT_EQ(expect_invalid(m), "bad record version");
  m = two;
  m[58] = 0;
  m[59] = 0;
  EXPECT_EQ(expect_invalid(m), "empty handshake record");
  // A handshake message other than ClientHello.
  std::string server_hello = message;
  server_hello[0] = 2;
  EXPECT_EQ(expect_invalid(frame(server_hello)), "not a client hello");
  EXPECT_EQ(expect_invalid("\x16\x03\x01\x00\x01\x00"s), "not a client hello");
  // A handshake length longer than what follows: NeedMore, never a read past the end.
  std::string longer = message;
  longer.replace(1, 3, be24(message.size() - 4 + 100));
  ClientHelloInfo info;
  EXPECT_EQ(read_client_hello(frame(longer), info), HelloStatus::NeedMore);
  // Shorter: the hello ends early, its last fields cut off.
  std::string shorter = message;
  shorter.replace(1, 3, be24(message.size() - 4 - 3));
  EXPECT_EQ(expect_invalid(frame(shorter)), "bad extensions length");
}

TEST(ClientHello, MaxBytes) {
  const std::string records = with_sni("x.test").records();
  EXPECT_EQ(expect_done(records, records.size()).sni, "x.test");
  EXPECT_EQ(expect_invalid(records, records.size() - 1), "client hello too large");
  // A declared handshake length over the bound fails as soon as it is read.
  const std::string huge = "\x16\x03\x01\x40\x00\x01"s + be24(70000);
  EXPECT_EQ(expect_invalid(huge), "client hello too large");
  ClientHelloInfo info;
  EXPECT_EQ(read_client_hello("\x16\x03\x01\x40\x00\x01"s + be24(60000), info),
            HelloStatus::NeedMore);
  // Many small records: the framing counts towards the bound too.
  const std::string message = with_sni("x.test").message();
  const std::string ones = frame(message, 1);
  EXPECT_EQ(expect_done(ones, ones.size()).sni, "x.test");
  EXPECT_EQ(expect_invalid(ones, ones.size() - 1), "client hello too large");
  EXPECT_EQ(expect_invalid(ones, message.size() + 10), "client hello too large");
  // The default bound stops a stream of tiny records that never completes the hello.
  std::string endless = "\x16\x03\x01\x00\x04\x01"s + be24(60000);
  while (endless.size() < 80 * 1024)
    endless += "\x16\x03\x01\x00\x01z"s;
  EXPECT_EQ(expect_invalid(endless), "client hello too large");
}

TEST(ClientHello, GarbledNeverCrashes) {
  const std::vector<std::string> seeds = {
      openssl_hello({.sni = "www.example.com", .alpn = {"h2", "http/1.1"}}),
      frame(unframe(openssl_hello({.sni = "a.test", .max_version = TLS1_2_VERSION})), 7),
      with_sni("x.test").records(),
  };
  std::mt19937 rng(42);
  size_t verdicts[4] = {};
  for (const std::string& seed : seeds) {
    for (int round = 0; round < 3000; ++round) {
      std::string m = seed;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k)
        m[rng() % m.size()] = static_cast<char>(rng());
      if (rng() % 4 == 0) m.resize(rng() % m.size());
      ClientHelloInfo whole;
      const HelloStatus s = read_client_hello(m, whole);
      ++verdicts[static_cast<int>(s)];
      // A random prefix never contradicts the whole.
      ClientHelloInfo part;
      const size_t n = m.empty() ? 0 : rng() % m.size();
      const HelloStatus p = read_client_hello(std::string_view(m).substr(0, n), part);
      if (p != HelloStatus::NeedMore) {
        EXPECT_EQ(p, s);
        EXPECT_EQ(part.sni, whole.sni);
        EXPECT_EQ(part.error, whole.error);
      }
      if (s == HelloStatus::Invalid) {
        EXPECT_FALSE(whole.error.empty());
      }
    }
  }
  // The mutations reach every verdict.
  EXPECT_GT(verdicts[static_cast<int>(HelloStatus::Done)], 0u);
  EXPECT_GT(verdicts[static_cast<int>(HelloStatus::Invalid)], 0u);
  EXPECT_GT(verdicts[static_cast<int>(HelloStatus::NeedMore)], 0u);
  EXPECT_GT(verdicts[static_cast<int>(HelloStatus::NotTls)], 0u);
}

}  // namespace
}  // namespace weir::net
