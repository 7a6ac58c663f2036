// net::CidrSet: the access-list address set (issue 11). Exact addresses, every prefix length at
// its boundaries, families, v4-mapped IPv6, overlaps, bad input, the file loader, compressed
// paths (skipped levels) and direct tables, and the trie against a brute-force scan over random
// ranges, for many seeds and sizes.
#include "net/cidr_set.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace weir::net {
namespace {

using u128 = unsigned __int128;

CidrSet make(std::initializer_list<const char*> entries) {
  CidrSetBuilder b;
  for (const char* e : entries) {
    std::string error;
    EXPECT_TRUE(b.add(e, error)) << e << ": " << error;
  }
  return b.build();
}

std::string add_error(const char* text) {
  CidrSetBuilder b;
  std::string error;
  EXPECT_FALSE(b.add(text, error)) << text;
  EXPECT_EQ(b.size(), 0u);
  return error;
}

bool has(const CidrSet& s, const char* ip) {
  auto a = parse_numeric(ip, 80);
  EXPECT_TRUE(a.has_value()) << ip;
  return a && s.contains(*a);
}

void to_bytes(u128 k, uint8_t (&out)[16]) {
  for (int i = 15; i >= 0; --i, k >>= 8)
    out[i] = static_cast<uint8_t>(k);
}

TEST(CidrSet, EmptyContainsNothing) {
  CidrSet s;
  EXPECT_TRUE(s.empty());
  EXPECT_FALSE(has(s, "0.0.0.0"));
  EXPECT_FALSE(has(s, "::"));
  EXPECT_FALSE(has(make({}), "10.0.0.1"));
  sockaddr_storage unix_addr{};
  unix_addr.ss_family = AF_UNIX;
  EXPECT_FALSE(make({"0.0.0.0/0", "::/0"}).contains(unix_addr));
}

TEST(CidrSet, ExactAddresses) {
  CidrSet s = make({"203.0.113.7", "::1", "2001:db8::42"});
  EXPECT_EQ(s.size(), 3u);
  EXPECT_TRUE(has(s, "203.0.113.7"));
  EXPECT_FALSE(has(s, "203.0.113.6"));
  EXPECT_FALSE(has(s, "203.0.113.8"));
  EXPECT_TRUE(has(s, "::1"));
  EXPECT_FALSE(has(s, "::2"));
  EXPECT_FALSE(has(s, "::"));
  EXPECT_TRUE(has(s, "2001:db8::42"));
  EXPECT_FALSE(has(s, "2001:db8::43"));
  EXPECT_FALSE(has(s, "2001:db8::41"));
}

TEST(CidrSet, ZeroAndFullLength) {
  CidrSet all4 = make({"0.0.0.0/0"});
  EXPECT_TRUE(has(all4, "0.0.0.0"));
  EXPECT_TRUE(has(all4, "255.255.255.255"));
  EXPECT_TRUE(has(all4, "10.1.2.3"));
  EXPECT_FALSE(has(all4, "::1"));  // IPv4 ranges say nothing of IPv6
  EXPECT_FALSE(has(all4, "2001:db8::1"));
  EXPECT_TRUE(has(all4, "::ffff:10.1.2.3"));  // ... but v4-mapped clients are IPv4

  CidrSet all6 = make({"::/0"});
  EXPECT_TRUE(has(all6, "::"));
  EXPECT_TRUE(has(all6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
  // ::/0 holds ::ffff:0:0/96, so it holds the IPv4 clients that arrive as v4-mapped and, since
  // they are the same clients, plain IPv4 too.
  EXPECT_TRUE(has(all6, "::ffff:1.2.3.4"));
  EXPECT_TRUE(has(all6, "1.2.3.4"));

  CidrSet host = make({"255.255.255.255/32", "0.0.0.0/32", "::/128",
                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"});
  EXPECT_TRUE(has(host, "255.255.255.255"));
  EXPECT_FALSE(has(host, "255.255.255.254"));
  EXPECT_TRUE(has(host, "0.0.0.0"));
  EXPECT_FALSE(has(host, "0.0.0.1"));
  EXPECT_TRUE(has(host, "::"));
  EXPECT_FALSE(has(host, "::1"));
  EXPECT_TRUE(has(host, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_FALSE(has(host, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"));
}

// For every prefix length: a range in the middle of the address space; its first and last
// addresses are in, the addresses just before and just after are out.
TEST(CidrSet, EveryPrefixLengthBoundaryV4) {
  const uint32_t pattern = 0xA5C3'96E1;
  for (unsigned len = 1; len <= 32; ++len) {
    uint32_t mask = ~uint32_t{0} << (32 - len);
    uint32_t first = pattern & mask;
    uint32_t last = first | ~mask;
    in_addr a{htonl(first)};
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    std::string text = std::string(buf) + "/" + std::to_string(len);
    CidrSetBuilder b;
    std::string error;
    ASSERT_TRUE(b.add(text, error)) << text << ": " << error;
    CidrSet s = b.build();
    SCOPED_TRACE(text);
    EXPECT_TRUE(s.contains_v4(first));
    EXPECT_TRUE(s.contains_v4(last));
    EXPECT_TRUE(s.contains_v4(first + (last - first) / 2));
    EXPECT_FALSE(s.contains_v4(first - 1));
    EXPECT_FALSE(s.contains_v4(last + 1));
  }
}

TEST(CidrSet, EveryPrefixLengthBoundaryV6) {
  const u128 pattern = (u128{0x2001'0db8'a5c3'96e1} << 64) | 0x0f1e'2d3c'4b5a'6978;
  for (unsigned len = 1; len <= 128; ++len) {
    u128 mask = ~u128{0} << (128 - len);
    u128 first = pattern & mask;
    u128 last = first | ~mask;
    uint8_t bytes[16];
    to_bytes(first, bytes);
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, bytes, buf, sizeof buf);
    std::string text = std::string(buf) + "/" + std::to_string(len);
    CidrSetBuilder b;
    std::string error;
    ASSERT_TRUE(b.add(text, error)) << text << ": " << error;
    CidrSet s = b.build();
    SCOPED_TRACE(text);
    uint8_t probe[16];
    to_bytes(first, probe);
    EXPECT_TRUE(s.contains_v6(probe));
    to_bytes(last, probe);
    EXPECT_TRUE(s.contains_v6(probe));
    to_bytes(first - 1, probe);
    EXPECT_FALSE(s.contains_v6(probe));
    to_bytes(last + 1, probe);
    EXPECT_FALSE(s.contains_v6(probe));
  }
}

TEST(CidrSet, FamiliesAreSeparate) {
  // 10.0.0.0/8 and ::a00:0/104 (::10.0.0.0, the deprecated v4-compatible form) share bits but
  // not a family.
  CidrSet v4 = make({"10.0.0.0/8"});
  EXPECT_TRUE(has(v4, "10.9.9.9"));
  EXPECT_FALSE(has(v4, "::a09:909"));
  EXPECT_FALSE(has(v4, "a00::"));
  CidrSet v6 = make({"::a00:0/104", "a00::/8"});
  EXPECT_TRUE(has(v6, "::a09:909"));
  EXPECT_TRUE(has(v6, "a09::1"));
  EXPECT_FALSE(has(v6, "10.9.9.9"));
}

TEST(CidrSet, V4MappedIsLookedUpAsV4) {
  CidrSet s = make({"192.0.2.0/24"});
  EXPECT_TRUE(has(s, "::ffff:192.0.2.1"));
  EXPECT_TRUE(has(s, "::ffff:c000:2ff"));
  EXPECT_FALSE(has(s, "::ffff:192.0.3.1"));
  EXPECT_FALSE(has(s, "::192.0.2.1"));         // v4-compatible is not v4-mapped
  EXPECT_FALSE(has(s, "64:ff9b::192.0.2.1"));  // NAT64 neither

  // A range written in the mapped form is the IPv4 range it denotes.
  CidrSet m = make({"::ffff:10.0.0.0/104", "::ffff:198.51.100.7"});
  EXPECT_TRUE(has(m, "10.200.0.1"));
  EXPECT_TRUE(has(m, "::ffff:10.200.0.1"));
  EXPECT_FALSE(has(m, "11.0.0.0"));
  EXPECT_TRUE(has(m, "198.51.100.7"));
  EXPECT_FALSE(has(m, "198.51.100.8"));
  EXPECT_EQ(m.size(), 2u);

  // ::ffff:0:0/96 is all of IPv4; a shorter range holding it too; one beside it does not.
  EXPECT_TRUE(has(make({"::ffff:0:0/96"}), "203.0.113.9"));
  EXPECT_TRUE(has(make({"::/80"}), "203.0.113.9"));
  EXPECT_FALSE(has(make({"::/96"}), "203.0.113.9"));
  EXPECT_FALSE(has(make({"2001:db8::/32"}), "203.0.113.9"));
}

TEST(CidrSet, OverlappingAndNestedRanges) {
  CidrSet s =
      make({"10.1.2.3", "10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8", "172.16.5.0/24",
            "172.16.0.0/12", "2001:db8:1::/48", "2001:db8::/32", "2001:db8:1:2::/64"});
  EXPECT_EQ(s.size(), 10u);
  EXPECT_TRUE(has(s, "10.1.2.3"));
  EXPECT_TRUE(has(s, "10.255.255.255"));
  EXPECT_FALSE(has(s, "11.0.0.0"));
  EXPECT_FALSE(has(s, "9.255.255.255"));
  EXPECT_TRUE(has(s, "172.31.255.255"));
  EXPECT_FALSE(has(s, "172.32.0.0"));
  EXPECT_TRUE(has(s, "2001:db8:ffff::1"));
  EXPECT_FALSE(has(s, "2001:db9::"));

  // Adjacent ranges that together fill a slot, a gap between them stays out.
  CidrSet adj = make({"192.0.2.0/26", "192.0.2.64/26", "192.0.2.192/26"});
  EXPECT_TRUE(has(adj, "192.0.2.63"));
  EXPECT_TRUE(has(adj, "192.0.2.64"));
  EXPECT_FALSE(has(adj, "192.0.2.128"));
  EXPECT_FALSE(has(adj, "192.0.2.191"));
  EXPECT_TRUE(has(adj, "192.0.2.192"));
  EXPECT_TRUE(has(adj, "192.0.2.255"));
  EXPECT_FALSE(has(adj, "192.0.3.0"));
}

TEST(CidrSet, BadInputsSayWhatIsWrong) {
  EXPECT_EQ(add_error(""), "empty address");
  EXPECT_EQ(add_error("example.com"),
            "'example.com' is not an IPv4 or IPv6 address (numeric only, optionally followed by "
            "/prefix-length)");
  EXPECT_EQ(add_error("256.1.1.1"),
            "'256.1.1.1' is not an IPv4 or IPv6 address (numeric only, optionally followed by "
            "/prefix-length)");
  EXPECT_EQ(add_error("10.0.0/8"), "'10.0.0/8' is not an IPv4 or IPv6 address");
  EXPECT_EQ(add_error("/8"), "'/8' is not an IPv4 or IPv6 address");
  EXPECT_EQ(add_error("fe80::1%eth0"),
            "'fe80::1%eth0' is not an IPv4 or IPv6 address (numeric only, optionally followed by "
            "/prefix-length)");
  EXPECT_EQ(add_error(" 10.0.0.1"),
            "' 10.0.0.1' is not an IPv4 or IPv6 address (numeric only, optionally followed by "
            "/prefix-length)");
  EXPECT_EQ(add_error("[::1]/128"), "'[::1]/128' is not an IPv4 or IPv6 address");
  EXPECT_EQ(add_error("10.0.0.0/33"),
            "'10.0.0.0/33': the prefix length must be a number from 0 to 32 for IPv4");
  EXPECT_EQ(add_error("::/129"),
            "'::/129': the prefix length must be a number from 0 to 128 for IPv6");
  EXPECT_EQ(add_error("10.0.0.0/"),
            "'10.0.0.0/': the prefix length must be a number from 0 to 32 for IPv4");
  EXPECT_EQ(add_error("10.0.0.0/-1"),
            "'10.0.0.0/-1': the prefix length must be a number from 0 to 32 for IPv4");
  EXPECT_EQ(add_error("10.0.0.0/8/8"),
            "'10.0.0.0/8/8': the prefix length must be a number from 0 to 32 for IPv4");
  EXPECT_EQ(add_error("10.0.0.0/+8"),
            "'10.0.0.0/+8': the prefix length must be a number from 0 to 32 for IPv4");
  EXPECT_EQ(add_error("10.0.0.0/0008"),
            "'10.0.0.0/0008': the prefix length must be a number from 0 to 32 for IPv4");
  EXPECT_EQ(add_error("10.1.2.3/8"),
            "'10.1.2.3/8': bits set after the /8 prefix (the range is 10.0.0.0/8)");
  EXPECT_EQ(add_error("2001:db8::1/32"),
            "'2001:db8::1/32': bits set after the /32 prefix (the range is 2001:db8::/32)");
  EXPECT_EQ(add_error("0.0.0.1/0"),
            "'0.0.0.1/0': bits set after the /0 prefix (the range is 0.0.0.0/0)");
}

TEST(CidrSet, EmbeddedNulIsRejected) {
  CidrSetBuilder b;
  std::string error;
  EXPECT_FALSE(b.add(std::string_view("10.0.0.1\0", 9), error));
  EXPECT_NE(error.find("is not an IPv4 or IPv6 address"), std::string::npos);
}

TEST(CidrSet, BuilderIsUnchangedByAnErrorAndEmptyAfterBuild) {
  CidrSetBuilder b;
  std::string error;
  ASSERT_TRUE(b.add("10.0.0.0/8", error));
  EXPECT_FALSE(b.add("10.0.0.0/99", error));
  EXPECT_EQ(b.size(), 1u);
  CidrSet s = b.build();
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_TRUE(b.build().empty());
  EXPECT_TRUE(has(s, "10.0.0.1"));
}

TEST(CidrSet, EntryBound) {
  CidrSetBuilder b;
  std::string error;
  for (size_t i = 0; i < CidrSetBuilder::kMaxEntries; ++i) {
    uint32_t a = htonl(static_cast<uint32_t>(0x0a00'0000 + i));
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    ASSERT_TRUE(b.add(buf, error)) << error;
  }
  EXPECT_FALSE(b.add("192.0.2.1", error));
  EXPECT_EQ(error, "more than 1000000 addresses and ranges");
  CidrSet s = b.build();
  EXPECT_EQ(s.size(), CidrSetBuilder::kMaxEntries);
  EXPECT_TRUE(s.contains_v4(0x0a00'0000 + 999'999));
  EXPECT_FALSE(s.contains_v4(0x0a00'0000 + 1'000'000));
  // 1,000,000 consecutive /32s: a last-level node holds 4 addresses (2 bits), so 250,000 of
  // them and their parents: 6.1 MB, about 6 bytes an entry.
  EXPECT_LT(s.memory_bytes(), 6'200'000u);
}

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    char tmpl[] = "/tmp/weir_cidr_XXXXXX";
    int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    path_ = tmpl;
    EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(CidrSetFile, CommentsBlankLinesCrlfAndSpaces) {
  TempFile f(
      "# deny list\r\n"
      "\r\n"
      "203.0.113.7\r\n"
      "   198.51.100.0/24   # a whole /24\n"
      "\t2001:db8::/32\t\n"
      "\n"
      "   \n"
      "#10.0.0.0/8\n"
      "::1");  // no final newline
  CidrSetBuilder b;
  std::string error;
  ASSERT_TRUE(b.add_file(f.path(), error)) << error;
  CidrSet s = b.build();
  EXPECT_EQ(s.size(), 4u);
  EXPECT_TRUE(has(s, "203.0.113.7"));
  EXPECT_TRUE(has(s, "198.51.100.200"));
  EXPECT_TRUE(has(s, "2001:db8:1::1"));
  EXPECT_TRUE(has(s, "::1"));
  EXPECT_FALSE(has(s, "10.0.0.1"));
}

TEST(CidrSetFile, EmptyFile) {
  TempFile f("");
  CidrSetBuilder b;
  std::string error;
  ASSERT_TRUE(b.add_file(f.path(), error)) << error;
  EXPECT_TRUE(b.build().empty());
}

TEST(CidrSetFile, ErrorsNameTheLine) {
  TempFile f("# header\n10.0.0.0/8\n\r\n192.0.2.1/33\n10.0.0.1\n");
  CidrSetBuilder b;
  std::string error;
  EXPECT_FALSE(b.add_file(f.path(), error));
  EXPECT_EQ(error, f.path() +
                       ":4: '192.0.2.1/33': the prefix length must be a number from 0 to 32 "
                       "for IPv4");

  TempFile g("10.0.0.0/8\n10.0.0.0 /8\n");
  EXPECT_FALSE(CidrSetBuilder().add_file(g.path(), error));
  EXPECT_EQ(error, g.path() + ":2: '10.0.0.0 /8' is not an IPv4 or IPv6 address");

  TempFile h("::1\r\n\r\n1.2.3.4/16\r\n");
  EXPECT_FALSE(CidrSetBuilder().add_file(h.path(), error));
  EXPECT_EQ(error, h.path() +
                       ":3: '1.2.3.4/16': bits set after the /16 prefix (the range is "
                       "1.2.0.0/16)");

  EXPECT_FALSE(CidrSetBuilder().add_file("/nonexistent/deny.txt", error));
  EXPECT_EQ(error, "/nonexistent/deny.txt: cannot open: No such file or directory");
}

TEST(CidrSetFile, LineLengthBound) {
  std::string ok_comment = "# " + std::string(CidrSetBuilder::kMaxLineLength - 2, 'x');
  TempFile f("10.0.0.1\n" + ok_comment + "\n10.0.0.2\n");
  CidrSetBuilder b;
  std::string error;
  ASSERT_TRUE(b.add_file(f.path(), error)) << error;
  EXPECT_EQ(b.size(), 2u);

  TempFile g("10.0.0.1\n10.0.0.2\n" + ok_comment + "x\n");
  EXPECT_FALSE(CidrSetBuilder().add_file(g.path(), error));
  EXPECT_EQ(error, g.path() + ":3: line longer than 4096 bytes");
}

TEST(CidrSetFile, ManyLinesAcrossReadChunks) {
  std::string content;
  for (int i = 0; i < 20000; ++i)
    content += "10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".0/24\r\n";
  TempFile f(content);
  CidrSetBuilder b;
  std::string error;
  ASSERT_TRUE(b.add_file(f.path(), error)) << error;
  CidrSet s = b.build();
  EXPECT_EQ(s.size(), 20000u);
  EXPECT_TRUE(has(s, "10.78.31.9"));  // 20,000 /24s: 10.0.0.0 - 10.78.31.255
  EXPECT_FALSE(has(s, "10.78.32.0"));
}

// The oracle: is `probe` in any of the ranges? (64-bit halves: the unoptimized sanitizer
// build runs this 10^9 times.)
bool brute_force(const std::vector<uint64_t>& flat, u128 probe) {
  const uint64_t hi = static_cast<uint64_t>(probe >> 64), lo = static_cast<uint64_t>(probe);
  const uint64_t* p = flat.data();
  const uint64_t* end = p + flat.size();
  for (; p != end; p += 4)
    if ((((hi ^ p[0]) & p[2]) | ((lo ^ p[1]) & p[3])) == 0) return true;
  return false;
}

// The trie against a linear scan: ~10,000 random ranges per family (prefix lengths biased to
// where real lists live, plus every length sometimes), ~100,000 lookups each, half of them
// derived from a range (so near its edges) to exercise hits as much as misses.
TEST(CidrSetRandom, MatchesBruteForce) {
  std::mt19937_64 rng(20240511);
  struct R {
    u128 key;
    u128 mask;
    unsigned len;
  };
  // Mostly the lengths real lists hold, some exact hosts, a few short ranges (not too many:
  // a handful of /3s would cover everything; /0 to /7 are tested above).
  auto random_len = [&](unsigned bits) -> unsigned {
    uint64_t r = rng() % 64;
    unsigned shortest = bits == 32 ? 8 : 20;
    if (r == 0) return shortest + static_cast<unsigned>(rng() % (bits - shortest + 1));
    if (r < 16) return bits;
    return bits == 32 ? 16 + static_cast<unsigned>(rng() % 17)
                      : 32 + static_cast<unsigned>(rng() % 97);
  };
  auto mask_of = [](unsigned bits, unsigned len) -> u128 {
    u128 full = bits == 32 ? u128{0xffffffffu} : ~u128{0};
    return len == 0 ? 0 : (full << (bits - len)) & full;
  };
  auto random_addr = [&](unsigned bits) -> u128 {
    if (bits == 32) return rng() & 0xffffffffu;
    // Cluster v6 under a few /16s so ranges nest and collide; never v4-mapped.
    static const uint64_t tops[] = {0x2001, 0x2a00, 0xfe80, 0x2001};
    u128 k = (u128{rng()} << 64) | rng();
    k = (k & (~u128{0} >> 16)) | (u128{tops[rng() % 4]} << 112);
    return k;
  };
  for (unsigned bits : {32u, 128u}) {
    SCOPED_TRACE(bits);
    std::vector<R> ranges;
    CidrSetBuilder b;
    std::string error;
    for (int i = 0; i < 10000; ++i) {
      unsigned len = random_len(bits);
      u128 key = random_addr(bits) & mask_of(bits, len);
      ranges.push_back({key, mask_of(bits, len), len});
      char buf[INET6_ADDRSTRLEN];
      if (bits == 32) {
        in_addr a{htonl(static_cast<uint32_t>(key))};
        inet_ntop(AF_INET, &a, buf, sizeof buf);
      } else {
        uint8_t bytes[16];
        to_bytes(key, bytes);
        inet_ntop(AF_INET6, bytes, buf, sizeof buf);
      }
      std::string text = std::string(buf) + "/" + std::to_string(len);
      ASSERT_TRUE(b.add(text, error)) << text << ": " << error;
    }
    CidrSet s = b.build();
    std::vector<uint64_t> flat;  // the ranges as {key hi, key lo, mask hi, mask lo}
    for (const R& r : ranges)
      flat.insert(flat.end(), {static_cast<uint64_t>(r.key >> 64), static_cast<uint64_t>(r.key),
                               static_cast<uint64_t>(r.mask >> 64), static_cast<uint64_t>(r.mask)});
    int hits = 0;
    for (int i = 0; i < 100000; ++i) {
      u128 probe;
      if (i % 2 == 0) {
        const R& r = ranges[rng() % ranges.size()];
        u128 span = ~r.mask;
        switch (rng() % 4) {
          case 0:
            probe = r.key;
            break;
          case 1:
            probe = r.key | span;
            break;
          case 2:
            probe = r.key - 1;  // just before
            break;
          default:
            probe = (r.key | span) + 1;  // just after
        }
        if (bits == 32) probe &= 0xffffffffu;
      } else {
        probe = random_addr(bits);
      }
      bool expected = brute_force(flat, probe);
      bool got;
      if (bits == 32) {
        got = s.contains_v4(static_cast<uint32_t>(probe));
      } else {
        uint8_t bytes[16];
        to_bytes(probe, bytes);
        got = s.contains_v6(bytes);
      }
      hits += got;
      ASSERT_EQ(got, expected) << "probe #" << i;
    }
    // Both answers were exercised plenty.
    EXPECT_GT(hits, 10000);
    EXPECT_LT(hits, 90000);
  }
}

// --- Compressed paths: levels where every range below takes the same slot are skipped, and a
// covered slot is checked against the node's whole prefix at the end.

std::string v6_text(u128 k, unsigned len) {
  uint8_t bytes[16];
  to_bytes(k, bytes);
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, bytes, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(len);
}

bool has6(const CidrSet& s, u128 k) {
  uint8_t bytes[16];
  to_bytes(k, bytes);
  return s.contains_v6(bytes);
}

constexpr u128 kPattern6 = (u128{0x2001'0db8'a5c3'96e1} << 64) | 0x0f1e'2d3c'4b5a'6978;

// One long range alone: the root sits where it ends, every level above is skipped. Flipping any
// one bit of its prefix must miss (the key leaves the path inside the skipped stretch, and the
// slot it lands on at the root may well be covered), flipping a host bit must not.
TEST(CidrSetCompressed, MissesThatDivergeInsideASkip) {
  for (unsigned len : {1u, 5u, 6u, 7u, 48u, 60u, 64u, 66u, 100u, 125u, 126u, 127u, 128u}) {
    const u128 mask = ~u128{0} << (128 - len);
    const u128 first = kPattern6 & mask;
    CidrSetBuilder b;
    std::string error;
    ASSERT_TRUE(b.add(v6_text(first, len), error)) << error;
    CidrSet s = b.build();
    SCOPED_TRACE(v6_text(first, len));
    EXPECT_TRUE(has6(s, first));
    for (unsigned bit = 0; bit < 128; ++bit) {
      const u128 flipped = first ^ (u128{1} << (127 - bit));
      EXPECT_EQ(has6(s, flipped), bit >= len) << "bit " << bit;
    }
  }
  // The same in IPv4.
  for (unsigned len : {1u, 6u, 7u, 24u, 29u, 30u, 31u, 32u}) {
    const uint32_t mask = ~uint32_t{0} << (32 - len);
    const uint32_t first = 0xA5C3'96E1 & mask;
    CidrSetBuilder b;
    std::string error;
    in_addr a{htonl(first)};
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    ASSERT_TRUE(b.add(std::string(buf) + "/" + std::to_string(len), error)) << error;
    CidrSet s = b.build();
    for (unsigned bit = 0; bit < 32; ++bit)
      EXPECT_EQ(s.contains_v4(first ^ (uint32_t{1} << (31 - bit))), bit >= len)
          << buf << "/" << len << " bit " << bit;
  }
}

// Entries that share 100+ bits: the path to where they branch is skipped; addresses that share
// the entries' prefix except one bit anywhere in it miss.
TEST(CidrSetCompressed, EntriesSharingLongPrefixes) {
  const u128 base = kPattern6 & (~u128{0} << 16);  // .../112
  CidrSetBuilder b;
  std::string error;
  std::vector<std::pair<u128, unsigned>> entries = {{base | 0x0100, 120},
                                                    {base | 0x0200, 120},
                                                    {base | 0x0301, 128},
                                                    {base | 0x0400, 126},
                                                    {base | 0xff00, 124}};
  for (auto [k, len] : entries)
    ASSERT_TRUE(b.add(v6_text(k, len), error)) << error;
  CidrSet s = b.build();
  EXPECT_TRUE(has6(s, base | 0x0100));
  EXPECT_TRUE(has6(s, base | 0x01ff));
  EXPECT_TRUE(has6(s, base | 0x02ab));
  EXPECT_TRUE(has6(s, base | 0x0301));
  EXPECT_FALSE(has6(s, base | 0x0300));
  EXPECT_FALSE(has6(s, base | 0x0302));
  EXPECT_TRUE(has6(s, base | 0x0403));
  EXPECT_FALSE(has6(s, base | 0x0404));
  EXPECT_TRUE(has6(s, base | 0xff0f));
  EXPECT_FALSE(has6(s, base | 0xff10));
  EXPECT_FALSE(has6(s, base | 0x00ff));
  EXPECT_FALSE(has6(s, base));
  for (unsigned bit = 0; bit < 112; ++bit) {
    const u128 flip = u128{1} << (127 - bit);
    for (auto [k, len] : entries)
      EXPECT_FALSE(has6(s, k ^ flip)) << v6_text(k, len) << " bit " << bit;
  }
}

// A range that ends part-way into a level next to one that goes on far below: the node where the
// first ends keeps the second as a child several levels down.
TEST(CidrSetCompressed, RangesEndingWhereOthersSkipOn) {
  CidrSet s = make({"2001:db8::/35", "2001:db8:2000:1234:5678::/80", "2001:db8:2000:1234:5679::/80",
                    "2001:db8:4000::/34", "2001:db8:e000::/35", "10.0.0.0/9", "10.200.3.4/31",
                    "10.200.3.128/25"});
  EXPECT_TRUE(has(s, "2001:db8::"));
  EXPECT_TRUE(has(s, "2001:db8:1fff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_FALSE(has(s, "2001:db8:2000::"));
  EXPECT_TRUE(has(s, "2001:db8:2000:1234:5678::1"));
  EXPECT_TRUE(has(s, "2001:db8:2000:1234:5679:ffff:ffff:ffff"));
  EXPECT_FALSE(has(s, "2001:db8:2000:1234:567a::"));
  EXPECT_FALSE(has(s, "2001:db8:2000:1235:5678::"));  // differs inside the skipped levels
  EXPECT_FALSE(has(s, "2001:db8:3000:1234:5678::"));
  EXPECT_FALSE(has(s, "2001:db9:2000:1234:5678::"));
  EXPECT_TRUE(has(s, "2001:db8:4000::"));
  EXPECT_TRUE(has(s, "2001:db8:7fff::1"));
  EXPECT_FALSE(has(s, "2001:db8:8000::"));
  EXPECT_FALSE(has(s, "2001:db8:dfff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_TRUE(has(s, "2001:db8:e000::"));
  EXPECT_TRUE(has(s, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_TRUE(has(s, "10.127.255.255"));
  EXPECT_FALSE(has(s, "10.128.0.0"));
  EXPECT_TRUE(has(s, "10.200.3.5"));
  EXPECT_FALSE(has(s, "10.200.3.6"));
  EXPECT_FALSE(has(s, "10.200.3.3"));
  EXPECT_FALSE(has(s, "10.201.3.4"));
  EXPECT_TRUE(has(s, "10.200.3.255"));
  EXPECT_FALSE(has(s, "10.200.3.127"));
}

// v4-mapped addresses are IPv4 whatever the IPv6 trie holds around ::ffff:0:0/96, including
// long IPv6 entries right beside it (compressed paths sharing 95 or more bits with it).
TEST(CidrSetCompressed, V4MappedBesideLongIPv6Entries) {
  CidrSet s = make({"::fffe:1.2.3.4", "::ffff:1.2.3.4", "::1:ffff:1.2.3.0/120", "1.2.3.5"});
  EXPECT_TRUE(has(s, "::fffe:1.2.3.4"));
  EXPECT_FALSE(has(s, "::fffe:1.2.3.5"));
  EXPECT_TRUE(has(s, "1.2.3.4"));  // ::ffff:1.2.3.4 is the IPv4 address
  EXPECT_TRUE(has(s, "::ffff:1.2.3.4"));
  EXPECT_TRUE(has(s, "::ffff:1.2.3.5"));
  EXPECT_FALSE(has(s, "::ffff:1.2.3.6"));
  EXPECT_TRUE(has(s, "::1:ffff:1.2.3.77"));
  EXPECT_FALSE(has(s, "::1:fffe:1.2.3.77"));
  EXPECT_FALSE(has(s, "::ffff:1.2.3.77"));  // the same low bits, but IPv4 1.2.3.77
  EXPECT_FALSE(has(s, "1.2.3.77"));
  EXPECT_FALSE(has(s, "::1.2.3.4"));
}

// --- Random sets against an oracle, for many seeds: sizes from a handful (no direct table,
// root at level 0) to tens of thousands (12- and 18-bit direct tables), ranges spread over the
// whole space or clustered under one prefix (the root and the direct table sit below it).

// Is the probe in a range? One hash lookup per prefix length: (probe masked to it, length).
struct Oracle {
  struct Hash {
    size_t operator()(const std::pair<u128, unsigned>& r) const {
      uint64_t h = static_cast<uint64_t>(r.first >> 64) * 0x9E3779B97F4A7C15ULL;
      h ^= static_cast<uint64_t>(r.first) + 0x632BE59BD9B4E019ULL + (h << 6) + (h >> 2);
      return static_cast<size_t>(h * 0xBF58476D1CE4E5B9ULL + r.second);
    }
  };
  unsigned bits;
  std::unordered_set<std::pair<u128, unsigned>, Hash> ranges;  // (first address, length)
  u128 mask(unsigned len) const {
    u128 full = bits == 32 ? u128{0xffffffffu} : ~u128{0};
    return len == 0 ? 0 : (full << (bits - len)) & full;
  }
  bool contains(u128 probe) const {
    for (unsigned len = 0; len <= bits; ++len)
      if (ranges.count({probe & mask(len), len})) return true;
    return false;
  }
};

std::string range_text(unsigned bits, u128 key, unsigned len) {
  if (bits == 128) return v6_text(key, len);
  in_addr a{htonl(static_cast<uint32_t>(key))};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(len);
}

// `cluster`: the prefix length all ranges share (0: none); returns the number of hits.
int cross_check(uint64_t seed, unsigned bits, size_t n, unsigned cluster, int probes) {
  std::mt19937_64 rng(seed);
  Oracle o{bits, {}};
  const u128 full = o.mask(bits);
  const u128 top = ((u128{rng()} << 64) | rng()) & o.mask(cluster);
  auto random_addr = [&]() -> u128 {
    u128 k = ((u128{rng()} << 64) | rng()) & full;
    if (bits == 128 && cluster == 0 && rng() % 8 != 0)
      k = (k & (~u128{0} >> 16)) | (u128{0x2001} << 112);  // most under one /16: deep paths
    k = (k & ~o.mask(cluster)) | top;
    // Never v4-mapped (those are IPv4 lookups).
    if (bits == 128 && (k >> 32) == 0xffff) k ^= u128{1} << 40;
    return k;
  };
  // Mostly the lengths of real lists (well below the cluster's), some hosts, a few shorter.
  const unsigned typical = cluster == 0 ? (bits == 32 ? 16 : 32) : cluster + (bits == 32 ? 10 : 12);
  auto random_len = [&]() -> unsigned {
    uint64_t r = rng() % 64;
    if (r == 0) return typical - 4 + static_cast<unsigned>(rng() % (bits - typical + 5));
    if (r < 8) return bits;
    return typical + static_cast<unsigned>(rng() % (bits - typical + 1));
  };
  CidrSetBuilder b;
  std::string error;
  std::vector<std::pair<u128, unsigned>> list;
  while (list.size() < n) {
    unsigned len = random_len();
    u128 key = random_addr() & o.mask(len);
    if (bits == 128 && len >= 96 && (key >> 32) == 0xffff) continue;
    list.emplace_back(key, len);
    o.ranges.insert({key, len});
    if (!b.add(range_text(bits, key, len), error)) {
      ADD_FAILURE() << error;
      return 0;
    }
  }
  CidrSet s = b.build();
  int hits = 0;
  for (int i = 0; i < probes; ++i) {
    u128 probe;
    if (i % 2 == 0) {
      auto [key, len] = list[rng() % list.size()];
      u128 span = ~o.mask(len) & full;
      switch (rng() % 6) {
        case 0:
          probe = key;
          break;
        case 1:
          probe = key | span;
          break;
        case 2:
          probe = (key - 1) & full;
          break;
        case 3:
          probe = ((key | span) + 1) & full;
          break;
        case 4:  // one bit of the prefix flipped: leaves the path at any level, skipped or not
          probe = len == 0 ? key : key ^ (u128{1} << (bits - 1 - rng() % len));
          probe |= span & ((u128{rng()} << 64) | rng());
          break;
        default:
          probe = key | (span & ((u128{rng()} << 64) | rng()));
      }
    } else {
      probe = random_addr();
    }
    if (bits == 128 && (probe >> 32) == 0xffff) continue;
    bool got = bits == 32 ? s.contains_v4(static_cast<uint32_t>(probe)) : has6(s, probe);
    bool expected = o.contains(probe);
    if (got != expected) {
      ADD_FAILURE() << "seed " << seed << " bits " << bits << " n " << n << " cluster " << cluster
                    << ": " << range_text(bits, probe, bits) << " got " << got;
      return hits;
    }
    hits += got;
  }
  return hits;
}

TEST(CidrSetRandom, ManySeedsAndSizes) {
  uint64_t seed = 1;
  for (unsigned bits : {32u, 128u})
    for (size_t n : {size_t{1}, size_t{3}, size_t{10}, size_t{100}, size_t{1000}, size_t{5000}})
      for (unsigned cluster : {0u, 13u, bits == 32 ? 8u : 32u})
        for (int rep = 0; rep < (n <= 100 ? 10 : 2); ++rep) {
          SCOPED_TRACE(seed);
          int hits = cross_check(seed++, bits, n, cluster, 3000);
          EXPECT_GT(hits, 300);
        }
}

// Sets big enough for an 18-bit IPv6 direct table (over 2 MB of nodes) and a 12-bit IPv4 one.
TEST(CidrSetRandom, LargeSetsWithDirectTables) {
  for (unsigned cluster : {0u, 32u}) {
    int hits = cross_check(1000 + cluster, 128, 80000, cluster, 40000);
    EXPECT_GT(hits, 10000);
  }
  for (unsigned cluster : {0u, 8u}) {
    int hits = cross_check(2000 + cluster, 32, 80000, cluster, 40000);
    EXPECT_GT(hits, 10000);
  }
}

}  // namespace
}  // namespace weir::net
