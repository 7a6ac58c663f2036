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
// answer is a single bit), with single-child chains compressed away (a path-compressed or
// Patricia trie, at stride granularity). A node:
//   children : bit s set → slot s has a child node, at base + popcount(children below s)
//   covered  : bit s set → every address in slot s is in the set (a range ends here)
//   base     : index of the node's first child in the family's one node vector
//   level    : which 6 bits the node's slots index (bits 6·level to 6·level + 5)
//   prefix   : the 6·level bits above, shared by every range under the node
// A child need not sit one level below its parent: the levels in between, where every range
// below took the same slot and none ended (a chain of one-child nodes), are skipped, and the
// lookup does not look at the key's bits there. It checks them once, at the end: a covered slot
// is a hit only if the key starts with that node's prefix. (A key that leaves the ranges' path
// inside a skipped stretch holds none of them: on an empty slot that is already the answer, on
// a covered slot the prefix check says so.) A node is 24 bytes for IPv4 (prefix: 32 bits) and
// 40 for IPv6 (128 bits); base and level share 32 bits (27 + 5).
// Ranges are normalized before building: a range covered by another is dropped, so the trie
// holds disjoint ranges and a lookup stops at the first covered slot (hit) or empty slot (miss).
// Big tries (nodes over 32 KB) also get a direct table (Poptrie's "direct pointing"): one
// 32-bit entry for each value of the 12 or 18 bits after the root's prefix, saying "miss",
// "hit", or which node to go on from; a lookup checks the root's prefix, reads the entry and
// skips the two or three nodes it stands for. 18 bits (1 MB) only for IPv6 tries over 2 MB, 12
// bits (16 KB) otherwise: the table is never more than half the nodes' size.
// Every node but the root has two or more children, or ends a range; so a lookup reads one node
// per point where the entries on its path branch, plus the one where its range ends: at most 6
// nodes for IPv4 (32 = 5×6 + 2 bits) and 22 for IPv6 (128 = 21×6 + 2), and that only for
// entries built to branch at every level. Measured with random entries (bench/micro, mean per
// hit): 10 entries: 2-2.7 nodes; 1,000: 3.2 (IPv4) or a table entry and 1.9 nodes (IPv6);
// 100,000: a table entry and 1.8 (IPv4) or 2 (IPv6) nodes. A miss reads about one node fewer.
//
// Memory (the builder's list is freed by build()): kept ranges R give at most 2R + 1
// nodes whatever their lengths (a range ends in one node; a node without an ending range has
// two or more children), so in the worst case
//   IPv4: 48 bytes per entry     IPv6: 80 bytes per entry
// plus the direct table (16 KB, or 1 MB for a big IPv6 trie), and less when entries share nodes
// (many ranges end in the same node: 1,000,000 consecutive /32s take 6 bytes each). Random entries
// (bench/micro): IPv4 18-30 bytes per entry, IPv6 52-70. memory_bytes() gives the figure for a
// built set.
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
  // Trie nodes, one type a family; see the header comment.
  struct Node4 {
    uint64_t children = 0;
    uint64_t covered = 0;
    uint32_t base_level = 0;  // base | level << 27
    uint32_t prefix = 0;
  };
  struct Node6 {
    uint64_t children = 0;
    uint64_t covered = 0;
    uint64_t prefix_hi = 0;
    uint64_t prefix_lo = 0;
    uint32_t base_level = 0;
  };
  // One family's trie: nodes[0] is the root (always present); `direct`, when not empty, holds
  // 2^direct_bits entries for the bits after the root's prefix (see the header comment).
  template <class Node>
  struct Trie {
    std::vector<Node> nodes = std::vector<Node>(1);
    std::vector<uint32_t> direct;
    unsigned direct_shift = 0;  // index = (key >> direct_shift) & (direct.size() - 1)
  };

  CidrSet();  // empty: contains nothing

  // The hot path: no allocation, no lock. Families other than AF_INET/AF_INET6 → false.
  bool contains(const SocketAddress& a) const { return contains(a.storage); }
  bool contains(const sockaddr_storage& ss) const {
    return contains(reinterpret_cast<const sockaddr*>(&ss));
  }
  bool contains(const PeerAddress& a) const;
  bool contains(const sockaddr* sa) const;            // reads only what its family says is there
  bool contains_v4(uint32_t addr) const;              // host byte order
  bool contains_v6(const uint8_t (&addr)[16]) const;  // network byte order; v4-mapped → v4

  // Entries given to the builder (redundant ones included); bytes held by the tries.
  size_t size() const { return entries_; }
  bool empty() const { return entries_ == 0; }
  size_t memory_bytes() const;

 private:
  friend class CidrSetBuilder;
  Trie<Node4> v4_;
  Trie<Node6> v6_;
  size_t entries_ = 0;
};

class CidrSetBuilder {
 public:
  // Bound on the entries of one set (add + add_file together): 1,000,000. At the worst case
  // above that is at most 48 MB of IPv4 or 81 MB of IPv6 (nodes and direct table).
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
