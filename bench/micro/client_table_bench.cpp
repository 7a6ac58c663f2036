// The cost of the per-client limits (model::ClientTable) on the request path: one take() (the
// rate) and one open_connection() + close_connection() pair, from 1 and 2 threads, on keys of
// their own (1,024 a thread, so the lookup walks a populated table) or all on the same key (the
// worst case: one contended cache line).
//   cmake -B build/rel -G Ninja -DCMAKE_BUILD_TYPE=Release -DWEIR_MICROBENCH=ON -DWEIR_TESTS=OFF
//   ninja -C build/rel weir_client_table_bench && build/rel/bench/micro/weir_client_table_bench
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "balance/hash.hpp"
#include "model/client_table.hpp"

namespace weir::model {
namespace {

constexpr size_t kCapacity = 1 << 16;
constexpr size_t kKeysPerThread = 1024;

// A fresh table for every run, so that one run's buckets do not carry into the next: thread 0
// makes it before the loop, the others read it once the loop has started (all threads start it
// together).
std::unique_ptr<ClientTable> g_table;

std::vector<uint64_t> keys_for(int thread, bool same_key) {
  std::vector<uint64_t> keys;
  for (size_t i = 0; i < kKeysPerThread; ++i)
    keys.push_back(same_key ? balance::hash_key("shared")
                            : balance::hash_key(std::to_string(thread) + "/" + std::to_string(i)));
  return keys;
}

// Time moves 1 µs a call; at 10^6/s with a burst of 1,000 most takes are allowed (a CAS each).
void take(benchmark::State& state, bool same_key) {
  if (state.thread_index() == 0) g_table = std::make_unique<ClientTable>(kCapacity);
  std::vector<uint64_t> keys = keys_for(state.thread_index(), same_key);
  int64_t now = 1'000'000'000;
  size_t i = 0, allowed = 0;
  for (auto _ : state) {
    auto r = g_table->take(keys[i++ & (kKeysPerThread - 1)], 1e6, 1000, now += 1000);
    allowed += r.allowed;
    benchmark::DoNotOptimize(r);
  }
  state.counters["allowed"] =
      benchmark::Counter(static_cast<double>(allowed) / static_cast<double>(state.iterations()),
                         benchmark::Counter::kAvgThreads);
  state.counters["untracked"] = static_cast<double>(g_table->untracked());
}

void open_close(benchmark::State& state, bool same_key) {
  if (state.thread_index() == 0) g_table = std::make_unique<ClientTable>(kCapacity);
  std::vector<uint64_t> keys = keys_for(state.thread_index(), same_key);
  int64_t now = 1'000'000'000;
  size_t i = 0;
  for (auto _ : state) {
    auto c = g_table->open_connection(keys[i++ & (kKeysPerThread - 1)], 1000, now += 1000);
    benchmark::DoNotOptimize(c);
    g_table->close_connection(c);
  }
  state.counters["untracked"] = static_cast<double>(g_table->untracked());
}

BENCHMARK_CAPTURE(take, distinct_keys, false)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(take, same_key, true)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(open_close, distinct_keys, false)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(open_close, same_key, true)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace weir::model
