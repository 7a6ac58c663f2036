// DNS service discovery keys: `resolve:` on a server, `discovery:` on a backend, top-level
// `resolvers:` — what they load to and every error, at its place.
#include <gtest/gtest.h>

#include "config/loader.hpp"
#include "loader_test_util.hpp"

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;

// A listener and backend "app" whose body (indented by 4) is `backend`; `top` goes first.
std::string app(std::string_view backend, std::string_view top = "") {
  return std::string(top) + R"(listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: app
backends:
  - name: app
)" + std::string(backend);
}

TEST(Discovery, ResolveOnAServer) {
  Config c = ok(load(app(R"(    servers:
      - { address: app.internal:8080, resolve: 10s, weight: 3 }
      - address: 127.0.0.1:9000
)")));
  const Backend& b = c.backends.at(0);
  ASSERT_EQ(b.servers.size(), 2u);
  EXPECT_EQ(b.servers[0].resolve, milliseconds(10000));
  EXPECT_EQ(b.servers[0].host, "app.internal");
  EXPECT_EQ(b.servers[0].port, 8080);
  EXPECT_EQ(b.servers[0].weight, 3u);
  EXPECT_FALSE(b.servers[1].resolve.has_value());
  EXPECT_FALSE(b.discovery.has_value());
  EXPECT_TRUE(c.resolvers.empty());
}

TEST(Discovery, ResolveErrors) {
  EXPECT_EQ(error(app(R"(    servers:
      - { address: 127.0.0.1:8080, resolve: 10s }
)")),
            "t.yaml:8:36: \"resolve\" needs a DNS name, but \"127.0.0.1\" is an IP address");
  EXPECT_EQ(error(app(R"(    servers:
      - { address: "[::1]:8080", resolve: 10s }
)")),
            "t.yaml:8:34: \"resolve\" needs a DNS name, but \"::1\" is an IP address");
  EXPECT_EQ(error(app(R"(    servers:
      - { address: app.internal:8080, resolve: 500ms }
)")),
            "t.yaml:8:48: \"resolve\" must be at least 1s");
  EXPECT_EQ(error(app(R"(    servers:
      - { address: app.internal:8080, resolve: 0s }
)"))
                .find("t.yaml:8:48: "),
            0u);
  EXPECT_EQ(error(app(R"(    servers:
      - { address: app.internal:8080, resolve: often }
)"))
                .find("t.yaml:8:48: "),
            0u);
}

TEST(Discovery, NameWithResolveWarns) {
  LoadResult r = load(app(R"(    servers:
      - { address: app.internal:8080, resolve: 10s, name: one }
)"));
  ok(r);
  EXPECT_EQ(all_messages(r),
            std::vector<std::string>{"t.yaml:8:53: warning: \"name\" has no effect with "
                                     "\"resolve\": each address found is a server named IP:PORT"});
}

TEST(Discovery, SrvBackend) {
  Config c = ok(load(app(R"(    slow_start: 5s
    discovery:
      srv: _http._tcp.app.internal.
      interval: 3s
)")));
  const Backend& b = c.backends.at(0);
  EXPECT_TRUE(b.servers.empty());
  ASSERT_TRUE(b.discovery.has_value());
  EXPECT_EQ(b.discovery->srv, "_http._tcp.app.internal");  // the root dot dropped
  EXPECT_EQ(b.discovery->interval, milliseconds(3000));
  EXPECT_EQ(b.discovery->pos.line, 9);  // the map starts at its first key
}

TEST(Discovery, SrvIntervalDefault) {
  Config c = ok(load(app(R"(    discovery: { srv: _http._tcp.app.internal }
)")));
  EXPECT_EQ(c.backends.at(0).discovery->interval, milliseconds(10000));
}

TEST(Discovery, SrvErrors) {
  EXPECT_EQ(error(app(R"(    discovery: { interval: 3s }
)")),
            "t.yaml:7:16: discovery needs \"srv\"");
  EXPECT_EQ(error(app(R"(    discovery: { srv: "bad name" }
)")),
            "t.yaml:7:23: \"srv\" must be a DNS name such as _http._tcp.app.internal, got \"bad "
            "name\"");
  EXPECT_EQ(error(app(R"(    discovery: { srv: 10.0.0.1 }
)")),
            "t.yaml:7:23: \"srv\" must be a DNS name such as _http._tcp.app.internal, got "
            "\"10.0.0.1\"");
  EXPECT_EQ(error(app(R"(    discovery: { srv: _http._tcp.app.internal, interval: 100ms }
)")),
            "t.yaml:7:58: discovery \"interval\" must be at least 1s");
  EXPECT_EQ(error(app(R"(    discovery: { srv: _http._tcp.app.internal, ttl: 3s }
)"))
                .find("t.yaml:7:48: unknown key \"ttl\" in discovery"),
            0u);
  EXPECT_EQ(error(app(R"(    discovery: _http._tcp.app.internal
)"))
                .find("t.yaml:7:16: "),
            0u);
}

TEST(Discovery, ServersAndDiscoveryExcludeEachOther) {
  EXPECT_EQ(error(app(R"(    discovery: { srv: _http._tcp.app.internal }
    servers:
      - address: 127.0.0.1:9000
)")),
            "t.yaml:7:5: backend \"app\" has both \"servers\" and \"discovery\"; use one of them");
}

TEST(Discovery, NeitherServersNorDiscovery) {
  EXPECT_EQ(error(app("    balance: round_robin\n")), "t.yaml:6:5: backend needs \"servers\"");
}

TEST(Discovery, SrvBackendNeedsClearTextProtocol) {
  EXPECT_EQ(error(app(R"(    protocol: h2
    discovery: { srv: _http._tcp.app.internal }
)")),
            "t.yaml:7:15: protocol h2 needs TLS to the servers, and servers found by "
            "\"discovery\" have none (use h2c for clear text)");
  ok(load(app(R"(    protocol: h2c
    discovery: { srv: _http._tcp.app.internal }
)")));
}

TEST(Discovery, Resolvers) {
  Config c = ok(load(app(R"(    servers:
      - { address: app.internal:8080, resolve: 10s }
)",
                         "resolvers: [127.0.0.1:5353, 10.0.0.1, \"[::1]:53\", \"fe80::1\"]\n")));
  EXPECT_EQ(c.resolvers, (std::vector<std::string>{"127.0.0.1:5353", "10.0.0.1:53", "[::1]:53",
                                                   "[fe80::1]:53"}));
}

TEST(Discovery, ResolverErrors) {
  const std::string servers = "    servers:\n      - { address: a.internal:80, resolve: 1s }\n";
  EXPECT_EQ(error(app(servers, "resolvers: [dns.internal:53]\n")),
            "t.yaml:1:13: a resolver must be an IP address (with an optional port), got "
            "\"dns.internal:53\"");
  EXPECT_EQ(error(app(servers, "resolvers: [127.0.0.1:0]\n")).find("t.yaml:1:13: resolver: "), 0u);
  EXPECT_EQ(error(app(servers, "resolvers: []\n")),
            "t.yaml:1:12: \"resolvers\" needs at least one address");
  EXPECT_EQ(error(app(servers, "resolvers: 127.0.0.1\n")),
            "t.yaml:1:12: \"resolvers\" must be a list, got \"127.0.0.1\"");
}

TEST(Discovery, ResolversWithoutUsersWarn) {
  LoadResult r =
      load(app("    servers:\n      - address: 127.0.0.1:9000\n", "resolvers: [127.0.0.1:53]\n"));
  ok(r);
  EXPECT_EQ(all_messages(r),
            std::vector<std::string>{
                "t.yaml:1:1: warning: \"resolvers\" has no effect: no server has \"resolve\" and "
                "no backend has \"discovery\""});
}

}  // namespace
}  // namespace weir::config
