#pragma once
// The hash of a request's balancing key (client IP, path, header, cookie or query value) and of
// server names. It is XXH64 (https://github.com/Cyan4973/xxHash, doc/xxhash_spec.md), seed 0
// unless given: fast (a few ns for an IP address), well mixed in all 64 bits, and defined byte
// for byte with no per-process seed, so two weir processes on two machines, or a script in any
// language with an XXH64 library, agree on every key. Not a defence against chosen keys: a
// client that picks its own cookie can still pick its server, which it can anyway.
#include <cstdint>
#include <string_view>

namespace weir::balance {

uint64_t hash_key(std::string_view key, uint64_t seed = 0);

// A 64-bit finalizer (SplitMix64's): spreads a counter or an already hashed value over all bits.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// x mapped evenly onto [0, n) with a multiply instead of a division (Lemire's "fastrange").
inline uint64_t reduce(uint64_t x, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(x) * n) >> 64);
}

}  // namespace weir::balance
