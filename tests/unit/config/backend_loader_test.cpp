// Backends, servers, health checks and sticky sessions.
#include "config/loader.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "loader_test_util.hpp"

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;
namespace fs = std::filesystem;

TEST(Backends, DuplicateBackendName) {
  EXPECT_EQ(error(with_backend(R"(  - name: web
    servers:
      - address: 127.0.0.1:9002
)")),
            "t.yaml:9:11: duplicate backend name \"web\" (first at line 6)");
}

TEST(Backends, InvalidNames) {
  EXPECT_EQ(error(with_backend("").replace(with_backend("").find("name: web"), 9, "name: \"a b\"")),
            "t.yaml:2:11: invalid name \"a b\" (use 1-100 letters, digits, \".\", \"_\" or \"-\")");
}

TEST(Backends, DuplicateServerNames) {
  std::vector<std::string> e = errors(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
        name: web-2
      - address: 127.0.0.1:9002
      - address: 127.0.0.1:9003
        name: web-2
)");
  EXPECT_EQ(e, (std::vector<std::string>{
                   "t.yaml:10:9: duplicate server name \"web-2\" in backend \"web\" (first at "
                   "line 9)",
                   "t.yaml:12:15: duplicate server name \"web-2\" in backend \"web\" (first at "
                   "line 9)",
               }));
}

TEST(Backends, UnusedBackendIsAWarning) {
  LoadResult r = load(with_backend(R"(  - name: spare
    servers:
      - address: 127.0.0.1:9002
)"));
  ok(r);
  EXPECT_EQ(all_messages(r),
            std::vector<std::string>{"t.yaml:9:5: warning: backend \"spare\" is not used by any "
                                     "listener"});
}

TEST(Backends, BalanceNames) {
  const std::pair<const char*, Balance> cases[] = {
      {"random", Balance::Random},
      {"round_robin", Balance::RoundRobin},
      {"least_connections", Balance::LeastConnections},
      {"least_response_time", Balance::LeastResponseTime},
      {"ip_hash", Balance::IpHash},
      {"consistent_hash", Balance::ConsistentHash},
  };
  for (const auto& [name, value] : cases) {
    SCOPED_TRACE(name);
    EXPECT_EQ(
        ok(load(with_backend(std::string("    balance: ") + name + "\n"))).backends.at(0).balance,
        value);
  }
  EXPECT_EQ(error(with_backend("    balance: roundrobin\n")),
            "t.yaml:9:14: unknown balance \"roundrobin\"; did you mean \"round_robin\"?");
}

TEST(Backends, HashKeyForms) {
  const char* valid[] = {"client_ip", "path", "header:X-User", "cookie:session", "query:user_id"};
  for (const char* key : valid) {
    SCOPED_TRACE(key);
    LoadResult r = load(
        with_backend("    balance: consistent_hash\n    hash_key: " + std::string(key) + "\n"));
    EXPECT_EQ(ok(r).backends.at(0).hash_key, key);
    EXPECT_TRUE(r.diagnostics.empty());
  }
  const char* invalid[] = {"ip",         "client-ip", "header:",   "header:X User", "cookie:",
                           "cookie:a;b", "query:",    "query:a=b", "Path",          "uri"};
  for (const char* key : invalid) {
    SCOPED_TRACE(key);
    EXPECT_EQ(error(with_backend("    balance: consistent_hash\n    hash_key: \"" +
                                 std::string(key) + "\"\n")),
              "t.yaml:10:15: invalid hash_key \"" + std::string(key) +
                  "\" (expected client_ip, path, header:NAME, cookie:NAME or query:NAME)");
  }
}

TEST(Backends, HashKeyWithoutConsistentHashWarns) {
  LoadResult r = load(with_backend("    hash_key: path\n"));
  ok(r);
  EXPECT_EQ(all_messages(r),
            std::vector<std::string>{"t.yaml:9:5: warning: \"hash_key\" has no effect unless "
                                     "balance is consistent_hash"});
  // The default value written out (as the contract's example does) is not worth a warning.
  LoadResult quiet = load(with_backend("    hash_key: client_ip\n"));
  ok(quiet);
  EXPECT_TRUE(quiet.diagnostics.empty());
}

TEST(Backends, WeightBounds) {
  auto config = [](const std::string& weight) {
    return with_backend("").replace(with_backend("").size() - 1, 1,
                                    "\n        weight: " + weight + "\n");
  };
  EXPECT_EQ(ok(load(config("0"))).backends.at(0).servers.at(0).weight, 0u);
  EXPECT_EQ(ok(load(config("1000"))).backends.at(0).servers.at(0).weight, 1000u);
  EXPECT_EQ(ok(load(config("7"))).backends.at(0).servers.at(0).weight, 7u);
  for (const char* bad : {"1001", "-1", "1.5", "heavy", "99999999999999999999999"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(error(config(bad)),
              "t.yaml:9:17: \"weight\" must be an integer from 0 to 1000, got \"" +
                  std::string(bad) + "\"");
  }
}

TEST(Backends, AllWeightsZeroWarns) {
  LoadResult r =
      load(with_backend("").replace(with_backend("").size() - 1, 1, "\n        weight: 0\n"));
  ok(r);
  EXPECT_EQ(all_messages(r),
            std::vector<std::string>{"t.yaml:7:5: warning: every server of backend \"web\" has "
                                     "weight 0: it receives no traffic"});
}

TEST(Backends, RetriesBounds) {
  EXPECT_EQ(ok(load(with_backend("    retries: 0\n"))).backends.at(0).retries, 0u);
  EXPECT_EQ(ok(load(with_backend("    retries: 10\n"))).backends.at(0).retries, 10u);
  EXPECT_EQ(error(with_backend("    retries: 11\n")),
            "t.yaml:9:14: \"retries\" must be an integer from 0 to 10, got \"11\"");
}

TEST(Backends, RetryBudget) {
  Config dc = ok(load(with_backend("")));
  const Backend& def = dc.backends.at(0);
  EXPECT_EQ(def.retry_budget.percent, 20u);
  EXPECT_EQ(def.retry_budget.min_retries, 10u);
  Config c = ok(load(with_backend("    retry_budget: {percent: 5, min_retries: 0}\n")));
  EXPECT_EQ(c.backends.at(0).retry_budget.percent, 5u);
  EXPECT_EQ(c.backends.at(0).retry_budget.min_retries, 0u);
  EXPECT_EQ(error(with_backend("    retry_budget: {percent: -1}\n")),
            "t.yaml:9:29: \"percent\" must be an integer from 0 to 1000, got \"-1\"");
  EXPECT_EQ(error(with_backend("    retry_budget: {ratio: 1}\n")),
            "t.yaml:9:20: unknown key \"ratio\" in retry_budget");
}

TEST(Backends, ServersRequired) {
  EXPECT_EQ(error(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: web
backends:
  - name: web
    balance: random
)"),
            "t.yaml:6:5: backend needs \"servers\"");
  EXPECT_EQ(error(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: web
backends:
  - name: web
    servers:
      - weight: 2
)"),
            "t.yaml:8:9: server needs \"address\"");
}

TEST(Backends, HealthCheck) {
  const Config& c = ok(load(with_backend(R"(    health_check:
      type: http
      path: /ready
      interval: 500ms
      timeout: 250ms
      rise: 1
      fall: 5
      expect_status: 204
)")));
  const HealthCheck& h = *c.backends.at(0).health_check;
  EXPECT_EQ(h.type, HealthType::Http);
  EXPECT_EQ(h.path, "/ready");
  EXPECT_EQ(h.interval, milliseconds(500));
  EXPECT_EQ(h.timeout, milliseconds(250));
  EXPECT_EQ(h.rise, 1u);
  EXPECT_EQ(h.fall, 5u);
  EXPECT_EQ(h.expect_status_min, 204);
  EXPECT_EQ(h.expect_status_max, 204);

  const Config& c2 =
      ok(load(with_backend("    health_check: {type: tcp, expect_status: 200-299}\n")));
  EXPECT_EQ(c2.backends.at(0).health_check->type, HealthType::Tcp);
  EXPECT_EQ(c2.backends.at(0).health_check->expect_status_max, 299);
}

TEST(Backends, HealthCheckErrors) {
  std::vector<std::string> e = errors(with_backend(R"(    health_check:
      type: icmp
      path: healthz
      interval: 0s
      timeout: 1
      rise: 0
      fall: -1
      expect_status: 399-200
)"));
  EXPECT_EQ(e, (std::vector<std::string>{
                   "t.yaml:10:13: health_check \"type\" must be http or tcp, got \"icmp\"",
                   "t.yaml:11:13: health_check \"path\" must start with \"/\" and hold no spaces, "
                   "got \"healthz\"",
                   "t.yaml:12:17: \"interval\" must be longer than 0",
                   "t.yaml:13:16: \"timeout\": duration needs a unit, e.g. 2s",
                   "t.yaml:14:13: \"rise\" must be an integer from 1 to 1000, got \"0\"",
                   "t.yaml:15:13: \"fall\" must be an integer from 1 to 1000, got \"-1\"",
                   "t.yaml:16:22: \"expect_status\" must be a status code such as 200 or a range "
                   "such as 200-399, got \"399-200\"",
               }));
  for (const char* bad : {"99", "600", "2xx", "200-", "-200", "200-399-400"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(
        errors(with_backend("    health_check: {expect_status: \"" + std::string(bad) + "\"}\n"))
            .size(),
        1u);
  }
}

TEST(Backends, HealthCheckWarnings) {
  LoadResult r =
      load(with_backend("    health_check: {type: tcp, path: /x, interval: 1s, timeout: 2s}\n"));
  ok(r);
  EXPECT_EQ(all_messages(r),
            (std::vector<std::string>{
                "t.yaml:9:31: warning: \"path\" has no effect on a tcp health check",
                "t.yaml:9:55: warning: health_check timeout is longer than its interval"}));
}

TEST(Backends, Sticky) {
  TempDir dir;
  fs::path secret = dir.write("sticky.key", "0123456789abcdef-secret\n");
  const Config& c =
      ok(load(with_backend("    sticky:\n      cookie: srv\n      secret_file: " + secret.string() +
                           "\n      max_age: 1d\n")));
  const Sticky& s = *c.backends.at(0).sticky;
  EXPECT_EQ(s.cookie, "srv");
  EXPECT_EQ(s.secret_file, secret.string());
  EXPECT_EQ(s.secret, "0123456789abcdef-secret");
  EXPECT_EQ(s.max_age, milliseconds(86400000));
}

TEST(Backends, StickyErrors) {
  TempDir dir;
  fs::path weak = dir.write("weak.key", "short\n");
  std::vector<std::string> e = errors(with_backend("    sticky:\n      max_age: 0s\n"));
  EXPECT_EQ(e, (std::vector<std::string>{"t.yaml:10:7: sticky needs \"cookie\"",
                                         "t.yaml:10:16: \"max_age\" must be longer than 0"}));
  EXPECT_EQ(error(with_backend("    sticky: {cookie: \"a b\"}\n")),
            "t.yaml:9:22: invalid cookie name \"a b\"");
  EXPECT_EQ(error(with_backend("    sticky: {cookie: s, secret_file: /nonexistent/key}\n")),
            "t.yaml:9:38: cannot open secret_file \"/nonexistent/key\": No such file or "
            "directory");
  EXPECT_EQ(error(with_backend("    sticky: {cookie: s, secret_file: " + weak.string() + "}\n")),
            "t.yaml:9:38: secret_file \"" + weak.string() + "\" must hold at least 16 bytes");
}

TEST(Backends, RelativeSecretFileIsRelativeToTheConfig) {
  TempDir dir;
  dir.write("sticky.key", "0123456789abcdef0123456789abcdef");
  fs::path config =
      dir.write("weir.yaml", with_backend("    sticky: {cookie: s, secret_file: sticky.key}\n"));
  LoadResult r = load_config_file(config.string());
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(c.backends.at(0).sticky->secret_file, (dir.path() / "sticky.key").string());
  EXPECT_EQ(c.backends.at(0).sticky->secret, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(c.source_file, config.string());
}

TEST(Backends, BackendLimitsAndTimeouts) {
  const Config& c = ok(load(
      with_backend(R"(    limits: {max_active_per_server: 0, queue_size: 0, queue_timeout: 250ms}
    timeouts: {connect: 100ms, response: 2m}
)")));
  const Backend& b = c.backends.at(0);
  EXPECT_EQ(b.limits.max_active_per_server, 0u);
  EXPECT_EQ(b.limits.queue_size, 0u);
  EXPECT_EQ(b.limits.queue_timeout, milliseconds(250));
  EXPECT_EQ(b.timeouts.connect, milliseconds(100));
  EXPECT_EQ(b.timeouts.response, milliseconds(120000));
}

TEST(Backends, PassiveSlowStartAndBalanceFactor) {
  auto r = load(with_backend(R"(    passive:
      failures: 3
      cooldown: 5s
      max_ejected_percent: 30
    slow_start: 30s
    hash_balance_factor: 1.25
)"));
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(all_messages(r));
  const Backend& b = r.config->backends[0];
  ASSERT_TRUE(b.passive);
  EXPECT_EQ(b.passive->failures, 3u);
  EXPECT_EQ(b.passive->cooldown, milliseconds(5000));
  EXPECT_EQ(b.passive->max_ejected_percent, 30u);
  EXPECT_EQ(b.slow_start, milliseconds(30000));
  EXPECT_DOUBLE_EQ(b.hash_balance_factor, 1.25);
}

TEST(Backends, PassiveDefaultsAndBadValues) {
  auto r = load(with_backend("    passive:\n"));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.config->backends[0].passive);
  EXPECT_EQ(r.config->backends[0].passive->failures, 5u);
  EXPECT_EQ(r.config->backends[0].passive->cooldown, milliseconds(10000));
  EXPECT_EQ(error(with_backend("    hash_balance_factor: 0.5\n")),
            "t.yaml:9:26: \"hash_balance_factor\" must be a number from 1.0 to 100 (e.g. 1.25)");
  EXPECT_FALSE(load(with_backend("    passive:\n      failures: 0\n")).ok());
  EXPECT_FALSE(load(with_backend("    passive:\n      nope: 1\n")).ok());
}

}  // namespace
}  // namespace weir::config

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)

std::string backend_with(std::string_view backend_lines) {
  return yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: api
backends:
  - name: api
)") + std::string(backend_lines);
}

TEST(BackendProtocol, EachValue) {
  struct Case {
    const char* text;
    UpstreamProtocol want;
    bool tls;
  } cases[] = {{"http1", UpstreamProtocol::Http1, false},
               {"h2c", UpstreamProtocol::H2c, false},
               {"h2", UpstreamProtocol::H2, true},
               {"auto", UpstreamProtocol::Auto, true}};
  for (const auto& c : cases) {
    std::string text = backend_with(std::string("    protocol: ") + c.text +
                                    "\n    servers:\n      - address: 127.0.0.1:9001\n" +
                                    (c.tls ? "        tls: {verify: false}\n" : ""));
    Config cfg = ok(load(text));
    ASSERT_EQ(cfg.backends.size(), 1u) << c.text;
    EXPECT_EQ(cfg.backends[0].protocol, c.want) << c.text;
  }
  Config plain = ok(load(backend_with("    servers:\n      - address: 127.0.0.1:9001\n")));
  EXPECT_EQ(plain.backends[0].protocol, UpstreamProtocol::Http1);
}

TEST(BackendProtocol, Unknown) {
  EXPECT_EQ(
      error(backend_with("    protocol: h3\n    servers:\n      - address: 127.0.0.1:9001\n")),
      "t.yaml:7:15: \"protocol\" must be http1, h2, h2c or auto, got \"h3\"");
}

TEST(BackendProtocol, TlsRules) {
  EXPECT_EQ(
      error(backend_with("    protocol: h2\n    servers:\n      - address: 127.0.0.1:9001\n")),
      "t.yaml:7:15: protocol h2 needs TLS to the servers, but server \"api-1\" has no "
      "\"tls\" (use h2c for clear text)");
  EXPECT_EQ(error(backend_with("    protocol: h2c\n    servers:\n      - address: 127.0.0.1:9001\n"
                               "        tls: {verify: false}\n")),
            "t.yaml:7:15: protocol h2c is HTTP/2 in clear text, but server \"api-1\" has "
            "\"tls\" (use protocol h2 or auto)");
}

TEST(BackendProtocol, NoProxyProtocolOnSharedConnections) {
  EXPECT_EQ(error(backend_with("    protocol: h2c\n    send_proxy_protocol: v2\n    servers:\n"
                               "      - address: 127.0.0.1:9001\n")),
            "t.yaml:7:15: \"send_proxy_protocol\" cannot be used with protocol h2c: a PROXY "
            "header names one client, and an HTTP/2 connection carries many clients' requests");
}

}  // namespace
}  // namespace weir::config
