// net::CidrSet: the access-list address set (issue 11). Exact addresses, every prefix length at
// its boundaries, families, v4-mapped IPv6, overlaps, bad input, the file loader, and the trie
// against a brute-force scan over random ranges.
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

}  // namespace
}  // namespace weir::net
