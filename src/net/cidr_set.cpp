#include "net/cidr_set.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>

namespace weir::net {
namespace {

using u128 = unsigned __int128;
using Node4 = CidrSet::Node4;
using Node6 = CidrSet::Node6;

constexpr unsigned kStride = 6;  // 64 slots a node: one uint64_t bitmap each for children, covered
constexpr unsigned kBaseBits = 27;  // base_level: the first child's index | level << 27
constexpr uint32_t kBaseMask = (uint32_t{1} << kBaseBits) - 1;

// The node types' prefixes as numbers (IPv4: 32 bits, IPv6: 128).
inline uint32_t prefix_of(const Node4& n) {
  return n.prefix;
}
inline u128 prefix_of(const Node6& n) {
  return (u128{n.prefix_hi} << 64) | n.prefix_lo;
}
inline void set_prefix(Node4& n, u128 p) {
  n.prefix = static_cast<uint32_t>(p);
}
inline void set_prefix(Node6& n, u128 p) {
  n.prefix_hi = static_cast<uint64_t>(p >> 64);
  n.prefix_lo = static_cast<uint64_t>(p);
}

// The 6-bit slot of `key` at `level`, counting from the most significant bit; the last level of
// a family is padded with zero bits (IPv4: 32 = 5×6 + 2, IPv6: 128 = 21×6 + 2).
template <class Key, unsigned Bits>
inline unsigned slot(Key key, unsigned level) {
  unsigned end = kStride * level + kStride;
  if (end <= Bits) return static_cast<unsigned>(key >> (Bits - end)) & 63;
  return static_cast<unsigned>(key << (end - Bits)) & 63;
}

inline unsigned level_of(const Node4& n) {
  return n.base_level >> kBaseBits;
}
inline unsigned level_of(const Node6& n) {
  return n.base_level >> kBaseBits;
}

// Entries of a direct table: a miss, a hit, or kFirstNode + the index of a node.
constexpr uint32_t kMiss = 0;
constexpr uint32_t kCovered = 1;
constexpr uint32_t kFirstNode = 2;

// Whether `key` starts with the prefix of node `n` (at `level`: its first 6·level bits).
template <class Key, unsigned Bits, class Node>
inline bool under(const Node& n, unsigned level, Key key) {
  return level == 0 || ((key ^ prefix_of(n)) >> (Bits - kStride * level)) == 0;
}

template <class Key, unsigned Bits, class Node>
inline bool lookup(const CidrSet::Trie<Node>& t, Key key) {
  const Node* n = t.nodes.data();
  if (!t.direct.empty()) {
    // The table's entries are answers for the bits after the root's prefix: check that first.
    if (!under<Key, Bits>(*n, level_of(*n), key)) return false;
    uint32_t e = t.direct[static_cast<size_t>(key >> t.direct_shift) & (t.direct.size() - 1)];
    if (e < kFirstNode) return e == kCovered;
    n = t.nodes.data() + (e - kFirstNode);
  }
  for (;;) {
    const unsigned level = level_of(*n);
    const uint64_t bit = uint64_t{1} << slot<Key, Bits>(key, level);
    // The levels skipped on the way to a node were not looked at: a covered slot is a hit only
    // if the key starts with the node's prefix.
    if (n->covered & bit) return under<Key, Bits>(*n, level, key);
    if (!(n->children & bit)) return false;
    n = t.nodes.data() + (n->base_level & kBaseMask) + std::popcount(n->children & (bit - 1));
  }
}

// Range: CidrSetBuilder's {u128 key; unsigned len;} (private there, hence the templates).
template <unsigned Bits, class Range>
bool covers(const Range& outer, const Range& inner) {
  if (outer.len > inner.len) return false;
  if (outer.len == 0) return true;
  return ((outer.key ^ inner.key) >> (Bits - outer.len)) == 0;
}

// The level of the node that holds the sorted ranges [b, e) (all in one slot of the parent at
// `above`, or the root's ranges with above = -1): the first level below `above` where two of
// them take different slots or one of them ends. The single-child levels before it are skipped.
template <unsigned Bits, class It>
unsigned node_level(It b, It e, int above) {
  const u128 diff = b->key ^ std::prev(e)->key;  // sorted: the first and last differ the most
  unsigned common = Bits;                        // leading bits all of them share
  if (diff != 0) {
    const uint64_t hi = static_cast<uint64_t>(diff >> 64), lo = static_cast<uint64_t>(diff);
    unsigned zeros =
        static_cast<unsigned>(hi != 0 ? std::countl_zero(hi) : 64 + std::countl_zero(lo));
    common = zeros - (128 - Bits);
  }
  unsigned shortest = Bits;
  for (It it = b; it != e; ++it)
    shortest = std::min(shortest, it->len);
  // Level j can be skipped iff they all share its slot (common ≥ 6j + 6) and none ends in it
  // (shortest > 6j + 6).
  int by_common = static_cast<int>(common / kStride);
  int by_end = static_cast<int>((shortest + kStride - 1) / kStride) - 1;
  return static_cast<unsigned>(std::max(above + 1, std::min(by_common, by_end)));
}

// Fills nodes[idx], at `level`, from the sorted, disjoint ranges [b, e), all longer than
// kStride × level bits and sharing their first kStride × level bits, then its children
// (appended as one block).
template <class Key, unsigned Bits, class Node, class It>
void build_node(std::vector<Node>& nodes, uint32_t idx, unsigned level, It b, It e) {
  const unsigned end = kStride * level + kStride;
  uint64_t children = 0, covered = 0;
  for (It it = b; it != e; ++it) {
    unsigned s = slot<Key, Bits>(static_cast<Key>(it->key), level);
    if (it->len <= end) {
      unsigned free_bits = end - it->len;  // slot bits left free by the prefix: 2^free slots
      covered |=
          free_bits == kStride ? ~uint64_t{0} : ((uint64_t{1} << (1u << free_bits)) - 1) << s;
    } else {
      children |= uint64_t{1} << s;
    }
  }
  // At most 2 × 1,000,000 + 1 nodes (kMaxEntries; see the header comment): base fits 27 bits.
  uint32_t base = static_cast<uint32_t>(nodes.size());
  nodes.resize(nodes.size() + static_cast<size_t>(std::popcount(children)));
  Node& n = nodes[idx];
  n.children = children;
  n.covered = covered;
  n.base_level = base | level << kBaseBits;
  const u128 mask = level == 0 ? 0 : ~u128{0} << (128 - kStride * level);
  set_prefix(n, level == 0 || b == e ? 0 : b->key & (mask >> (128 - Bits)));
  uint32_t child = base;
  for (It it = b; it != e;) {
    if (it->len <= end) {
      ++it;
      continue;
    }
    unsigned s = slot<Key, Bits>(static_cast<Key>(it->key), level);
    It group_end = it;
    while (group_end != e && group_end->len > end &&
           slot<Key, Bits>(static_cast<Key>(group_end->key), level) == s)
      ++group_end;
    unsigned child_level = node_level<Bits>(it, group_end, static_cast<int>(level));
    build_node<Key, Bits>(nodes, child++, child_level, it, group_end);
    it = group_end;
  }
}

// Points the direct table's entries under node `idx` at answers or at the first nodes below the
// table's levels (first_below).
template <unsigned Bits, class Node>
void fill_direct(CidrSet::Trie<Node>& t, uint32_t idx, unsigned first_below) {
  const Node& n = t.nodes[idx];
  const unsigned level = level_of(n);
  const size_t mask = t.direct.size() - 1;
  const size_t at = static_cast<size_t>(prefix_of(n) >> t.direct_shift) & mask;
  if (level >= first_below) {
    t.direct[at] = idx + kFirstNode;
    return;
  }
  const size_t span = size_t{1} << (kStride * (first_below - level - 1));  // entries a slot
  for (unsigned s = 0; s < 64; ++s) {
    const uint64_t bit = uint64_t{1} << s;
    if (n.covered & bit) {
      std::fill_n(t.direct.begin() + static_cast<ptrdiff_t>(at + s * span), span, kCovered);
    } else if (n.children & bit) {
      uint32_t child =
          (n.base_level & kBaseMask) + static_cast<uint32_t>(std::popcount(n.children & (bit - 1)));
      fill_direct<Bits>(t, child, first_below);
    }
  }
}

// A big trie gets a direct table for the 12 or 18 bits after its root's prefix (Poptrie's
// "direct pointing"): it replaces the top two or three nodes of every lookup with one read. Only
// when the table is no bigger than half the nodes, and over at most half the address (IPv4: 12
// bits; its trie is at most 6 deep anyway, and a wider table would mostly be its nodes again,
// flattened).
template <unsigned Bits, class Node>
void add_direct(CidrSet::Trie<Node>& t) {
  const size_t node_bytes = t.nodes.size() * sizeof(Node);
  const unsigned root_level = level_of(t.nodes[0]);
  for (unsigned bits : {18u, 12u}) {
    const size_t table_bytes = sizeof(uint32_t) << bits;
    // The table's levels must be whole 6-bit levels (not the padded last one).
    if (table_bytes * 2 > node_bytes || bits > Bits / 2 ||
        root_level + bits / kStride > Bits / kStride)
      continue;
    t.direct.assign(size_t{1} << bits, kMiss);
    t.direct_shift = Bits - kStride * root_level - bits;
    fill_direct<Bits>(t, 0, root_level + bits / kStride);
    return;
  }
}

template <class Key, unsigned Bits, class Node, class Range>
CidrSet::Trie<Node> build_trie(std::vector<Range>& ranges) {
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.key != b.key ? a.key < b.key : a.len < b.len;
  });
  // Sorted by address then length, a range is covered by some kept range only if it is covered
  // by the last one kept (kept ranges are disjoint and in order).
  std::vector<Range> kept;
  kept.reserve(ranges.size());
  for (const Range& r : ranges)
    if (kept.empty() || !covers<Bits>(kept.back(), r)) kept.push_back(r);
  std::vector<Range>().swap(ranges);  // the builder is left empty

