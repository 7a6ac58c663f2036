// `cluster:` (fleet.md) and `client_limits.shared`: every key, its defaults and its errors at
// FILE:LINE:COL. Loading never connects to Redis.
#include <gtest/gtest.h>

#include "config/loader.hpp"
#include "loader_test_util.hpp"

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)

// `cluster_block` goes first (line 1 on); the listener's client_limits follow.
std::string with_cluster(std::string_view cluster_block, std::string_view limits) {
  return std::string(cluster_block) + yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
)") +
         "    client_limits: " + std::string(limits) + "\n" + yaml(R"(
    routes:
      - match: { path_prefix: / }
        backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
}

constexpr std::string_view kCluster = "cluster:\n  redis: 127.0.0.1:6379\n";
constexpr std::string_view kShared = "{ rate: 100/s, burst: 100, shared: true }";

TEST(Cluster, DefaultsAndSharedLimits) {
  const Config& c = ok(load(with_cluster(kCluster, kShared)));
  ASSERT_TRUE(c.cluster);
  EXPECT_EQ(c.cluster->redis, "127.0.0.1:6379");
  EXPECT_EQ(c.cluster->host, "127.0.0.1");
  EXPECT_EQ(c.cluster->port, 6379);
  EXPECT_EQ(c.cluster->unix_path, "");
  EXPECT_EQ(c.cluster->prefix, "weir:");
  EXPECT_EQ(c.cluster->sync_interval, Duration{100});
  EXPECT_EQ(c.cluster->pos.line, 1);
  ASSERT_TRUE(c.listeners[0].client_limits);
  EXPECT_TRUE(c.listeners[0].client_limits->shared);
  EXPECT_EQ(c.listeners[0].client_limits->rate, 100);
}

TEST(Cluster, EveryKey) {
  const Config& c = ok(load(with_cluster(
      "cluster:\n  redis: \"[::1]:7000\"\n  prefix: \"fleet-a:\"\n  sync_interval: 250ms\n",
      "{ rate: 10/s }")));
  ASSERT_TRUE(c.cluster);
  EXPECT_EQ(c.cluster->host, "::1");
  EXPECT_EQ(c.cluster->port, 7000);
  EXPECT_EQ(c.cluster->prefix, "fleet-a:");
  EXPECT_EQ(c.cluster->sync_interval, Duration{250});
  EXPECT_FALSE(c.listeners[0].client_limits->shared);  // the default
}

TEST(Cluster, UnixSocketAndHostName) {
  const Config& u =
      ok(load(with_cluster("cluster:\n  redis: unix:/run/redis/redis.sock\n", kShared)));
  EXPECT_EQ(u.cluster->unix_path, "/run/redis/redis.sock");
  EXPECT_EQ(u.cluster->host, "");
  const Config& h = ok(load(with_cluster("cluster:\n  redis: redis.internal:6380\n", kShared)));
  EXPECT_EQ(h.cluster->host, "redis.internal");
  EXPECT_EQ(h.cluster->port, 6380);
  // A relative socket path is relative to the config file's folder.
  LoadResult r = load_config_string(with_cluster("cluster:\n  redis: unix:redis.sock\n", kShared),
                                    "/etc/weir/weir.yaml");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.config->cluster->unix_path, "/etc/weir/redis.sock");
}

TEST(Cluster, SharedNeedsACluster) {
  EXPECT_EQ(error(with_cluster("", kShared)),
            "t.yaml:4:55: \"shared: true\" counts across the fleet through its Redis: give a "
            "top-level \"cluster\" with \"redis\"");
  // shared: false without a cluster is fine.
  ok(load(with_cluster("", "{ rate: 100/s, shared: false }")));
}

TEST(Cluster, SharedMaxConnectionsAlone) {
  // max_connections alone is shared too (counted across the fleet, fleet.md).
  const Config& c = ok(load(with_cluster(kCluster, "{ max_connections: 10, shared: true }")));
  ASSERT_TRUE(c.listeners[0].client_limits);
  EXPECT_TRUE(c.listeners[0].client_limits->shared);
  EXPECT_EQ(c.listeners[0].client_limits->max_connections, 10u);
  EXPECT_EQ(c.listeners[0].client_limits->rate, 0);
  // Still one of the two is needed, shared or not.
  EXPECT_NE(error(with_cluster(kCluster, "{ shared: true }"))
                .find("\"client_limits\" needs \"max_connections\" or \"rate\""),
            std::string::npos);
}

TEST(Cluster, SharedMustBeABool) {
  EXPECT_EQ(error(with_cluster(kCluster, "{ rate: 1/s, shared: yes please }")),
            "t.yaml:6:41: \"shared\" must be true or false, got \"yes please\"");
}

TEST(Cluster, Errors) {
  struct Case {
    std::string cluster;
    std::string message;
  };
  const Case cases[] = {
      {"cluster:\n  prefix: x\n", "t.yaml:2:3: cluster needs \"redis\""},
      {"cluster: 127.0.0.1:6379\n", ""},
      {"cluster:\n  redis: 127.0.0.1\n", "t.yaml:2:10: \"redis\" must be HOST:PORT or unix:/path"},
      {"cluster:\n  redis: 127.0.0.1:0\n", "t.yaml:2:10: \"redis\" must be HOST:PORT"},
      {"cluster:\n  redis: \"unix:\"\n",
       "t.yaml:2:10: \"redis\": unix: needs a socket path, such as unix:/run/redis/redis.sock"},
      {"cluster:\n  redis: unix:/" + std::string(120, 'a') + "\n",
       "t.yaml:2:10: \"redis\": the socket path is longer than 107 bytes"},
      {"cluster:\n  redis: 127.0.0.1:6379\n  prefix: \"a b\"\n",
       "t.yaml:3:11: \"prefix\" must be at most 64 printable characters without spaces, got \"a "
       "b\""},
      {"cluster:\n  redis: 127.0.0.1:6379\n  prefix: " + std::string(65, 'p') + "\n",
       "t.yaml:3:11: \"prefix\" must be at most 64 printable characters"},
      {"cluster:\n  redis: 127.0.0.1:6379\n  sync_interval: 5ms\n",
       "t.yaml:3:18: \"sync_interval\" must be from 10ms to 60s"},
      {"cluster:\n  redis: 127.0.0.1:6379\n  sync_interval: 2m\n",
       "t.yaml:3:18: \"sync_interval\" must be from 10ms to 60s"},
      {"cluster:\n  redis: 127.0.0.1:6379\n  sync_interval: fast\n", "t.yaml:3:18: "},
      {"cluster:\n  redis: 127.0.0.1:6379\n  sync: 1s\n", "t.yaml:3:3: unknown key \"sync\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.cluster);
    std::vector<std::string> e = errors(with_cluster(c.cluster, kShared));
    ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
    EXPECT_TRUE(e[0].starts_with(c.message)) << e[0];
    // A broken cluster is not also reported as missing by the listener's `shared: true`.
    EXPECT_EQ(e[0].find("give a top-level"), std::string::npos);
  }
}

}  // namespace
}  // namespace weir::config
