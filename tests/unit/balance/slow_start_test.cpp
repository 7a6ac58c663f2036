#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "balance/balancer.hpp"

namespace weir::balance {
namespace {

int64_t now_ns() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}
constexpr int64_t kRamp = 100'000'000'000;  // 100 s: the clock barely moves during the test

struct Backend {
  std::vector<std::unique_ptr<ServerState>> states;
  std::vector<ServerInfo> infos;
  explicit Backend(int n) {
    for (int i = 0; i < n; ++i) {
      states.push_back(std::make_unique<ServerState>());
      infos.push_back({100, states.back().get(), {}, kRamp});
    }
  }
};

TEST(SlowStart, WeightsRampLinearlyFromTheReturn) {
  Backend b(1);
  Weights w;
  EXPECT_EQ(w(b.infos[0]), 100u);  // never came back: full weight
  b.states[0]->ramp_start_ns = now_ns() - kRamp / 4;
  Weights w2;
  EXPECT_NEAR(w2(b.infos[0]), 25.0, 1.0);
  b.states[0]->ramp_start_ns = now_ns() - 2 * kRamp;
  Weights w3;
  EXPECT_EQ(w3(b.infos[0]), 100u);
  b.states[0]->ramp_start_ns = now_ns() + kRamp;  // ejection not over yet
  Weights w4;
  EXPECT_EQ(w4(b.infos[0]), 1u);
  b.infos[0].slow_start_ns = 0;  // slow_start off
  Weights w5;
  EXPECT_EQ(w5(b.infos[0]), 100u);
}

TEST(SlowStart, ReturningServerGetsAGrowingShare) {
  for (auto kind :
       {config::Balance::RoundRobin, config::Balance::Random, config::Balance::LeastConnections}) {
    Backend b(2);
    b.states[1]->ramp_start_ns = now_ns() - kRamp / 10;  // 10% into its ramp
    auto bal = make_balancer(kind, b.infos, 3);
    std::map<int, int> n;
    for (int i = 0; i < 4000; ++i) {
      int idx = bal->pick({}, {});
      ++n[idx];
      if (kind == config::Balance::LeastConnections) {
        // Hold the load so that weights, not idleness, decide.
        b.states[static_cast<size_t>(idx)]->active += 1;
      }
    }
    double share = n[1] / 4000.0;
    EXPECT_GT(share, 0.03) << static_cast<int>(kind);
    EXPECT_LT(share, 0.20) << static_cast<int>(kind);
  }
}

}  // namespace
}  // namespace weir::balance