  // The root sits at the level where the set's ranges first branch or one ends.
  CidrSet::Trie<Node> t;
  unsigned root_level = kept.empty() ? 0 : node_level<Bits>(kept.cbegin(), kept.cend(), -1);
  build_node<Key, Bits>(t.nodes, 0, root_level, kept.cbegin(), kept.cend());
  t.nodes.shrink_to_fit();
  add_direct<Bits>(t);
  return t;
}

u128 load_v6(const uint8_t* p) {
  u128 k = 0;
  for (int i = 0; i < 16; ++i)
    k = (k << 8) | p[i];
  return k;
}

bool is_v4_mapped(const uint8_t* p) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(p, kPrefix, 12) == 0;
}

std::string format_range(int family, u128 key, unsigned len) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (family == AF_INET) {
    in_addr a{};
    a.s_addr = htonl(static_cast<uint32_t>(key));
    inet_ntop(AF_INET, &a, buf, sizeof buf);
  } else {
    in6_addr a{};
    for (int i = 15; i >= 0; --i, key >>= 8)
      a.s6_addr[i] = static_cast<uint8_t>(key);
    inet_ntop(AF_INET6, &a, buf, sizeof buf);
  }
  return std::string(buf) + "/" + std::to_string(len);
}

}  // namespace

// Each step of a lookup counts bits; the x86-64 baseline has no POPCNT instruction (std::popcount
// becomes a libgcc call there), so the lookups are also built for CPUs that have it (every one
// since 2008) and the loader picks the version (an ifunc).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WEIR_LOOKUP_CLONES __attribute__((target_clones("popcnt", "default")))
#else
#define WEIR_LOOKUP_CLONES
#endif

