// Snapshots (src/model/snapshot.*) and the registry behind them (src/model/registry.*): what a
// config becomes at run time, the typed ids and accessors, and what survives a rebuild (reload):
// a server keeps its ServerState and uid while its backend, name and address stay the same, and
// gets fresh ones when any of them changes.
#include "model/snapshot.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "model/ids.hpp"
#include "model/registry.hpp"
#include "model_test_util.hpp"

namespace weir::model {
namespace {

using test::backend_named;
using test::build;
using test::server_named;

// Backends "web" (servers a, b, c) and "api" (one server, unnamed) behind listener "main".
// `web_servers` replaces web's server list (YAML list items, indented by 6).
std::string two_backends(std::string_view web_servers =
                             "      - { name: a, address: 127.0.0.1:9001 }\n"
                             "      - { name: b, address: 127.0.0.1:9002, weight: 3 }\n"
                             "      - { name: c, address: 127.0.0.1:9003 }\n") {
  std::string y = R"(workers: 3
listeners:
  - name: main
    listen: [127.0.0.1:18080, "[::1]:18081"]
    routes:
      - match: { path_prefix: /api/ }
        backend: api
    backend: web
backends:
  - name: web
    balance: least_connections
    slow_start: 1500ms
    servers:
)";
  y += web_servers;
  y += R"(  - name: api
    balance: ip_hash
    servers:
      - address: 127.0.0.1:9100
)";
  return y;
}

const ServerRuntime& server_of(const Snapshot& snap, std::string_view backend,
                               std::string_view server) {
  const BackendRuntime& b = snap.backend(backend_named(snap, backend));
  ServerId id = server_named(b, server);
  EXPECT_TRUE(b.has(id)) << backend << "/" << server;
  return b.servers.at(id.index());
}

// ---------------------------------------------------------------------------------------------
// Typed ids

TEST(Ids, DefaultIsNoneAndFromIntKeepsTheValue) {
  EXPECT_FALSE(ServerId{}.valid());
  EXPECT_FALSE(BackendId{}.valid());
  EXPECT_EQ(ServerId{}.as_int(), -1);
  EXPECT_FALSE(ServerId::from_int(-1).valid());
  EXPECT_EQ(ServerId::from_int(-1), ServerId{});
  EXPECT_TRUE(ServerId::from_int(0).valid());
  EXPECT_EQ(ServerId::from_int(7).index(), 7u);
  EXPECT_EQ(ServerId(7).as_int(), 7);
  EXPECT_EQ(ServerId(7), ServerId::from_int(7));
  EXPECT_NE(ServerId(7), ServerId(8));
}

TEST(Ids, CannotBeMixedUp) {
  // Compile-time: a server id is no backend id, and no plain integer turns into either silently.
  static_assert(!std::is_convertible_v<ServerId, BackendId>);
  static_assert(!std::is_constructible_v<BackendId, ServerId>);
  static_assert(!std::is_convertible_v<int, ServerId>);
  static_assert(!std::is_convertible_v<size_t, BackendId>);
  static_assert(!std::is_convertible_v<ServerId, int>);
  static_assert(std::is_trivially_copyable_v<ServerId>);
  SUCCEED();
}

// ---------------------------------------------------------------------------------------------
// What a snapshot holds

TEST(Snapshot, MirrorsTheConfig) {
  ServerRegistry registry;
  SnapshotPtr snap = build(two_backends(), registry);
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->workers, 3u);
  ASSERT_EQ(snap->listeners.size(), 1u);
  EXPECT_EQ(snap->listeners[0].cfg, &snap->config->listeners[0]);
  ASSERT_EQ(snap->listeners[0].addrs.size(), 2u);
  EXPECT_EQ(snap->listeners[0].addrs[0].to_string(), "127.0.0.1:18080");
  EXPECT_EQ(snap->listeners[0].addrs[1].to_string(), "[::1]:18081");
  EXPECT_EQ(snap->listeners[0].tls, nullptr);

  ASSERT_EQ(snap->backends.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    EXPECT_EQ(snap->backends[i].cfg, &snap->config->backends[i]);
  const BackendRuntime& web = snap->backend(BackendId(0));
  EXPECT_EQ(web.cfg->name, "web");
  ASSERT_EQ(web.servers.size(), 3u);
  const char* names[] = {"a", "b", "c"};
  const char* addresses[] = {"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"};
  for (size_t i = 0; i < 3; ++i) {
    const ServerRuntime& s = web.server(ServerId(i));
    EXPECT_EQ(s.name, names[i]);
    EXPECT_EQ(s.address_text, addresses[i]);
    EXPECT_EQ(s.addr.to_string(), addresses[i]);
    EXPECT_EQ(s.weight, i == 1 ? 3u : 1u);
    ASSERT_NE(s.state, nullptr);
    EXPECT_EQ(s.tls, nullptr);
  }
  EXPECT_FALSE(web.sticky);
  EXPECT_EQ(web.hash_key.kind, KeySpec::Kind::ClientIp);  // the default hash_key

  const BackendRuntime& api = snap->backend(BackendId(1));
  EXPECT_EQ(api.cfg->name, "api");
  ASSERT_EQ(api.servers.size(), 1u);
  EXPECT_EQ(api.servers[0].name, "api-1");  // unnamed servers: "<backend>-<index>"
  EXPECT_EQ(api.hash_key.kind, KeySpec::Kind::ClientIp);
}

