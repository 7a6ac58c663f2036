#pragma once
// A set of IPv4 and IPv6 addresses and CIDR ranges with an "is this address in it?" lookup whose
// cost is bounded by the address width, not by the number of entries (the `access` allow/deny
// lists and `trusted_proxies`, issue 11).
//
// Build once (config load, SIGHUP) with a CidrSetBuilder, then share the immutable CidrSet with
// every worker (e.g. in a shared_ptr<const CidrSet>): lookups read only, take no lock and
// allocate nothing.
//
// Layout: one multibit trie per family, stride 6 bits, every node's children stored contiguously
// and found by popcount (Poptrie, Asai & Ohara, SIGCOMM 2015, without its leaf vector since the
// answer is a single bit). A node is 24 bytes:
//   children : bit s set → slot s has a child node, at base + popcount(children below s)
//   covered  : bit s set → every address in slot s is in the set (a range ends here)
//   base     : index of the node's first child in the family's one node vector
// Ranges are normalized before building: a range covered by another is dropped, so the trie
// holds disjoint ranges and a lookup stops at the first covered slot (hit) or empty slot (miss).
// A lookup reads at most 6 nodes for IPv4 (32 = 5×6 + 2 bits) and 22 for IPv6 (128 = 21×6 + 2),
// whatever the number of entries; in practice it stops after ceil(prefix/6) nodes on a hit and
// after about log64(entries) + 1 nodes on a miss.
//
// Memory (nodes only; the builder's list is freed by build()): each entry adds at most one node
// per 6-bit level below the root, so in the worst case (no shared prefixes)
//   IPv4: 5 nodes = 120 bytes per entry (a /32; a /24 needs 4 = 96 bytes)
//   IPv6: 21 nodes = 504 bytes per entry (a /128; a /64 needs 11 = 264 bytes, a /48 8 = 192)
// and far less when entries share prefixes. memory_bytes() gives the figure for a built set.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are looked up as IPv4, and a range written in
// that form (::ffff:10.0.0.0/104) is stored as the IPv4 range it denotes (10.0.0.0/8). An IPv6
// range that contains all of ::ffff:0:0/96 (e.g. ::/0) also covers every IPv4 address.
//
// Syntax of an entry: an address ("203.0.113.7", "::1") or an address and a prefix length
// ("198.51.100.0/24", "2001:db8::/32"), numeric only, no zone id, no spaces. Host bits set
// beyond the prefix ("10.1.2.3/8") are an error that names the range meant (10.0.0.0/8): on a
// deny list, silently widening a typo to a whole /8 is worse than refusing the config.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "net/address.hpp"

namespace weir::net {

class CidrSet {
 public:
  // One trie node; see the header comment.
  struct Node {
    uint64_t children = 0;
    uint64_t covered = 0;
    uint32_t base = 0;
  };

  CidrSet();  // empty: contains nothing

  // The hot path: no allocation, no lock. Families other than AF_INET/AF_INET6 → false.
  bool contains(const SocketAddress& a) const { return contains(a.storage); }
  bool contains(const sockaddr_storage& ss) const;
  bool contains_v4(uint32_t addr) const;              // host byte order
  bool contains_v6(const uint8_t (&addr)[16]) const;  // network byte order; v4-mapped → v4

  // Entries given to the builder (redundant ones included); bytes held by the tries.
  size_t size() const { return entries_; }
  bool empty() const { return entries_ == 0; }
  size_t memory_bytes() const;

 private:
  friend class CidrSetBuilder;
  std::vector<Node> v4_;  // v4_[0] and v6_[0] are the roots; always present
  std::vector<Node> v6_;
  size_t entries_ = 0;
};

class CidrSetBuilder {
 public:
  // Bound on the entries of one set (add + add_file together): 1,000,000. At the worst case
  // above that is at most 120 MB of IPv4 or 504 MB of IPv6 /128s; real lists share prefixes.
  static constexpr size_t kMaxEntries = 1'000'000;
  // Bound on one line of a file (comment included), newline excluded.
  static constexpr size_t kMaxLineLength = 4096;

  // Adds one address or range. Returns false and sets `error` to what is wrong (the text
  // quoted) when it is not valid; the builder is then unchanged.
  bool add(std::string_view text, std::string& error);

  // Adds every entry of a file: one address or range per line, '#' starts a comment (whole line
  // or after the entry), blank lines and surrounding spaces/tabs/CR ignored. Stops at the first
  // error with `error` = "PATH:LINE: message"; entries of the file before it stay added, so
  // discard the builder on failure (the config is rejected whole).
  bool add_file(const std::string& path, std::string& error);

  size_t size() const { return entries_; }

  // Builds the immutable set; the builder is left empty.
  CidrSet build();

 private:
  struct Range {
    unsigned __int128 key = 0;  // the address as a number (IPv4: in the low 32 bits)
    unsigned len = 0;           // prefix length
  };
  std::vector<Range> v4_;
  std::vector<Range> v6_;
  size_t entries_ = 0;
};

}  // namespace weir::net
