#include "fleet/announce.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "fake_bird.hpp"

namespace weir::fleet {
namespace {

using namespace std::chrono_literals;
using test::FakeBird;
using test::TempDir;

// Backends "web" (2 servers) and "api" (3 servers) and an `announce` on web.
struct World {
  World(std::string socket, std::vector<std::string> protocols = {"vip_web"}) {
    auto cfg = std::make_shared<config::Config>();
    for (const char* name : {"web", "api"}) {
      config::Backend b;
      b.name = name;
      cfg->backends.push_back(b);
    }
    config::Announce a;
    a.bird_socket = std::move(socket);
    a.protocols = std::move(protocols);
    a.backends = {"web"};
    cfg->announce = a;
    for (size_t i = 0; i < 5; ++i)
      states.push_back(std::make_shared<model::ServerState>());
    install(cfg);
  }
  void install(std::shared_ptr<config::Config> cfg) {
    auto snap = std::make_shared<model::Snapshot>();
    snap->config = cfg;
    size_t next = 0;
    for (size_t b = 0; b < cfg->backends.size(); ++b) {
      model::BackendRuntime br;
      br.cfg = &cfg->backends[b];
      for (size_t n = 0; n < (b == 0 ? 2u : 3u); ++n) {
        model::ServerRuntime sr;
        sr.name = "s" + std::to_string(n);
        sr.state = states[next++];
        br.servers.push_back(sr);
      }
      snap->backends.push_back(std::move(br));
    }
    std::lock_guard lock(mu);
    current = snap;
  }
  std::shared_ptr<config::Config> config_copy() {
    std::lock_guard lock(mu);
    return std::make_shared<config::Config>(*current->config);
  }
  model::SnapshotPtr snapshot() {
    std::lock_guard lock(mu);
    return current;
  }
  void set_web_up(bool up) {
    states[0]->up = up;
    states[1]->up = up;
  }
  std::mutex mu;
  model::SnapshotPtr current;
  std::vector<std::shared_ptr<model::ServerState>> states;
};

Announcer::Timing fast() {
  Announcer::Timing t;
  t.tick = 10ms;
  t.idle_tick = 50ms;
  t.io_timeout = 300ms;
  t.first_retry = 20ms;
  t.max_retry = 100ms;
  return t;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds within = 3s) {
  auto end = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

TEST(AnnounceVerdict, EveryListedBackendNeedsMinHealthyServersTakingNewClients) {
  World w("/nonexistent");
  config::Announce a = *w.snapshot()->config->announce;
  Verdict v = evaluate(a, *w.snapshot());
  EXPECT_TRUE(v.healthy);
  EXPECT_EQ(v.detail, "web: 2 of 2 healthy");
  w.states[0]->up = false;
  v = evaluate(a, *w.snapshot());
  EXPECT_TRUE(v.healthy);
  EXPECT_EQ(v.detail, "web: 1 of 2 healthy");
  a.min_healthy = 2;
  v = evaluate(a, *w.snapshot());
  EXPECT_FALSE(v.healthy);
  EXPECT_EQ(v.detail, "web: 1 of 2 healthy, need 2");
  // Maintenance and drain (runtime API) take no new clients: not counted.
  w.states[0]->up = true;
  w.states[1]->admin = model::AdminState::Maint;
  EXPECT_FALSE(evaluate(a, *w.snapshot()).healthy);
  w.states[1]->admin = model::AdminState::Ready;
  // Two backends: both must be healthy.
  a.backends = {"web", "api"};
  a.min_healthy = 1;
  for (size_t i = 2; i < 5; ++i)
    w.states[i]->up = false;
  v = evaluate(a, *w.snapshot());
  EXPECT_FALSE(v.healthy);
  EXPECT_EQ(v.detail, "web: 2 of 2 healthy; api: 0 of 3 healthy, need 1");
  w.states[4]->up = true;
  EXPECT_TRUE(evaluate(a, *w.snapshot()).healthy);
}

TEST(AnnounceVerdict, WithAHealthCheckAServerCountsOncePassedAProbe) {
  World w("/nonexistent");
  auto cfg = w.config_copy();
  cfg->backends[0].health_check.emplace();
  w.install(cfg);
  const config::Announce& a = *w.snapshot()->config->announce;
  // Just started: up (as every server starts) but never probed: not known yet.
  Verdict v = evaluate(a, *w.snapshot());
  EXPECT_FALSE(v.healthy);
  EXPECT_FALSE(v.known);
  EXPECT_EQ(v.detail, "web: 0 of 2 healthy, need 1 (2 not checked yet)");
  // Both failed a probe (still up until `fall` failures): known, and not healthy.
  w.states[0]->probes_failed = 1;
  w.states[1]->probes_failed = 1;
  v = evaluate(a, *w.snapshot());
  EXPECT_FALSE(v.healthy);
  EXPECT_TRUE(v.known);
  EXPECT_EQ(v.detail, "web: 0 of 2 healthy, need 1");
  w.states[1]->probes_passed = 1;
  v = evaluate(a, *w.snapshot());
  EXPECT_TRUE(v.healthy);
  EXPECT_TRUE(v.known);
  EXPECT_EQ(v.detail, "web: 1 of 2 healthy");
  w.states[1]->up = false;  // later failures take it out as usual
  EXPECT_FALSE(evaluate(a, *w.snapshot()).healthy);
}

TEST(Announcer, LeavesBirdAloneUntilTheFirstProbes) {
  // A binary upgrade's new process: BIRD announces already; not knowing yet changes nothing.
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {"vip_web"}, /*enabled_at_start=*/true);
  bird.start();
  World w(dir.file("bird.ctl"));
  auto cfg = w.config_copy();
  cfg->backends[0].health_check.emplace();
  w.install(cfg);
  Announcer an([&] { return w.snapshot(); }, fast());
  an.start();
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(bird.commands().empty());
  w.states[0]->probes_passed = 1;
  ASSERT_TRUE(eventually([&] { return an.announced(); }));
  EXPECT_EQ(bird.commands(), (std::vector<std::string>{"enable vip_web"}));
  EXPECT_TRUE(bird.enabled("vip_web"));
}

TEST(Announcer, FollowsHealth) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {"vip_web"});
  bird.start();
  World w(dir.file("bird.ctl"));
  Announcer an([&] { return w.snapshot(); }, fast());
  an.start();
  ASSERT_TRUE(eventually([&] { return an.announced(); }));
  EXPECT_TRUE(bird.enabled("vip_web"));
  w.set_web_up(false);
  ASSERT_TRUE(eventually([&] { return !an.announced(); }));
  EXPECT_FALSE(bird.enabled("vip_web"));
  w.set_web_up(true);
  ASSERT_TRUE(eventually([&] { return an.announced(); }));
  EXPECT_TRUE(bird.enabled("vip_web"));
  // Only changes are sent, over one connection.
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(bird.commands(),
            (std::vector<std::string>{"enable vip_web", "disable vip_web", "enable vip_web"}));
  EXPECT_EQ(bird.connections(), 1);
  an.stop();
  EXPECT_TRUE(bird.enabled("vip_web"));  // stop() leaves BIRD as it is
}

