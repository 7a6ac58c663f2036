// Live traffic judging servers: passive ejection (consecutive failures, doubling cooldown,
// max_ejected_percent) and unreachable servers (connect failures, no config needed).
#include "health/passive.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "../model/model_test_util.hpp"

namespace weir::health {
namespace {

using model::test::build;
using namespace std::chrono_literals;

std::string backend_yaml(int servers, std::string_view extra = "") {
  std::string y =
      "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    backend: web\n"
      "backends:\n  - name: web\n";
  y += extra;
  y += "    servers:\n";
  for (int i = 0; i < servers; ++i)
    y += "      - {address: 127.0.0.1:" + std::to_string(9001 + i) + ", name: s" +
         std::to_string(i) + "}\n";
  return y;
}

class PassiveTest : public ::testing::Test {
 protected:
  // A fresh registry each time: no state carried over from an earlier snapshot.
  void make(int servers, std::string_view extra = "") {
    registry_ = std::make_unique<model::ServerRegistry>();
    snap_ = build(backend_yaml(servers, extra), *registry_);
    ASSERT_TRUE(snap_);
  }
  const model::BackendRuntime& b() const { return snap_->backends.at(0); }
  model::ServerState& st(size_t i) const { return *b().servers.at(i).state; }
  static int64_t now() { return model::ServerState::now_ns(); }
  // Milliseconds left of the unreachable interval (0 if not out).
  int64_t unreachable_ms_left(size_t i) const {
    int64_t until = st(i).unreachable_until_ns.load();
    return until == 0 ? 0 : std::max<int64_t>(0, (until - now()) / 1'000'000);
  }

