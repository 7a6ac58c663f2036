// What every strategy owes the proxy: never a down, tried or weight-0 server, and -1 once none
// is left.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "balance/balancer.hpp"
#include "balance/hash.hpp"
#include "servers_fixture.hpp"

namespace weir::balance {
namespace {

using test::Servers;

class EveryStrategy : public ::testing::TestWithParam<config::Balance> {};

PickContext request(int i) {
  PickContext c;
  c.client_ip = i % 2 == 0 ? "198.51.100.1" : "198.51.100.2";
  c.hash = hash_key(std::to_string(i));
  c.has_hash = i % 3 != 0;
  return c;
}

TEST_P(EveryStrategy, SkipsDownTriedAndWeightZero) {
  Servers s({0, 1, 1, 1});
  s.states[2]->up = false;
  s.states[0]->observe_latency(0.001);  // tempting, but weight 0
  auto b = make_balancer(GetParam(), s.infos, 7);
  TriedSet tried;
  tried.add(3);
  for (int i = 0; i < 300; ++i)
    EXPECT_EQ(b->pick(request(i), tried), 1);
  tried.add(1);
  for (int i = 0; i < 30; ++i)
    EXPECT_EQ(b->pick(request(i), tried), -1);
  s.states[2]->up = true;
  for (int i = 0; i < 30; ++i)
    EXPECT_EQ(b->pick(request(i), tried), 2);
}

TEST_P(EveryStrategy, AllDownGivesMinusOne) {
  Servers s({1, 1, 1, 1, 1});
  for (auto& st : s.states)
    st->up = false;
  auto b = make_balancer(GetParam(), s.infos, 7);
  for (int i = 0; i < 30; ++i)
    EXPECT_EQ(b->pick(request(i), {}), -1);
}

TEST_P(EveryStrategy, NoServersOrOnlyWeightZeroGivesMinusOne) {
  auto none = make_balancer(GetParam(), {}, 7);
  EXPECT_EQ(none->pick(request(1), {}), -1);
  Servers s({0, 0});
  auto zero = make_balancer(GetParam(), s.infos, 7);
  EXPECT_EQ(zero->pick(request(1), {}), -1);
}

TEST_P(EveryStrategy, ManyServersAllButOneTriedOrDown) {
  Servers s(std::vector<uint32_t>(40, 1));
  TriedSet tried;
  for (int i = 0; i < 40; ++i) {
    if (i == 33) continue;
    if (i < 16)
      tried.add(i);
    else
      s.states[static_cast<size_t>(i)]->up = false;
  }
  auto b = make_balancer(GetParam(), s.infos, 7, {.hash_balance_factor = 1.25});
  for (int i = 0; i < 50; ++i) {
    int idx = b->pick(request(i), tried);
    EXPECT_EQ(idx, 33);
    b->on_taken(idx);
  }
}

INSTANTIATE_TEST_SUITE_P(Balance, EveryStrategy,
                         ::testing::Values(config::Balance::Random, config::Balance::RoundRobin,
                                           config::Balance::LeastConnections,
                                           config::Balance::LeastResponseTime,
                                           config::Balance::IpHash,
                                           config::Balance::ConsistentHash),
                         [](const auto& info) {
                           switch (info.param) {
                             case config::Balance::Random:
                               return std::string("Random");
                             case config::Balance::RoundRobin:
                               return std::string("RoundRobin");
                             case config::Balance::LeastConnections:
                               return std::string("LeastConnections");
                             case config::Balance::LeastResponseTime:
                               return std::string("LeastResponseTime");
                             case config::Balance::IpHash:
                               return std::string("IpHash");
                             case config::Balance::ConsistentHash:
                               return std::string("ConsistentHash");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace weir::balance