TEST(Snapshot, WorkersAutoIsAtLeastOne) {
  ServerRegistry registry;
  std::string y = two_backends();
  y.replace(0, y.find('\n'), "workers: auto");
  SnapshotPtr snap = build(y, registry);
  ASSERT_TRUE(snap);
  EXPECT_GE(snap->workers, 1u);
  unsigned hw = std::thread::hardware_concurrency();
  if (hw > 0) {
    EXPECT_EQ(snap->workers, hw);
  }
}

TEST(Snapshot, HashKeyOfConsistentHash) {
  ServerRegistry registry;
  SnapshotPtr snap = build(R"(
listeners:
  - { name: main, listen: 127.0.0.1:18080, backend: web }
backends:
  - name: web
    balance: consistent_hash
    hash_key: header:X-Tenant
    servers: [{ name: a, address: 127.0.0.1:9001 }]
)",
                           registry);
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->backends[0].hash_key.kind, KeySpec::Kind::Header);
  EXPECT_EQ(snap->backends[0].hash_key.name, "X-Tenant");
}

TEST(Snapshot, AccessorsAndHas) {
  ServerRegistry registry;
  SnapshotPtr snap = build(two_backends(), registry);
  ASSERT_TRUE(snap);
  const BackendRuntime& web = snap->backend(BackendId(0));
  for (size_t i = 0; i < web.servers.size(); ++i) {
    ServerId id(i);
    EXPECT_TRUE(web.has(id));
    EXPECT_EQ(&web.server(id), &web.servers[i]);
    EXPECT_EQ(&web.state(id), web.servers[i].state.get());
  }
  EXPECT_FALSE(web.has(ServerId{}));
  EXPECT_FALSE(web.has(ServerId::from_int(-1)));
  EXPECT_FALSE(web.has(ServerId(3)));
  EXPECT_FALSE(web.has(ServerId(1000)));
  EXPECT_FALSE(snap->backend(BackendId(1)).has(ServerId(1)));
  EXPECT_EQ(&snap->backend(BackendId(1)), &snap->backends[1]);
  // state(id) is the server's shared state: a write through it shows everywhere.
  web.state(ServerId(2)).active.store(11);
  EXPECT_EQ(web.servers[2].state->active.load(), 11);
}

TEST(Snapshot, InfosParallelServers) {
  ServerRegistry registry;
  SnapshotPtr snap = build(two_backends(), registry);
  ASSERT_TRUE(snap);
  for (const BackendRuntime& b : snap->backends) {
    ASSERT_EQ(b.infos.size(), b.servers.size()) << b.cfg->name;
    for (size_t i = 0; i < b.servers.size(); ++i) {
      EXPECT_EQ(b.infos[i].state, b.servers[i].state.get());
      EXPECT_EQ(b.infos[i].weight, b.servers[i].weight);
      EXPECT_EQ(b.infos[i].name, b.servers[i].name);
      EXPECT_EQ(b.infos[i].slow_start_ns,
                b.cfg->name == "web"
                    ? std::chrono::nanoseconds(std::chrono::milliseconds(1500)).count()
                    : 0);
    }
  }
}

