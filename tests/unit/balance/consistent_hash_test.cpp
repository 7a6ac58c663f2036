#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "balance/balancer.hpp"
#include "balance/consistent_hash.hpp"
#include "balance/hash.hpp"
#include "balance/maglev.hpp"

namespace weir::balance {
namespace {

struct Servers {
  std::vector<std::string> names;
  std::vector<std::unique_ptr<ServerState>> states;
  std::vector<ServerInfo> infos;
  explicit Servers(std::vector<uint32_t> weights, std::string prefix = "s") {
    for (size_t i = 0; i < weights.size(); ++i)
      names.push_back(prefix + std::to_string(i + 1));
    for (size_t i = 0; i < weights.size(); ++i) {
      states.push_back(std::make_unique<ServerState>());
      infos.push_back({weights[i], states.back().get(), names[i]});
    }
  }
};

PickContext keyed(uint64_t key) {
  PickContext c;
  c.hash = hash_key("user-" + std::to_string(key));
  c.has_hash = true;
  return c;
}

std::vector<int> map_keys(Balancer& b, int keys) {
  std::vector<int> out;
  for (int k = 0; k < keys; ++k)
    out.push_back(b.pick(keyed(static_cast<uint64_t>(k)), {}));
  return out;
}

std::unique_ptr<Balancer> consistent(const Servers& s, BalancerOptions o = {}) {
  return make_balancer(config::Balance::ConsistentHash, s.infos, 1, o);
}

TEST(MaglevTable, SizeIsAPrimeOfAtLeastAHundredSlotsAServer) {
  EXPECT_EQ(MaglevTable::size_for(3), 65537u);
  EXPECT_EQ(MaglevTable::size_for(655), 65537u);
  EXPECT_EQ(MaglevTable::size_for(1000), 100003u);
}

TEST(ConsistentHash, SameKeySameServer) {
  Servers s({1, 1, 1, 1, 1});
  auto b = consistent(s);
  int first = b->pick(keyed(42), {});
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(b->pick(keyed(42), {}), first);
}

// The table is a function of names and weights: another instance, or another weir, agrees,
// whatever the order of the servers in the config.
TEST(ConsistentHash, SeparateInstancesAndServerOrderAgree) {
  Servers s({1, 2, 1, 1, 3});
  auto a = consistent(s);
  auto b = make_balancer(config::Balance::ConsistentHash, s.infos, 999);
  std::vector<ServerInfo> reversed(s.infos.rbegin(), s.infos.rend());
  auto r = make_balancer(config::Balance::ConsistentHash, reversed, 5);
  int n = static_cast<int>(s.infos.size());
  for (int k = 0; k < 2000; ++k) {
    int x = a->pick(keyed(static_cast<uint64_t>(k)), {});
    EXPECT_EQ(b->pick(keyed(static_cast<uint64_t>(k)), {}), x);
    EXPECT_EQ(n - 1 - r->pick(keyed(static_cast<uint64_t>(k)), {}), x);
  }
}

TEST(ConsistentHash, ServerLeavingMovesOnlyItsOwnKeysAndTheyComeBack) {
  constexpr int kKeys = 10000;
  constexpr int kServers = 10;
  Servers s(std::vector<uint32_t>(kServers, 1));
  auto b = consistent(s);
  std::vector<int> before = map_keys(*b, kKeys);
  s.states[3]->up = false;
  std::vector<int> during = map_keys(*b, kKeys);
  int moved = 0;
  std::map<int, int> moved_to;
  for (int k = 0; k < kKeys; ++k) {
    if (before[static_cast<size_t>(k)] == 3) {
      EXPECT_NE(during[static_cast<size_t>(k)], 3);
      ++moved_to[during[static_cast<size_t>(k)]];
    } else {
      EXPECT_EQ(during[static_cast<size_t>(k)], before[static_cast<size_t>(k)]) << k;
    }
    if (during[static_cast<size_t>(k)] != before[static_cast<size_t>(k)]) ++moved;
  }
  EXPECT_LE(moved, kKeys / kServers + kKeys / 50);  // 1/N plus 2% for the hash's spread
  EXPECT_GE(moved, kKeys / kServers - kKeys / 50);
  EXPECT_EQ(moved_to.size(), kServers - 1u);  // the orphans spread over all the others
  s.states[3]->up = true;
  EXPECT_EQ(map_keys(*b, kKeys), before);
}

TEST(ConsistentHash, WeightsThreeToOneGiveThreeToOneOfTheKeys) {
  Servers s({3, 1});
  auto b = consistent(s);
  std::map<int, int> n;
  for (int k = 0; k < 10000; ++k)
    ++n[b->pick(keyed(static_cast<uint64_t>(k)), {})];
  EXPECT_NEAR(n[0] / 10000.0, 0.75, 0.02);
  auto* ch = static_cast<ConsistentHash*>(b.get());
  EXPECT_NEAR(static_cast<double>(ch->table().share(0)) / ch->table().size(), 0.75, 0.001);
}

TEST(ConsistentHash, WeightZeroGetsNoKeys) {
  Servers s({1, 0, 1});
  auto b = consistent(s);
  for (int x : map_keys(*b, 5000))
    EXPECT_NE(x, 1);
}

TEST(ConsistentHash, EvenWeightsEvenShares) {
  Servers s(std::vector<uint32_t>(100, 1));
  auto b = consistent(s);
  auto* ch = static_cast<ConsistentHash*>(b.get());
  for (int i = 0; i < 100; ++i)
    EXPECT_NEAR(ch->table().share(i), 655, 15) << i;
}

TEST(ConsistentHash, TriedServerFallsBackToTheSameNextCandidate) {
  Servers s({1, 1, 1, 1});
  auto b = consistent(s);
  for (uint64_t k = 0; k < 200; ++k) {
    int first = b->pick(keyed(k), {});
    TriedSet tried;
    tried.add(first);
    int second = b->pick(keyed(k), tried);
    EXPECT_NE(second, first);
    EXPECT_GE(second, 0);
    EXPECT_EQ(b->pick(keyed(k), tried), second);
  }
}

TEST(ConsistentHash, NoKeySpreadsByWeight) {
  Servers s({2, 1, 1});
  auto b = consistent(s);
  std::map<int, int> n;
  for (int i = 0; i < 20000; ++i)
    ++n[b->pick({}, {})];
  EXPECT_NEAR(n[0] / 20000.0, 0.5, 0.02);
  EXPECT_NEAR(n[1] / 20000.0, 0.25, 0.02);
}

TEST(ConsistentHash, MostServersDownStillFindsTheSurvivor) {
  Servers s(std::vector<uint32_t>(50, 1));
  for (auto& st : s.states)
    st->up = false;
  s.states[17]->up = true;
  auto b = consistent(s);
  for (int x : map_keys(*b, 500))
    EXPECT_EQ(x, 17);
}

TEST(IpHash, SameClientSameServerAndClientsSpread) {
  Servers s({1, 1, 1});
  auto b = make_balancer(config::Balance::IpHash, s.infos, 1);
  PickContext c;
  c.client_ip = "192.0.2.7";
  int first = b->pick(c, {});
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(b->pick(c, {}), first);
  std::map<int, int> n;
  for (int i = 0; i < 3000; ++i) {
    std::string ip = "10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    c.client_ip = ip;
    ++n[b->pick(c, {})];
  }
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(n[i], 1000, 100) << i;
}

TEST(IpHash, SameAsConsistentHashOfTheClientIp) {
  Servers s({1, 2, 3});
  auto ip = make_balancer(config::Balance::IpHash, s.infos, 1);
  auto ch = consistent(s);
  PickContext a, b;
  a.client_ip = "2001:db8::1";
  b.hash = hash_key("2001:db8::1");
  b.has_hash = true;
  EXPECT_EQ(ip->pick(a, {}), ch->pick(b, {}));
}

// One key, 100 requests held open: without a bound they all land on the key's server; with
// factor 1.25 none holds more than its bound and the key's own server stays the busiest.
TEST(BoundedLoad, HotKeySpillsOverWhenItsServerIsFull) {
  Servers s({1, 1, 1, 1});
  auto plain = consistent(s);
  auto bounded = consistent(s, {.hash_balance_factor = 1.25});
  int home = plain->pick(keyed(7), {});
  std::vector<int> held(4);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(plain->pick(keyed(7), {}), home);
    int idx = bounded->pick(keyed(7), {});
    bounded->on_taken(idx);
    ++held[static_cast<size_t>(idx)];
  }
  for (int h : held)
    EXPECT_LE(h, 1.25 * 100 / 4 + 1);
  EXPECT_EQ(*std::max_element(held.begin(), held.end()), held[static_cast<size_t>(home)]);
  EXPECT_EQ(std::count(held.begin(), held.end(), 0), 0);
  // Released, the key goes home again.
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < held[static_cast<size_t>(i)]; ++j)
      bounded->on_released(i);
  EXPECT_EQ(bounded->pick(keyed(7), {}), home);
}

TEST(BoundedLoad, QuietKeysKeepTheirServer) {
  Servers s({1, 1, 1, 1, 1});
  auto plain = consistent(s);
  auto bounded = consistent(s, {.hash_balance_factor = 1.25});
  // Balanced load: every key is placed and held; few should move from their home.
  int moved = 0;
  for (uint64_t k = 0; k < 1000; ++k) {
    int idx = bounded->pick(keyed(k), {});
    bounded->on_taken(idx);
    if (idx != plain->pick(keyed(k), {})) ++moved;
  }
  EXPECT_LT(moved, 150);
}

}  // namespace
}  // namespace weir::balance