CidrSet::CidrSet() = default;

WEIR_LOOKUP_CLONES bool CidrSet::contains_v4(uint32_t addr) const {
  return lookup<uint32_t, 32>(v4_, addr);
}

WEIR_LOOKUP_CLONES bool CidrSet::contains_v6(const uint8_t (&addr)[16]) const {
  if (is_v4_mapped(addr)) {
    uint32_t v4 = (uint32_t{addr[12]} << 24) | (uint32_t{addr[13]} << 16) |
                  (uint32_t{addr[14]} << 8) | addr[15];
    return contains_v4(v4);
  }
  uint64_t hi, lo;
  std::memcpy(&hi, addr, 8);
  std::memcpy(&lo, addr + 8, 8);
  u128 key = (u128{be64toh(hi)} << 64) | be64toh(lo);
  return lookup<u128, 128>(v6_, key);
}

bool CidrSet::contains(const PeerAddress& a) const {
  if (a.family() == AF_INET) {
    uint32_t v4;
    std::memcpy(&v4, a.bytes, 4);
    return contains_v4(ntohl(v4));
  }
  if (a.family() == AF_INET6) return contains_v6(a.bytes);
  return false;
}

bool CidrSet::contains(const sockaddr* sa) const {
  if (sa->sa_family == AF_INET)
    return contains_v4(ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr));
  if (sa->sa_family == AF_INET6)
    return contains_v6(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr);
  return false;
}

size_t CidrSet::memory_bytes() const {
  return v4_.nodes.capacity() * sizeof(Node4) + v4_.direct.capacity() * sizeof(uint32_t) +
         v6_.nodes.capacity() * sizeof(Node6) + v6_.direct.capacity() * sizeof(uint32_t);
}