TEST(Snapshot, UidsAreUniqueInTheProcess) {
  ServerRegistry registry;
  SnapshotPtr snap = build(two_backends(), registry);
  ASSERT_TRUE(snap);
  std::set<uint32_t> uids;
  std::set<const ServerState*> states;
  size_t n = 0;
  for (const BackendRuntime& b : snap->backends) {
    for (const ServerRuntime& s : b.servers) {
      uids.insert(s.uid);
      states.insert(s.state.get());
      ++n;
    }
  }
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(uids.size(), n);
  EXPECT_EQ(states.size(), n);
  // Small dense numbers (they index per-worker vectors: pools, counters).
  EXPECT_EQ(*uids.rbegin(), n - 1);
}

TEST(Snapshot, FreshStateIsUpIdleAndNotEjected) {
  ServerRegistry registry;
  SnapshotPtr snap = build(two_backends(), registry);
  ASSERT_TRUE(snap);
  const ServerState& s = *snap->backends[0].servers[0].state;
  EXPECT_TRUE(s.up.load());
  EXPECT_EQ(s.active.load(), 0);
  EXPECT_EQ(s.latency(), 0.0);
  EXPECT_FALSE(s.ejected());
  EXPECT_TRUE(s.in_rotation());
  EXPECT_TRUE(snap->backends[0].infos[0].available());
}

// ---------------------------------------------------------------------------------------------
// Rebuilds

TEST(SnapshotRebuild, ServersKeepTheirStateAndUid) {
  ServerRegistry registry;
  SnapshotPtr s1 = build(two_backends(), registry);
  ASSERT_TRUE(s1);
  const ServerRuntime& a1 = server_of(*s1, "web", "a");
  const ServerRuntime& b1 = server_of(*s1, "web", "b");
  a1.state->up.store(false);
  a1.state->active.store(4);
  a1.state->observe_latency(0.25);
  b1.state->consecutive_failures.store(2);

  SnapshotPtr s2 = build(two_backends(), registry);
  ASSERT_TRUE(s2);
  ASSERT_NE(s1, s2);
  for (std::string_view name : {"a", "b", "c"}) {
    const ServerRuntime& before = server_of(*s1, "web", name);
    const ServerRuntime& after = server_of(*s2, "web", name);
    EXPECT_EQ(after.state, before.state) << name;
    EXPECT_EQ(after.uid, before.uid) << name;
  }
  const ServerRuntime& a2 = server_of(*s2, "web", "a");
  EXPECT_FALSE(a2.state->up.load());
  EXPECT_EQ(a2.state->active.load(), 4);
  EXPECT_DOUBLE_EQ(a2.state->latency(), 0.25);
  EXPECT_EQ(server_of(*s2, "web", "b").state->consecutive_failures.load(), 2u);
  EXPECT_EQ(server_of(*s2, "api", "api-1").state, server_of(*s1, "api", "api-1").state);
  // The balancer's view follows.
  EXPECT_EQ(s2->backends[0].infos[0].state, a1.state.get());
}

TEST(SnapshotRebuild, StateFollowsTheNameNotThePosition) {
  ServerRegistry registry;
  SnapshotPtr s1 = build(two_backends(), registry);
  ASSERT_TRUE(s1);
  SnapshotPtr s2 = build(two_backends("      - { name: c, address: 127.0.0.1:9003 }\n"
                                      "      - { name: a, address: 127.0.0.1:9001 }\n"
                                      "      - { name: b, address: 127.0.0.1:9002, weight: 3 }\n"),
                         registry);
  ASSERT_TRUE(s2);
  const BackendRuntime& web2 = s2->backends[0];
  EXPECT_EQ(web2.server(ServerId(0)).name, "c");
  for (std::string_view name : {"a", "b", "c"}) {
    EXPECT_EQ(server_of(*s2, "web", name).state, server_of(*s1, "web", name).state) << name;
    EXPECT_EQ(server_of(*s2, "web", name).uid, server_of(*s1, "web", name).uid) << name;
  }
  EXPECT_EQ(web2.infos[0].state, server_of(*s1, "web", "c").state.get());
}

TEST(SnapshotRebuild, WeightChangeKeepsTheState) {
  ServerRegistry registry;
  SnapshotPtr s1 = build(two_backends(), registry);
  SnapshotPtr s2 = build(two_backends("      - { name: a, address: 127.0.0.1:9001, weight: 9 }\n"
                                      "      - { name: b, address: 127.0.0.1:9002 }\n"
                                      "      - { name: c, address: 127.0.0.1:9003 }\n"),
                         registry);
  ASSERT_TRUE(s1 && s2);
  EXPECT_EQ(server_of(*s2, "web", "a").weight, 9u);
  EXPECT_EQ(server_of(*s2, "web", "a").state, server_of(*s1, "web", "a").state);
  EXPECT_EQ(server_of(*s2, "web", "b").weight, 1u);
  EXPECT_EQ(server_of(*s2, "web", "b").state, server_of(*s1, "web", "b").state);
}