TEST(Announcer, SeveralProtocols) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {"vip_a", "vip_b"});
  bird.start();
  World w(dir.file("bird.ctl"), {"vip_a", "vip_b"});
  Announcer an([&] { return w.snapshot(); }, fast());
  an.start();
  ASSERT_TRUE(eventually([&] { return an.announced(); }));
  EXPECT_TRUE(bird.enabled("vip_a"));
  EXPECT_TRUE(bird.enabled("vip_b"));
}

TEST(Announcer, BirdRestartedGetsTheStateAgain) {
  TempDir dir;
  auto bird = std::make_unique<FakeBird>(dir.file("bird.ctl"), std::vector<std::string>{"vip_web"});
  bird->start();
  World w(dir.file("bird.ctl"));
  Announcer an([&] { return w.snapshot(); }, fast());
  an.start();
  ASSERT_TRUE(eventually([&] { return an.announced(); }));
  bird->stop();  // BIRD killed
  ASSERT_TRUE(eventually([&] { return !an.announced(); }));
  std::this_thread::sleep_for(150ms);  // a few failed reconnects
  // BIRD back with its config's default (disabled): weir enables again.
  bird = std::make_unique<FakeBird>(dir.file("bird.ctl"), std::vector<std::string>{"vip_web"});
  bird->start();
  ASSERT_TRUE(eventually([&] { return an.announced(); }));
  EXPECT_TRUE(bird->enabled("vip_web"));
}