bool CidrSetBuilder::add(std::string_view text, std::string& error) {
  auto quoted = [&] { return "'" + std::string(text) + "'"; };
  if (text.empty()) {
    error = "empty address";
    return false;
  }
  if (entries_ >= kMaxEntries) {
    error = "more than " + std::to_string(kMaxEntries) + " addresses and ranges";
    return false;
  }
  std::string_view addr_text = text, len_text;
  bool has_len = false;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr_text = text.substr(0, slash);
    len_text = text.substr(slash + 1);
    has_len = true;
  }
  char buf[INET6_ADDRSTRLEN + 1];
  int family = 0;
  u128 key = 0;
  uint8_t bytes[16];
  if (!addr_text.empty() && addr_text.size() < sizeof buf) {
    std::memcpy(buf, addr_text.data(), addr_text.size());
    buf[addr_text.size()] = '\0';
    if (std::memchr(buf, '\0', addr_text.size()) == nullptr) {
      if (inet_pton(AF_INET, buf, bytes) == 1) {
        family = AF_INET;
        key = (u128{bytes[0]} << 24) | (u128{bytes[1]} << 16) | (u128{bytes[2]} << 8) | bytes[3];
      } else if (inet_pton(AF_INET6, buf, bytes) == 1) {
        family = AF_INET6;
        key = load_v6(bytes);
      }
    }
  }
  if (family == 0) {
    error = quoted() + " is not an IPv4 or IPv6 address" +
            (has_len ? "" : " (numeric only, optionally followed by /prefix-length)");
    return false;
  }
  const unsigned bits = family == AF_INET ? 32 : 128;
  unsigned len = bits;
  if (has_len) {
    bool digits =
        !len_text.empty() && len_text.size() <= 3 &&
        std::all_of(len_text.begin(), len_text.end(), [](char c) { return c >= '0' && c <= '9'; });
    unsigned v = 0;
    for (char c : len_text)
      v = v * 10 + static_cast<unsigned>(c - '0');
    if (!digits || v > bits) {
      error = quoted() + ": the prefix length must be a number from 0 to " + std::to_string(bits) +
              (family == AF_INET ? " for IPv4" : " for IPv6");
      return false;
    }
    len = v;
  }
  u128 mask = len == 0 ? 0 : (~u128{0} << (bits - len)) & (bits == 32 ? 0xffffffffu : ~u128{0});
  if ((key & ~mask & (bits == 32 ? u128{0xffffffffu} : ~u128{0})) != 0) {
    error = quoted() + ": bits set after the /" + std::to_string(len) + " prefix (the range is " +
            format_range(family, key & mask, len) + ")";
    return false;
  }

  if (family == AF_INET) {
    v4_.push_back({key, len});
  } else if (len >= 96 && is_v4_mapped(bytes)) {
    v4_.push_back({key & 0xffffffffu, len - 96});  // ::ffff:a.b.c.d/N is IPv4 a.b.c.d/(N-96)
  } else {
    v6_.push_back({key, len});
    // A range holding all of ::ffff:0:0/96 holds every IPv4 client too (they are looked up as
    // IPv4, so say it in the IPv4 trie).
    const u128 mapped = u128{0xffff} << 32;
    if (len == 0 || ((key ^ mapped) >> (128 - len)) == 0) v4_.push_back({0, 0});
  }
  ++entries_;
  return true;
}

bool CidrSetBuilder::add_file(const std::string& path, std::string& error) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  std::string line;
  size_t line_no = 0;
  auto finish_line = [&]() -> bool {
    ++line_no;
    std::string_view v = line;
    if (auto hash = v.find('#'); hash != std::string_view::npos) v = v.substr(0, hash);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r'))
      v.remove_suffix(1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
      v.remove_prefix(1);
    std::string why;
    if (!v.empty() && !add(v, why)) {
      error = path + ":" + std::to_string(line_no) + ": " + why;
      return false;
    }
    line.clear();
    return true;
  };
  char chunk[65536];
  for (;;) {
    size_t n = std::fread(chunk, 1, sizeof chunk, f.get());
    for (size_t i = 0; i < n; ++i) {
      if (chunk[i] == '\n') {
        if (!finish_line()) return false;
      } else if (line.size() >= kMaxLineLength) {
        error = path + ":" + std::to_string(line_no + 1) + ": line longer than " +
                std::to_string(kMaxLineLength) + " bytes";
        return false;
      } else {
        line.push_back(chunk[i]);
      }
    }
    if (n < sizeof chunk) break;
  }
  if (std::ferror(f.get())) {
    error = path + ": read error: " + std::strerror(errno);
    return false;
  }
  if (!line.empty() && !finish_line()) return false;
  return true;
}

CidrSet CidrSetBuilder::build() {
  CidrSet set;
  set.v4_ = build_trie<uint32_t, 32, Node4>(v4_);
  set.v6_ = build_trie<u128, 128, Node6>(v6_);
  set.entries_ = entries_;
  entries_ = 0;
  return set;
}

}  // namespace weir::net