  std::unique_ptr<model::ServerRegistry> registry_;
  model::SnapshotPtr snap_;
};

TEST_F(PassiveTest, ConnectFailureTakesTheServerOutWithoutConfig) {
  make(3);
  EXPECT_FALSE(b().cfg->passive.has_value());
  EXPECT_TRUE(st(0).in_rotation());
  connect_failure(b(), 0, "connection refused");
  EXPECT_FALSE(st(0).in_rotation());
  EXPECT_TRUE(st(0).unreachable());
  EXPECT_TRUE(st(0).up.load()) << "the health checker's verdict is its own";
  EXPECT_FALSE(st(0).ejected());
  EXPECT_EQ(st(0).connect_failures.load(), 1u);
  EXPECT_GT(unreachable_ms_left(0), 900);
  EXPECT_LE(unreachable_ms_left(0), kUnreachableBase.count());
  EXPECT_TRUE(st(1).in_rotation());
  EXPECT_TRUE(st(2).in_rotation());
}

TEST_F(PassiveTest, FailuresWhileOutDoNotLengthenIt) {
  make(2);
  connect_failure(b(), 0, "connection refused");
  int64_t until = st(0).unreachable_until_ns.load();
  // Other connections that were open when the server died fail too: the same event.
  for (int i = 0; i < 5; ++i)
    connect_failure(b(), 0, "connection reset");
  EXPECT_EQ(st(0).unreachable_until_ns.load(), until);
  EXPECT_EQ(st(0).unreachable_streak.load(), 1u);
  EXPECT_EQ(st(0).connect_failures.load(), 6u);
}

TEST_F(PassiveTest, TheIntervalDoublesWithEachFailureInARowUpToTheMax) {
  make(2);
  int64_t expected_ms = kUnreachableBase.count();
  for (int round = 0; round < 8; ++round) {
    // The interval is over (as if its time had passed): the next failure starts a longer one.
    st(0).unreachable_until_ns.store(1);
    ASSERT_FALSE(st(0).unreachable());
    connect_failure(b(), 0, "connection refused");
    EXPECT_GT(unreachable_ms_left(0), expected_ms - 100) << "round " << round;
    EXPECT_LE(unreachable_ms_left(0), expected_ms) << "round " << round;
    expected_ms = std::min<int64_t>(expected_ms * 2, kUnreachableMax.count());
  }
  EXPECT_EQ(expected_ms, kUnreachableMax.count());
}

TEST_F(PassiveTest, ASuccessfulConnectEndsTheStreak) {
  make(2);
  connect_failure(b(), 0, "connection refused");
  st(0).unreachable_until_ns.store(1);
  connect_failure(b(), 0, "connection refused");
  EXPECT_EQ(st(0).unreachable_streak.load(), 2u);
  connect_success(b(), 0);
  EXPECT_TRUE(st(0).in_rotation());
  EXPECT_EQ(st(0).unreachable_streak.load(), 0u);
  EXPECT_EQ(st(0).unreachable_until_ns.load(), 0);
  connect_failure(b(), 0, "connection refused");
  EXPECT_LE(unreachable_ms_left(0), kUnreachableBase.count()) << "back to the base interval";
}

TEST_F(PassiveTest, TheLastServerInRotationStaysIn) {
  make(2);
  connect_failure(b(), 0, "connection refused");
  EXPECT_FALSE(st(0).in_rotation());
  connect_failure(b(), 1, "connection refused");
  EXPECT_TRUE(st(1).in_rotation()) << "no server left would turn every request into a 503";
  EXPECT_EQ(st(1).connect_failures.load(), 1u);
  // Down by the health checks counts as out too.
  make(3);
  st(1).up.store(false);
  connect_failure(b(), 0, "connection refused");
  EXPECT_FALSE(st(0).in_rotation());
  connect_failure(b(), 2, "connection refused");
  EXPECT_TRUE(st(2).in_rotation());
}

TEST_F(PassiveTest, AProbeThatStartedAfterTheFailureBringsItBack) {
  make(2);
  int64_t before = now();
  connect_failure(b(), 0, "connection refused");
  // A probe that started before the failure says nothing about the server since.
  probe_passed(st(0), before - 1);
  EXPECT_TRUE(st(0).unreachable());
  EXPECT_EQ(st(0).probes_passed.load(), 1u);
  probe_passed(st(0), now());
  EXPECT_FALSE(st(0).unreachable());
  EXPECT_TRUE(st(0).in_rotation());
  EXPECT_EQ(st(0).unreachable_streak.load(), 0u);
  EXPECT_EQ(st(0).probes_passed.load(), 2u);
}

TEST_F(PassiveTest, PassiveEjectionAfterConsecutiveFailures) {
  make(4, "    passive: {failures: 3, cooldown: 2s}\n");
  passive_failure(b(), 0, "status", 500);
  passive_failure(b(), 0, "status", 500);
  EXPECT_TRUE(st(0).in_rotation());
  passive_success(b(), 0);  // a success resets the count
  passive_failure(b(), 0, "status", 500);
  passive_failure(b(), 0, "status", 500);
  EXPECT_TRUE(st(0).in_rotation());
  passive_failure(b(), 0, "status", 500);
  EXPECT_TRUE(st(0).ejected());
  EXPECT_FALSE(st(0).in_rotation());
  EXPECT_FALSE(st(0).unreachable()) << "a 5xx is not a connect failure";
  int64_t left_ms = (st(0).ejected_until_ns.load() - now()) / 1'000'000;
  EXPECT_GT(left_ms, 1900);
  EXPECT_LE(left_ms, 2000);
  // Ejected again right after the cooldown: twice as long.
  st(0).ejected_until_ns.store(1);
  for (int i = 0; i < 3; ++i)
    passive_failure(b(), 0, "status", 500);
  left_ms = (st(0).ejected_until_ns.load() - now()) / 1'000'000;
  EXPECT_GT(left_ms, 3900);
  EXPECT_LE(left_ms, 4000);
}

TEST_F(PassiveTest, PassiveNeedsItsConfig) {
  make(2);
  for (int i = 0; i < 100; ++i)
    passive_failure(b(), 0, "status", 500);
  EXPECT_TRUE(st(0).in_rotation());
  EXPECT_EQ(st(0).consecutive_failures.load(), 0u);
}

TEST_F(PassiveTest, MaxEjectedPercent) {
  make(4, "    passive: {failures: 1, cooldown: 10s, max_ejected_percent: 50}\n");
  for (size_t i = 0; i < 4; ++i)
    passive_failure(b(), i, "status", 503);
  int out = 0;
  for (size_t i = 0; i < 4; ++i)
    out += st(i).ejected() ? 1 : 0;
  EXPECT_EQ(out, 2);
}

}  // namespace
}  // namespace weir::health
