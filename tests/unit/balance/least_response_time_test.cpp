#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <vector>

#include "balance/balancer.hpp"
#include "servers_fixture.hpp"

namespace weir::balance {
namespace {

using test::Servers;

struct Outcome {
  std::vector<double> share;  // of requests, per server
  double mean_ms = 0;         // mean response time
};

// A millisecond-step simulation: `per_ms` requests arrive each millisecond, each is picked,
// counted in flight and answered after its server's fixed latency, which the server's average
// observes as the proxy does.
Outcome simulate(config::Balance kind, const std::vector<int>& latency_ms, int per_ms, int ms) {
  Servers s(std::vector<uint32_t>(latency_ms.size(), 1));
  auto b = make_balancer(kind, s.infos, 11);
  using Done = std::pair<int, int>;  // (time, server)
  std::priority_queue<Done, std::vector<Done>, std::greater<>> pending;
  std::vector<int> count(latency_ms.size());
  double total_ms = 0;
  for (int t = 0; t < ms; ++t) {
    while (!pending.empty() && pending.top().first <= t) {
      auto idx = static_cast<size_t>(pending.top().second);
      pending.pop();
      --s.states[idx]->active;
      s.states[idx]->observe_latency(latency_ms[idx] / 1000.0);
    }
    for (int r = 0; r < per_ms; ++r) {
      int idx = b->pick({}, {});
      auto i = static_cast<size_t>(idx);
      ++s.states[i]->active;
      ++count[i];
      total_ms += latency_ms[i];
      pending.push({t + latency_ms[i], idx});
    }
  }
  Outcome o;
  double n = static_cast<double>(ms) * per_ms;
  for (int c : count)
    o.share.push_back(c / n);
  o.mean_ms = total_ms / n;
  return o;
}

TEST(LeastResponseTime, SlowServerGetsASmallShareAndBeatsRoundRobin) {
  std::vector<int> latency = {5, 50, 5};
  Outcome lrt = simulate(config::Balance::LeastResponseTime, latency, 4, 5000);
  Outcome rr = simulate(config::Balance::RoundRobin, latency, 4, 5000);
  EXPECT_LT(lrt.share[1], 0.10);
  EXPECT_GT(lrt.share[1], 0.0);  // not exclusively the fast ones: they fill up
  EXPECT_NEAR(rr.share[1], 1.0 / 3, 0.01);
  EXPECT_LT(lrt.mean_ms, rr.mean_ms * 0.6);
}

// Past kFullScanMax servers the pick is power of two choices.
TEST(LeastResponseTime, PowerOfTwoChoicesAvoidsTheSlowServer) {
  std::vector<int> latency = {5, 50, 5, 5, 5, 5, 5, 5, 5, 5};
  Outcome lrt = simulate(config::Balance::LeastResponseTime, latency, 10, 5000);
  Outcome rr = simulate(config::Balance::RoundRobin, latency, 10, 5000);
  EXPECT_LT(lrt.share[1], 0.03);
  for (size_t i = 0; i < latency.size(); ++i)
    if (i != 1) {
      EXPECT_GT(lrt.share[i], 0.08) << i;
    }
  EXPECT_LT(lrt.mean_ms, rr.mean_ms);
}

TEST(LeastResponseTime, FastServerIsNotFloodedWhenBusy) {
  Servers s({1, 1});
  s.states[0]->observe_latency(0.005);
  s.states[1]->observe_latency(0.050);
  auto b = make_balancer(config::Balance::LeastResponseTime, s.infos, 1);
  EXPECT_EQ(b->pick({}, {}), 0);
  s.states[0]->active = 20;  // 5 ms x 21 > 50 ms x 1
  EXPECT_EQ(b->pick({}, {}), 1);
}

TEST(LeastResponseTime, UnsampledServerIsTriedButNotFlooded) {
  Servers s({1, 1, 1});
  s.states[0]->observe_latency(0.010);
  s.states[1]->observe_latency(0.020);
  auto b = make_balancer(config::Balance::LeastResponseTime, s.infos, 1);
  std::map<int, int> n;
  for (int i = 0; i < 1000; ++i)
    ++n[b->pick({}, {})];
  EXPECT_GT(n[2], 300);  // counts as 10 ms: ties with server 0
  EXPECT_GT(n[0], 300);
  EXPECT_EQ(n[1], 0);
  s.states[2]->active = 3;
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(b->pick({}, {}), 0);
}

TEST(LeastResponseTime, WithoutSamplesActsAsLeastConnections) {
  Servers s({1, 1, 1, 1, 1});
  for (int i = 0; i < 5; ++i)
    s.states[static_cast<size_t>(i)]->active = 10;
  s.states[3]->active = 0;
  auto b = make_balancer(config::Balance::LeastResponseTime, s.infos, 1);
  std::map<int, int> n;
  for (int i = 0; i < 1000; ++i)
    ++n[b->pick({}, {})];
  // P2C: server 3 wins every pair it is in, and 2/5 of the distinct pairs hold it.
  EXPECT_NEAR(n[3] / 1000.0, 0.4, 0.06);
}

TEST(LeastResponseTime, WeightDividesTheCost) {
  Servers s({3, 1});
  s.states[0]->observe_latency(0.010);
  s.states[1]->observe_latency(0.010);
  s.states[0]->active = 2;  // 10 ms x 3 / 3 = 10 ms, vs 10 ms x 1 / 1: a tie
  s.states[1]->active = 0;
  auto b = make_balancer(config::Balance::LeastResponseTime, s.infos, 1);
  std::map<int, int> n;
  for (int i = 0; i < 1000; ++i)
    ++n[b->pick({}, {})];
  EXPECT_NEAR(n[0], 500, 80);
  s.states[0]->active = 1;
  EXPECT_EQ(b->pick({}, {}), 0);
}

}  // namespace
}  // namespace weir::balance
