// The cost of one access-list lookup (net::CidrSet) with 10, 1,000 and 100,000 entries, IPv4
// and IPv6, for addresses in the set (hits) and not (misses). Issue 11: 100,000 entries must
// cost no more per connection than 10.
//   cmake -B build/rel -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEIR_MICROBENCH=ON -DWEIR_TESTS=OFF
//   ninja -C build/rel weir_cidr_set_bench && build/rel/bench/micro/weir_cidr_set_bench
//
// Entries are random ranges (seeded): IPv4 prefix lengths 16-32, IPv6 32-128 inside 2000::/3.
// Hits are random addresses inside a random entry; misses are random addresses the set does not
// hold. 65,536 distinct probes a run, visited in a shuffled order, so a big set is not measured
// from a warm cache of a few paths. The *_warm variants cycle through 64 probes only: caches
// warm, so they show the work a lookup does apart from memory latency (the difference between
// the two is what a big set costs in cache misses).
#include <benchmark/benchmark.h>

#include <arpa/inet.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "net/cidr_set.hpp"

namespace weir::net {
namespace {

using u128 = unsigned __int128;
constexpr size_t kProbes = 1 << 16;
constexpr size_t kWarmProbes = 64;

struct V6 {
  uint8_t b[16];
};

V6 to_v6(u128 k) {
  V6 v;
  for (int i = 15; i >= 0; --i, k >>= 8)
    v.b[i] = static_cast<uint8_t>(k);
  return v;
}

u128 mask_of(unsigned bits, unsigned len) {
  u128 full = bits == 32 ? u128{0xffffffffu} : ~u128{0};
  return len == 0 ? 0 : (full << (bits - len)) & full;
}

struct Fixture {
  CidrSet set;
  std::vector<uint32_t> v4_probes;
  std::vector<V6> v6_probes;

  Fixture(unsigned bits, size_t entries, bool hits, size_t probes) {
    std::mt19937_64 rng(entries * 2 + bits);
    auto random_addr = [&]() -> u128 {
      if (bits == 32) return rng() & 0xffffffffu;
      u128 k = (u128{rng()} << 64) | rng();
      return (k >> 3) | (u128{1} << 125);  // 2000::/3
    };
    std::vector<std::pair<u128, unsigned>> ranges;
    CidrSetBuilder b;
    std::string error;
    while (ranges.size() < entries) {
      unsigned len = bits == 32 ? 16 + static_cast<unsigned>(rng() % 17)
                                : 32 + static_cast<unsigned>(rng() % 97);
      u128 key = random_addr() & mask_of(bits, len);
      char buf[INET6_ADDRSTRLEN];
      if (bits == 32) {
        in_addr a{htonl(static_cast<uint32_t>(key))};
        inet_ntop(AF_INET, &a, buf, sizeof buf);
      } else {
        V6 v = to_v6(key);
        inet_ntop(AF_INET6, v.b, buf, sizeof buf);
      }
      if (!b.add(std::string(buf) + "/" + std::to_string(len), error)) std::abort();
      ranges.emplace_back(key, len);
    }
    set = b.build();
    auto contains = [&](u128 k) {
      if (bits == 32) return set.contains_v4(static_cast<uint32_t>(k));
      V6 v = to_v6(k);
      return set.contains_v6(v.b);
    };
    while ((bits == 32 ? v4_probes.size() : v6_probes.size()) < probes) {
      u128 k;
      if (hits) {
        auto [key, len] = ranges[rng() % ranges.size()];
        k = key | (random_addr() & ~mask_of(bits, len) & mask_of(bits, bits));
      } else {
        k = random_addr();
        if (contains(k)) continue;
      }
      if (contains(k) != hits) std::abort();
      if (bits == 32)
        v4_probes.push_back(static_cast<uint32_t>(k));
      else
        v6_probes.push_back(to_v6(k));
    }
  }
};

void lookup(benchmark::State& state, unsigned bits, bool hits, size_t probes) {
  Fixture f(bits, static_cast<size_t>(state.range(0)), hits, probes);
  size_t i = 0, found = 0;
  for (auto _ : state) {
    bool in;
    if (bits == 32)
      in = f.set.contains_v4(f.v4_probes[i++ & (probes - 1)]);
    else
      in = f.set.contains_v6(f.v6_probes[i++ & (probes - 1)].b);
    found += in;
    benchmark::DoNotOptimize(in);
  }
  if (found != (hits ? static_cast<size_t>(state.iterations()) : 0))
    state.SkipWithError("wrong answer");
  state.counters["trie_bytes"] = static_cast<double>(f.set.memory_bytes());
  state.counters["bytes_per_entry"] =
      static_cast<double>(f.set.memory_bytes()) / static_cast<double>(f.set.size());
}

void args(benchmark::internal::Benchmark* b) {
  b->Arg(10)->Arg(1000)->Arg(100000);
}

BENCHMARK_CAPTURE(lookup, v4_hit, 32, true, kProbes)->Apply(args);
BENCHMARK_CAPTURE(lookup, v4_miss, 32, false, kProbes)->Apply(args);
BENCHMARK_CAPTURE(lookup, v6_hit, 128, true, kProbes)->Apply(args);
BENCHMARK_CAPTURE(lookup, v6_miss, 128, false, kProbes)->Apply(args);
BENCHMARK_CAPTURE(lookup, v4_hit_warm, 32, true, kWarmProbes)->Apply(args);
BENCHMARK_CAPTURE(lookup, v4_miss_warm, 32, false, kWarmProbes)->Apply(args);
BENCHMARK_CAPTURE(lookup, v6_hit_warm, 128, true, kWarmProbes)->Apply(args);
BENCHMARK_CAPTURE(lookup, v6_miss_warm, 128, false, kWarmProbes)->Apply(args);

}  // namespace
}  // namespace weir::net
