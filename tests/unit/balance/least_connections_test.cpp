#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <vector>

#include "balance/balancer.hpp"
#include "servers_fixture.hpp"

namespace weir::balance {
namespace {

using test::Servers;

TEST(LeastConnections, PicksTheIdleServer) {
  Servers s({1, 1, 1});
  s.states[0]->active = 5;
  s.states[2]->active = 3;
  auto b = make_balancer(config::Balance::LeastConnections, s.infos, 1);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(b->pick({}, {}), 1);
  s.states[1]->active = 4;
  EXPECT_EQ(b->pick({}, {}), 2);
}

TEST(LeastConnections, WeightsTwoToOneHoldTwoToOneInFlight) {
  Servers s({2, 1});
  auto b = make_balancer(config::Balance::LeastConnections, s.infos, 1);
  for (int i = 0; i < 300; ++i)
    ++s.states[static_cast<size_t>(b->pick({}, {}))]->active;
  EXPECT_NEAR(s.states[0]->active.load(), 200, 1);
  EXPECT_NEAR(s.states[1]->active.load(), 100, 1);
}

// Steady state: 30 requests in flight, one random request finishes and a new one is placed each
// step. A server finishes requests in proportion to what it holds, so the share of picks follows.
TEST(LeastConnections, WeightsTwoToOneGetTwoToOneUnderSteadyLoad) {
  Servers s({2, 1});
  auto b = make_balancer(config::Balance::LeastConnections, s.infos, 3);
  std::vector<int> inflight;
  std::mt19937 rng(5);
  for (int i = 0; i < 30; ++i) {
    int idx = b->pick({}, {});
    ++s.states[static_cast<size_t>(idx)]->active;
    inflight.push_back(idx);
  }
  std::map<int, int> picks;
  for (int step = 0; step < 30000; ++step) {
    size_t done = rng() % inflight.size();
    --s.states[static_cast<size_t>(inflight[done])]->active;
    int idx = b->pick({}, {});
    ++s.states[static_cast<size_t>(idx)]->active;
    inflight[done] = idx;
    ++picks[idx];
  }
  EXPECT_NEAR(picks[0] / 30000.0, 2.0 / 3, 0.02);
}

TEST(LeastConnections, TiesAreBrokenAtRandom) {
  Servers s({1, 1, 1});
  auto b = make_balancer(config::Balance::LeastConnections, s.infos, 9);
  std::map<int, int> n;
  for (int i = 0; i < 30000; ++i)
    ++n[b->pick({}, {})];
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(n[i] / 30000.0, 1.0 / 3, 0.02) << i;
}

TEST(LeastConnections, SameSeedSameTieBreaks) {
  Servers s({1, 1, 1, 1});
  auto a = make_balancer(config::Balance::LeastConnections, s.infos, 4);
  auto b = make_balancer(config::Balance::LeastConnections, s.infos, 4);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(a->pick({}, {}), b->pick({}, {}));
}

TEST(LeastConnections, WeightZeroNeverPickedEvenWhenIdle) {
  Servers s({0, 1});
  s.states[1]->active = 1000;
  auto b = make_balancer(config::Balance::LeastConnections, s.infos, 1);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(b->pick({}, {}), 1);
}

TEST(LeastConnections, HugeInFlightCountsDoNotOverflow) {
  Servers s({1, 4000000000u});
  s.states[0]->active = int64_t{1} << 40;
  s.states[1]->active = int64_t{1} << 50;
  auto b = make_balancer(config::Balance::LeastConnections, s.infos, 1);
  // Both clamp to 2^32 - 1 in flight: the far heavier server is the cheaper.
  EXPECT_EQ(b->pick({}, {}), 1);
}

}  // namespace
}  // namespace weir::balance