TEST(SnapshotRebuild, NewAddressNewNameOrNewBackendGetAFreshState) {
  ServerRegistry registry;
  SnapshotPtr s1 = build(two_backends(), registry);
  ASSERT_TRUE(s1);
  std::set<uint32_t> old_uids;
  for (const BackendRuntime& b : s1->backends) {
    for (const ServerRuntime& s : b.servers) {
      s.state->up.store(false);
      s.state->active.store(5);
      old_uids.insert(s.uid);
    }
  }
  // a: another port; b renamed to b2 (same address); c moves to another IP; d is new.
  SnapshotPtr s2 = build(two_backends("      - { name: a, address: 127.0.0.1:9011 }\n"
                                      "      - { name: b2, address: 127.0.0.1:9002 }\n"
                                      "      - { name: c, address: 127.0.0.2:9003 }\n"
                                      "      - { name: d, address: 127.0.0.1:9004 }\n"),
                         registry);
  ASSERT_TRUE(s2);
  std::set<uint32_t> new_uids;
  for (std::string_view name : {"a", "b2", "c", "d"}) {
    const ServerRuntime& s = server_of(*s2, "web", name);
    EXPECT_TRUE(s.state->up.load()) << name;
    EXPECT_EQ(s.state->active.load(), 0) << name;
    EXPECT_EQ(old_uids.count(s.uid), 0u) << name << " reuses uid " << s.uid;
    new_uids.insert(s.uid);
  }
  EXPECT_EQ(new_uids.size(), 4u);
  EXPECT_NE(server_of(*s2, "web", "a").state, server_of(*s1, "web", "a").state);
  EXPECT_NE(server_of(*s2, "web", "c").state, server_of(*s1, "web", "c").state);
  // The unchanged api server keeps its own.
  EXPECT_EQ(server_of(*s2, "api", "api-1").state, server_of(*s1, "api", "api-1").state);
  EXPECT_EQ(server_of(*s2, "api", "api-1").state->active.load(), 5);
}

TEST(SnapshotRebuild, SameServerNameInAnotherBackendIsAnotherServer) {
  ServerRegistry registry;
  SnapshotPtr snap = build(R"(
listeners:
  - { name: main, listen: 127.0.0.1:18080, backend: one }
backends:
  - name: one
    servers: [{ name: s, address: 127.0.0.1:9001 }]
  - name: two
    servers: [{ name: s, address: 127.0.0.1:9001 }]
)",
                           registry);
  ASSERT_TRUE(snap);
  EXPECT_NE(snap->backends[0].servers[0].state, snap->backends[1].servers[0].state);
  EXPECT_NE(snap->backends[0].servers[0].uid, snap->backends[1].servers[0].uid);
}

TEST(SnapshotRebuild, AnotherRegistryStartsAfresh) {
  ServerRegistry r1, r2;
  SnapshotPtr s1 = build(two_backends(), r1);
  SnapshotPtr s2 = build(two_backends(), r2);
  ASSERT_TRUE(s1 && s2);
  EXPECT_NE(server_of(*s1, "web", "a").state, server_of(*s2, "web", "a").state);
  EXPECT_EQ(server_of(*s1, "web", "a").uid, server_of(*s2, "web", "a").uid);  // both from 0
}

