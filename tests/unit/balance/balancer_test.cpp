#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "balance/balancer.hpp"
#include "servers_fixture.hpp"

namespace weir::balance {
namespace {

using test::Servers;

std::string sequence(Balancer& b, int n) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s.push_back(static_cast<char>('a' + b.pick({}, {})));
  return s;
}

TEST(RoundRobin, SmoothWeightedInterleaves) {
  Servers s({3, 1});
  auto b = make_balancer(config::Balance::RoundRobin, s.infos, 1);
  EXPECT_EQ(sequence(*b, 8), "aabaaaba");
}

TEST(RoundRobin, SmoothFiveOneOne) {
  // The NGINX example: weights 5,1,1 give a a b a c a a, never five a's in a row.
  Servers s({5, 1, 1});
  auto b = make_balancer(config::Balance::RoundRobin, s.infos, 1);
  EXPECT_EQ(sequence(*b, 7), "aabacaa");
}

TEST(RoundRobin, EqualWeightsRotate) {
  Servers s({1, 1, 1});
  auto b = make_balancer(config::Balance::RoundRobin, s.infos, 1);
  EXPECT_EQ(sequence(*b, 6), "abcabc");
}

TEST(RoundRobin, WeightZeroGetsNothing) {
  Servers s({0, 2, 1});
  auto b = make_balancer(config::Balance::RoundRobin, s.infos, 1);
  for (char c : sequence(*b, 300))
    EXPECT_NE(c, 'a');
}

TEST(RoundRobin, SkipsDownServersAndTried) {
  Servers s({1, 1, 1});
  s.states[1]->up = false;
  auto b = make_balancer(config::Balance::RoundRobin, s.infos, 1);
  EXPECT_EQ(sequence(*b, 4), "acac");
  TriedSet tried;
  tried.add(0);
  tried.add(2);
  EXPECT_EQ(b->pick({}, tried), -1);
  s.states[1]->up = true;
  EXPECT_EQ(b->pick({}, tried), 1);
}

TEST(RoundRobin, AllDownGivesMinusOne) {
  Servers s({1, 1});
  s.states[0]->up = false;
  s.states[1]->up = false;
  auto b = make_balancer(config::Balance::RoundRobin, s.infos, 1);
  EXPECT_EQ(b->pick({}, {}), -1);
}

TEST(RoundRobin, ExactSharesOverManyPicks) {
  Servers s({3, 1, 6});
  auto b = make_balancer(config::Balance::RoundRobin, s.infos, 1);
  std::map<int, int> n;
  for (int i = 0; i < 1000; ++i)
    ++n[b->pick({}, {})];
  EXPECT_EQ(n[0], 300);
  EXPECT_EQ(n[1], 100);
  EXPECT_EQ(n[2], 600);
}

TEST(Random, RespectsWeights) {
  Servers s({3, 1});
  auto b = make_balancer(config::Balance::Random, s.infos, 42);
  std::map<int, int> n;
  for (int i = 0; i < 40000; ++i)
    ++n[b->pick({}, {})];
  EXPECT_NEAR(n[0] / 40000.0, 0.75, 0.02);
  EXPECT_NEAR(n[1] / 40000.0, 0.25, 0.02);
}

TEST(Random, WeightZeroDownAndTriedExcluded) {
  Servers s({0, 1, 1, 1});
  s.states[2]->up = false;
  auto b = make_balancer(config::Balance::Random, s.infos, 7);
  TriedSet tried;
  tried.add(3);
  for (int i = 0; i < 200; ++i)
    EXPECT_EQ(b->pick({}, tried), 1);
  tried.add(1);
  EXPECT_EQ(b->pick({}, tried), -1);
}

TEST(TriedSet, RemembersUpToItsCapacity) {
  TriedSet t;
  EXPECT_FALSE(t.contains(0));
  for (int i = 0; i < 10; ++i)
    t.add(i);
  for (int i = 0; i < 10; ++i)
    EXPECT_TRUE(t.contains(i));
  EXPECT_FALSE(t.contains(10));
  EXPECT_EQ(t.size(), 10u);
}

}  // namespace
}  // namespace weir::balance
