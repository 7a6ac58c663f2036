#include "balance/maglev.hpp"

#include <algorithm>
#include <string>

namespace weir::balance {
namespace {

constexpr uint64_t kOffsetSeed = 0x6d61676c65762d6fULL;  // "maglev-o"
constexpr uint64_t kSkipSeed = 0x6d61676c65762d73ULL;    // "maglev-s"
constexpr uint16_t kEmpty = 0xFFFF;

bool is_prime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

struct Builder {
  uint16_t idx;
  uint64_t weight;
  uint64_t pos;   // next slot of this server's permutation
  uint64_t skip;  // permutation stride, in [1, size)
  uint64_t target = 0;
};

}  // namespace

std::string server_identity(std::span<const ServerInfo> servers, size_t idx) {
  if (!servers[idx].name.empty()) return std::string(servers[idx].name);
  return "#" + std::to_string(idx);
}

uint64_t MaglevTable::size_for(size_t servers) {
  uint64_t n = std::max<uint64_t>(65537, uint64_t{100} * servers);
  while (!is_prime(n))
    ++n;
  return n;
}

MaglevTable::MaglevTable(std::span<const ServerInfo> servers) {
  const size_t count = std::min(servers.size(), kMaxServers);
  const uint64_t size = size_for(count);
  slots_.assign(size, kEmpty);

  std::vector<std::string> names(count);
  std::vector<size_t> order;
  for (size_t i = 0; i < count; ++i) {
    names[i] = server_identity(servers, i);
    if (servers[i].weight > 0) order.push_back(i);
  }
  if (order.empty()) return;
  empty_ = false;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return names[a] != names[b] ? names[a] < names[b] : a < b; });

  std::vector<Builder> builders;
  uint64_t max_weight = 0;
  for (size_t i : order) {
    builders.push_back({static_cast<uint16_t>(i), servers[i].weight,
                        hash_key(names[i], kOffsetSeed) % size,
                        hash_key(names[i], kSkipSeed) % (size - 1) + 1});
    max_weight = std::max(max_weight, builders.back().weight);
  }

  // Round after round every server may claim its next free slot; one of weight w only when its
  // claims so far (target / max_weight) lag w/max_weight of the rounds.
  uint64_t filled = 0;
  for (uint64_t round = 1; filled < size; ++round) {
    for (Builder& b : builders) {
      if (round * b.weight < b.target) continue;
      b.target += max_weight;
      while (slots_[b.pos] != kEmpty)
        b.pos = (b.pos + b.skip) % size;
      slots_[b.pos] = b.idx;
      if (++filled == size) break;
    }
  }
}

size_t MaglevTable::share(int idx) const {
  return static_cast<size_t>(std::count(slots_.begin(), slots_.end(), static_cast<uint16_t>(idx)));
}

}  // namespace weir::balance