TEST(SnapshotRebuild, AnOldSnapshotStaysUsable) {
  ServerRegistry registry;
  SnapshotPtr s1 = build(two_backends(), registry);
  ASSERT_TRUE(s1);
  std::shared_ptr<const config::Config> cfg1 = s1->config;
  SnapshotPtr s2 = build(two_backends("      - { name: z, address: 127.0.0.1:9050 }\n"), registry);
  ASSERT_TRUE(s2);
  // The old snapshot holds its own config: requests still in flight on it see it whole.
  EXPECT_EQ(s1->config, cfg1);
  EXPECT_EQ(s1->backends[0].cfg->name, "web");
  EXPECT_EQ(s1->backends[0].servers.size(), 3u);
  EXPECT_EQ(s1->backends[0].infos[2].name, "c");
  EXPECT_EQ(s2->backends[0].servers.size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// The registry

TEST(Registry, SameKeySameStateAndIdNewKeyNextId) {
  ServerRegistry r;
  auto [s1, id1] = r.get("web/a@127.0.0.1:1");
  auto [s2, id2] = r.get("web/b@127.0.0.1:1");
  auto [s3, id3] = r.get("web/a@127.0.0.1:1");
  EXPECT_EQ(id1, 0u);
  EXPECT_EQ(id2, 1u);
  EXPECT_EQ(id3, id1);
  EXPECT_EQ(s3, s1);
  EXPECT_NE(s2, s1);
}

TEST(Registry, StateOutlivesEverySnapshot) {
  ServerRegistry registry;
  std::weak_ptr<ServerState> weak;
  {
    SnapshotPtr s = build(two_backends(), registry);
    ASSERT_TRUE(s);
    weak = s->backends[0].servers[0].state;
    weak.lock()->active.store(3);
  }
  auto alive = weak.lock();
  ASSERT_TRUE(alive) << "the registry let the state go with the snapshot";
  EXPECT_EQ(alive->active.load(), 3);
}

TEST(Registry, ConcurrentGetsAgree) {
  ServerRegistry r;
  constexpr int kThreads = 4, kKeys = 200;
  std::vector<std::vector<std::pair<std::shared_ptr<ServerState>, uint32_t>>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kKeys; ++k)
        got[t].push_back(r.get("b/s" + std::to_string((k * (t + 1)) % kKeys) + "@x"));
    });
  }
  for (auto& th : threads)
    th.join();
  std::set<uint32_t> ids;
  for (int k = 0; k < kKeys; ++k) {
    auto ref = r.get("b/s" + std::to_string(k) + "@x");
    ids.insert(ref.second);
    for (int t = 0; t < kThreads; ++t) {
      // Thread t asked for key k at position i where (i * (t + 1)) % kKeys == k, if any.
      for (int i = 0; i < kKeys; ++i) {
        if ((i * (t + 1)) % kKeys != k) continue;
        EXPECT_EQ(got[t][static_cast<size_t>(i)].first, ref.first);
        EXPECT_EQ(got[t][static_cast<size_t>(i)].second, ref.second);
      }
    }
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kKeys));
  EXPECT_EQ(*ids.rbegin(), static_cast<uint32_t>(kKeys - 1));
}

TEST(Registry, TicketKeysAreMadeOnce) {
  ServerRegistry r;
  auto& k1 = r.ticket_keys();
  ASSERT_NE(k1, nullptr);
  EXPECT_EQ(r.ticket_keys(), k1);
  ServerRegistry other;
  EXPECT_NE(other.ticket_keys(), k1);
}

TEST(Registry, WarnsOncePerBackend) {
  ServerRegistry r;
  EXPECT_FALSE(r.warned_random_key("web"));
  EXPECT_TRUE(r.warned_random_key("web"));
  EXPECT_FALSE(r.warned_random_key("api"));
}

// ---------------------------------------------------------------------------------------------
// ServerState: in rotation, ejection

TEST(ServerState, InRotationNeedsUpAndNotEjected) {
  ServerState s;
  EXPECT_TRUE(s.in_rotation());
  s.up.store(false);
  EXPECT_FALSE(s.in_rotation());
  s.up.store(true);
  int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  s.ejected_until_ns.store(now + std::chrono::nanoseconds(std::chrono::hours(1)).count());
  EXPECT_TRUE(s.ejected());
  EXPECT_FALSE(s.in_rotation());
  s.ejected_until_ns.store(now - 1);  // the cooldown is over
  EXPECT_FALSE(s.ejected());
  EXPECT_TRUE(s.in_rotation());
  ServerInfo info{0, &s, "x"};
  EXPECT_FALSE(info.available()) << "weight 0 takes no traffic";
  info.weight = 2;
  EXPECT_TRUE(info.available());
}

TEST(ServerState, LatencyIsADecayingAverage) {
  ServerState s;
  s.observe_latency(1.0);
  EXPECT_DOUBLE_EQ(s.latency(), 1.0);  // the first sample is taken as is
  s.observe_latency(2.0, 0.5);
  EXPECT_DOUBLE_EQ(s.latency(), 1.5);
  s.observe_latency(0.0);
  EXPECT_DOUBLE_EQ(s.latency(), 1.5 * 0.7);
}

}  // namespace
}  // namespace weir::model
