// Listeners, addresses and routes.
#include "config/loader.hpp"
#include "net/cidr_set.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "loader_test_util.hpp"

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;
namespace fs = std::filesystem;

TEST(Listeners, ListenListAndIpv6) {
  const Config& c = ok(load(R"(
listeners:
  - name: web
    listen: [127.0.0.1:8080, "[::1]:8080", "[2001:db8::1]:443", localhost:81, 0.0.0.0:82]
    backend: web
backends:
  - name: web
    servers:
      - address: "[fe80::1]:9001"
      - address: my_service.internal:80
)"));
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].listen,
            (std::vector<std::string>{"127.0.0.1:8080", "[::1]:8080", "[2001:db8::1]:443",
                                      "localhost:81", "0.0.0.0:82"}));
  ASSERT_EQ(c.backends[0].servers.size(), 2u);
  EXPECT_EQ(c.backends[0].servers[0].host, "fe80::1");
  EXPECT_EQ(c.backends[0].servers[0].port, 9001);
  EXPECT_EQ(c.backends[0].servers[0].address, "[fe80::1]:9001");
  EXPECT_EQ(c.backends[0].servers[1].host, "my_service.internal");
  EXPECT_EQ(c.backends[0].servers[1].port, 80);
}

TEST(Listeners, InvalidAddresses) {
  struct Case {
    const char* address;
    const char* message;
  };
  const Case cases[] = {
      {"127.0.0.1", "address \"127.0.0.1\" needs a port, e.g. 127.0.0.1:8080"},
      {"127.0.0.1:0", "invalid port \"0\" in \"127.0.0.1:0\" (expected 1-65535)"},
      {"127.0.0.1:65536", "invalid port \"65536\" in \"127.0.0.1:65536\" (expected 1-65535)"},
      {"127.0.0.1:http", "invalid port \"http\" in \"127.0.0.1:http\" (expected 1-65535)"},
      {"\"127.0.0.1:\"", "address \"127.0.0.1:\" needs a port after \":\""},
      {"256.1.1.1:80", "invalid IPv4 address \"256.1.1.1\" in \"256.1.1.1:80\""},
      {"1.2.3:80", "invalid IPv4 address \"1.2.3\" in \"1.2.3:80\""},
      {"\"::1:80\"", "IPv6 address in \"::1:80\" must be in brackets, e.g. [::1]:8080"},
      {"\"[::1]80\"", "address \"[::1]80\" needs a port, e.g. [::1]:8080"},
      {"\"[::1\"", "missing \"]\" in address \"[::1\""},
      {"\"[::g]:80\"", "invalid IPv6 address \"::g\" in \"[::g]:80\""},
      {"\"[127.0.0.1]:80\"", "invalid IPv6 address \"127.0.0.1\" in \"[127.0.0.1]:80\""},
      {"\":80\"", "address \":80\" needs a host (0.0.0.0 or [::] for every interface)"},
      {"-bad-.example:80", "invalid host name \"-bad-.example\" in \"-bad-.example:80\""},
      {"a..b:80", "invalid host name \"a..b\" in \"a..b:80\""},
      {"\"a b:80\"", "invalid host name \"a b\" in \"a b:80\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.address);
    std::string config = yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: web
backends:
  - name: web
    servers:
      - address: )") + c.address +
                         "\n";
    EXPECT_EQ(error(config), std::string("t.yaml:8:18: ") + c.message);
  }
  EXPECT_EQ(error(yaml(R"(
listeners:
  - name: web
    listen: [127.0.0.1:8080, nope]
    backend: web
)") + with_backend("").substr(with_backend("").find("backends:"))),
            "t.yaml:3:30: address \"nope\" needs a port, e.g. 127.0.0.1:8080");
}

TEST(Listeners, UnquotedIpv6IsASyntaxErrorWithAHint) {
  EXPECT_EQ(error(R"(
listeners:
  - name: web
    listen: [::1]:8080
)"),
            "t.yaml:3:18: YAML syntax error: end of map not found (quote bracketed IPv6 "
            "addresses: \"[::1]:8080\")");
}

TEST(Listeners, DuplicateListenAddress) {
  std::vector<std::string> e = errors(R"(
admin:
  listen: 127.0.0.1:8080
listeners:
  - name: a
    listen: 127.0.0.1:8080
    backend: web
  - name: b
    listen: [LOCALHOST:9000, localhost:9000]
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
  EXPECT_EQ(e, (std::vector<std::string>{
                   "t.yaml:2:11: address \"127.0.0.1:8080\" is already used by listener \"a\" "
                   "(line 5)",
                   "t.yaml:8:30: address \"localhost:9000\" is already used by listener \"b\" "
                   "(line 8)",
               }));
}

TEST(Listeners, TrustedProxies) {
  const Config& c = ok(load(with_backend("").insert(with_backend("").find("backends:"),
                                                    "    trusted_proxies: [10.0.0.1, \"::1\"]\n")));
  const auto& trusted = c.listeners.at(0).trusted_proxies;
  ASSERT_TRUE(trusted);
  EXPECT_EQ(trusted->size(), 2u);
  EXPECT_TRUE(trusted->contains_v4(0x0a000001));
  EXPECT_FALSE(trusted->contains_v4(0x0a000002));
  // CIDR ranges are welcome; names and ranges with host bits are not.
  std::string bad = with_backend("");
  bad.insert(bad.find("backends:"), "    trusted_proxies: [10.0.0.0/8, proxy.local, 10.1.2.3/8]\n");
  std::vector<std::string> errs = errors(bad);
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_TRUE(errs[0].starts_with("t.yaml:5:35: \"trusted_proxies\": ")) << errs[0];
  EXPECT_NE(errs[0].find("proxy.local"), std::string::npos) << errs[0];
  EXPECT_TRUE(errs[1].starts_with("t.yaml:5:48: \"trusted_proxies\": ")) << errs[1];
  EXPECT_NE(errs[1].find("10.0.0.0/8"), std::string::npos) << errs[1];
}

TEST(Listeners, DuplicateListenerName) {
  EXPECT_EQ(error(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: web
  - name: web
    listen: 127.0.0.1:8081
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)"),
            "t.yaml:5:11: duplicate listener name \"web\" (first at line 2)");
}

TEST(Listeners, DanglingBackend) {
  EXPECT_EQ(error(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: {path_prefix: /api/}
        backend: apii
      - backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)"),
            "t.yaml:6:18: unknown backend \"apii\"");
}

TEST(Listeners, ListenersRequired) {
  EXPECT_EQ(error("workers: 2\n"), "t.yaml:1:1: the configuration needs \"listeners\"");
  EXPECT_EQ(error("listeners: []\n"), "t.yaml:1:12: at least one listener is required");
}

TEST(Listeners, AdminNeedsListen) {
  EXPECT_EQ(error("admin: {}\n" + with_backend("")), "t.yaml:1:8: admin needs \"listen\"");
  const Config& c = ok(load("admin:\n  listen: \"[::1]:9901\"\n" + with_backend("")));
  EXPECT_EQ(c.admin.listen, "[::1]:9901");
}

TEST(Listeners, HttpListenerNeedsRoutesOrBackend) {
  EXPECT_EQ(error(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
)"),
            "t.yaml:2:5: listener needs routes or backend");
}

TEST(Listeners, TcpModeNeedsBackendOrSniRoutes) {
  EXPECT_EQ(errors(R"(
listeners:
  - name: db
    listen: 127.0.0.1:6432
    mode: tcp
    routes:
      - backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)"),
            (std::vector<std::string>{"t.yaml:6:9: tcp route needs \"match\""}));
  // tcp routes match on sni only; http routes never do.
  EXPECT_EQ(errors(R"(
listeners:
  - name: db
    listen: 127.0.0.1:6432
    mode: tcp
    routes:
      - match: { sni: "*.Example.com", path: /x }
        backend: web
      - match: { sni: "bad name" }
        backend: web
  - name: web
    listen: 127.0.0.1:6433
    routes:
      - match: { sni: a.example.com }
        backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)"),
            (std::vector<std::string>{
                "t.yaml:6:40: unknown key \"path\" in match",
                "t.yaml:8:23: invalid sni \"bad name\": expected a host name such as "
                "www.example.com or *.example.com",
                "t.yaml:13:18: \"sni\" matches the TLS ClientHello of a tcp listener; an http "
                "listener routes by \"host\""}));
  {
    const Config& c = ok(load(R"(
listeners:
  - name: db
    listen: 127.0.0.1:6432
    mode: tcp
    routes:
      - match: { sni: "*.Example.com" }
        backend: web
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)"));
    ASSERT_EQ(c.listeners[0].routes.size(), 2u);
    EXPECT_EQ(c.listeners[0].routes[0].match.sni, "*.example.com");
    EXPECT_TRUE(c.listeners[0].routes[1].match.sni.empty());
  }
  LoadResult r = load(R"(
listeners:
  - name: db
    listen: 127.0.0.1:6432
    mode: tcp
    backend: pg
backends:
  - name: pg
    servers:
      - address: db.internal:5432
)");
  const Config& c = ok(r);
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].mode, ListenerMode::Tcp);
  ASSERT_EQ(c.listeners[0].routes.size(), 1u);
  EXPECT_EQ(c.listeners[0].routes[0].backend, "pg");
  EXPECT_EQ(c.listeners[0].routes[0].backend_index, 0u);
  EXPECT_EQ(error(R"(
listeners:
  - name: db
    listen: 127.0.0.1:6432
    mode: udp
    backend: pg
backends:
  - name: pg
    servers:
      - address: db.internal:5432
)"),
            "t.yaml:4:11: \"mode\" must be http or tcp, got \"udp\"");
}

TEST(Listeners, RoutesThenBackendShorthandAsCatchAll) {
  const Config& c = ok(load(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: {host: API.Example.COM}
        backend: api
      - match: {host: "*.Static.example.com", path_prefix: /img/}
        backend: web
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
  - name: api
    servers:
      - address: 127.0.0.1:9002
)"));
  const auto& routes = c.listeners.at(0).routes;
  ASSERT_EQ(routes.size(), 3u);
  EXPECT_EQ(routes[0].match.host, "api.example.com");
  EXPECT_EQ(routes[0].backend_index, 1u);
  EXPECT_EQ(routes[1].match.host, "*.static.example.com");
  EXPECT_EQ(routes[1].match.path_prefix, "/img/");
  EXPECT_EQ(routes[1].backend_index, 0u);
  EXPECT_EQ(routes[2].match.host, "");
  EXPECT_EQ(routes[2].backend, "web");
  EXPECT_EQ(routes[2].pos.line, 9);
}

TEST(Listeners, RouteMatchErrors) {
  std::vector<std::string> e = errors(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: {host: "api.example.com:8080"}
        backend: web
      - match: {host: "*"}
        backend: web
      - match: {host: "a.*.com"}
        backend: web
      - match: {path_prefix: api/}
        backend: web
      - match: {path_prefix: "/a b"}
        backend: web
      - match: {host: ok.example}
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
  EXPECT_EQ(e,
            (std::vector<std::string>{
                "t.yaml:5:23: invalid host \"api.example.com:8080\" (without a port): expected "
                "a host name such as api.example.com or *.example.com",
                "t.yaml:7:23: host \"*\" matches every host: leave out \"host\" instead",
                "t.yaml:9:23: invalid host \"a.*.com\": expected a host name such as "
                "api.example.com or *.example.com",
                "t.yaml:11:30: \"path_prefix\" must start with \"/\", got \"api/\"",
                "t.yaml:13:30: \"path_prefix\" \"/a b\" must not contain spaces, control "
                "characters, \"?\" or \"#\"",
                "t.yaml:15:9: a route needs one action: \"backend\", \"redirect\", \"respond\" or \"static\"",
            }));
}

TEST(Listeners, UnreachableRouteIsAWarning) {
  LoadResult r = load(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - backend: web
      - match: {path_prefix: /api/}
        backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
  ok(r);
  EXPECT_EQ(all_messages(r),
            std::vector<std::string>{"t.yaml:6:9: warning: this route is never used: the route at "
                                     "line 5 matches every request"});
}

TEST(Listeners, ListenerLimitsAndTimeouts) {
  std::string config = with_backend("");
  config.insert(config.find("backends:"),
                "    max_connections: 5\n    timeouts: {header: 2s, idle: 1m30s}\n");
  const Config& c = ok(load(config));
  EXPECT_EQ(c.listeners.at(0).max_connections, 5u);
  EXPECT_EQ(c.listeners.at(0).timeouts.header, milliseconds(2000));
  EXPECT_EQ(c.listeners.at(0).timeouts.idle, milliseconds(90000));
  config = with_backend("");
  config.insert(config.find("backends:"), "    max_connections: 0\n");
  EXPECT_EQ(error(config),
            "t.yaml:5:22: \"max_connections\" must be an integer from 1 to 10000000, got \"0\"");
}

}  // namespace
}  // namespace weir::config
