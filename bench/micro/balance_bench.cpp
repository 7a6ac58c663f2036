// The cost of one pick for every strategy with 3, 100 and 1,000 servers, under a spread of
// in-flight counts and latencies, with a different key on every pick (hashing strategies).
//   cmake -B build/rel -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEIR_MICROBENCH=ON -DWEIR_TESTS=OFF
//   ninja -C build/rel weir_balance_bench && build/rel/bench/micro/weir_balance_bench
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "balance/balancer.hpp"
#include "balance/hash.hpp"

namespace weir::balance {
namespace {

struct Fixture {
  std::vector<std::string> names;
  std::vector<std::unique_ptr<ServerState>> states;
  std::vector<ServerInfo> infos;
  std::vector<std::string> ips;
  std::vector<PickContext> requests;

  explicit Fixture(size_t servers) {
    std::mt19937_64 rng(1);
    for (size_t i = 0; i < servers; ++i)
      names.push_back("server-" + std::to_string(i + 1));
    for (size_t i = 0; i < servers; ++i) {
      states.push_back(std::make_unique<ServerState>());
      states.back()->active = static_cast<int64_t>(rng() % 20);
      states.back()->observe_latency(0.001 + static_cast<double>(rng() % 50) / 1000);
      infos.push_back({static_cast<uint32_t>(1 + rng() % 3), states.back().get(), names[i]});
    }
    for (int i = 0; i < 1024; ++i)
      ips.push_back("10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".9");
    for (int i = 0; i < 1024; ++i) {
      PickContext c;
      c.client_ip = ips[static_cast<size_t>(i)];
      c.hash = hash_key("session-" + std::to_string(i));
      c.has_hash = true;
      requests.push_back(c);
    }
  }
};

void pick(benchmark::State& state, config::Balance kind, double factor) {
  Fixture f(static_cast<size_t>(state.range(0)));
  auto b = make_balancer(kind, f.infos, 42, {.hash_balance_factor = factor});
  TriedSet tried;
  size_t i = 0;
  for (auto _ : state) {
    const PickContext& c = f.requests[i++ & 1023];
    int idx = b->pick(c, tried);
    benchmark::DoNotOptimize(idx);
    if (factor > 0) {  // keep the bounded-load counts moving as the proxy does
      b->on_taken(idx);
      b->on_released(idx);
    }
  }
}

#define WEIR_PICK_BENCH(name, kind, factor) \
  void BM_##name(benchmark::State& s) {     \
    pick(s, config::Balance::kind, factor); \
  }                                         \
  BENCHMARK(BM_##name)->Arg(3)->Arg(100)->Arg(1000)

WEIR_PICK_BENCH(Random, Random, 0);
WEIR_PICK_BENCH(RoundRobin, RoundRobin, 0);
WEIR_PICK_BENCH(LeastConnections, LeastConnections, 0);
WEIR_PICK_BENCH(LeastResponseTime, LeastResponseTime, 0);
WEIR_PICK_BENCH(IpHash, IpHash, 0);
WEIR_PICK_BENCH(ConsistentHash, ConsistentHash, 0);
WEIR_PICK_BENCH(ConsistentHashBounded, ConsistentHash, 1.25);

// Building the Maglev table: once per worker per backend at start and at each reload.
void BM_ConsistentHashBuild(benchmark::State& state) {
  Fixture f(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto b = make_balancer(config::Balance::ConsistentHash, f.infos, 1);
    benchmark::DoNotOptimize(b.get());
  }
}
BENCHMARK(BM_ConsistentHashBuild)->Arg(3)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

void BM_HashKey(benchmark::State& state) {
  std::string key(static_cast<size_t>(state.range(0)), 'k');
  for (auto _ : state) {
    benchmark::DoNotOptimize(key.data());
    benchmark::DoNotOptimize(hash_key(key));
  }
}
BENCHMARK(BM_HashKey)->Arg(11)->Arg(39)->Arg(200);

}  // namespace
}  // namespace weir::balance