TEST(Announcer, UnreachableAtStartThenAppears) {
  TempDir dir;
  World w(dir.file("bird.ctl"));
  Announcer an([&] { return w.snapshot(); }, fast());
  an.start();
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(an.announced());
  FakeBird bird(dir.file("bird.ctl"), {"vip_web"});
  bird.start();
  ASSERT_TRUE(eventually([&] { return an.announced(); }));
}

TEST(Announcer, RefusedCommandsAreRetried) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {});  // BIRD does not know vip_web (yet)
  bird.start();
  World w(dir.file("bird.ctl"));
  Announcer an([&] { return w.snapshot(); }, fast());
  an.start();
  ASSERT_TRUE(eventually([&] { return bird.commands().size() >= 3; }));
  EXPECT_FALSE(an.announced());
  // BIRD reconfigured with the protocol: the next retry succeeds.
  bird.set_answer([](const std::string& line) {
    return line == "enable vip_web" ? std::string("0011-vip_web: enabled\n0000 \n")
                                    : std::string("9001 syntax error\n");
  });
  ASSERT_TRUE(eventually([&] { return an.announced(); }));
}

TEST(Announcer, WithdrawHoldsDown) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {"vip_web"});
  bird.start();
  World w(dir.file("bird.ctl"));
  Announcer an([&] { return w.snapshot(); }, fast());
  an.start();
  ASSERT_TRUE(eventually([&] { return an.announced(); }));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(an.withdraw(1s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  EXPECT_FALSE(bird.enabled("vip_web"));
  EXPECT_FALSE(an.announced());
  std::this_thread::sleep_for(100ms);  // healthy still: stays withdrawn
  EXPECT_FALSE(bird.enabled("vip_web"));
}

TEST(Announcer, WithdrawIsBoundedWhenBirdIsGoneAndOffWhenConfigured) {
  TempDir dir;
  World w(dir.file("bird.ctl"));
  Announcer an([&] { return w.snapshot(); }, fast());
  an.start();
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(an.withdraw(200ms));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 1s);

  FakeBird bird(dir.file("bird2.ctl"), {"vip_web"});
  bird.start();
  World w2(dir.file("bird2.ctl"));
  auto cfg = w2.config_copy();
  cfg->announce->withdraw_on_drain = false;
  w2.install(cfg);
  Announcer an2([&] { return w2.snapshot(); }, fast());
  an2.start();
  ASSERT_TRUE(eventually([&] { return an2.announced(); }));
  EXPECT_FALSE(an2.withdraw(1s));
  EXPECT_TRUE(bird.enabled("vip_web"));
}

TEST(Announcer, ReloadChangesSettings) {
  TempDir dir;
  FakeBird one(dir.file("one.ctl"), {"vip_web"});
  FakeBird two(dir.file("two.ctl"), {"vip_web", "vip_api"});
  one.start();
  two.start();
  World w(dir.file("one.ctl"));
  Announcer an([&] { return w.snapshot(); }, fast());
  an.start();
  ASSERT_TRUE(eventually([&] { return one.enabled("vip_web"); }));
  // A reload: another socket and protocol, and a condition on another backend.
  auto cfg = w.config_copy();
  cfg->announce->bird_socket = dir.file("two.ctl");
  cfg->announce->protocols = {"vip_api"};
  cfg->announce->backends = {"api"};
  w.install(cfg);
  an.wake();
  ASSERT_TRUE(eventually([&] { return two.enabled("vip_api"); }));
  EXPECT_FALSE(two.enabled("vip_web"));
  for (size_t i = 2; i < 5; ++i)
    w.states[i]->up = false;
  ASSERT_TRUE(eventually([&] { return !two.enabled("vip_api"); }));
  // `announce` removed: BIRD is left alone.
  cfg = w.config_copy();
  cfg->announce.reset();
  w.install(cfg);
  an.wake();
  ASSERT_TRUE(eventually([&] { return !an.announced(); }));
}

}  // namespace
}  // namespace weir::fleet
