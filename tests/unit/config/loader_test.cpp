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

// Verbatim from the user contract (spec/contract.md, "Configuration file").
constexpr std::string_view kContractExample =
    R"(workers: auto                 # worker threads; "auto" (default) = one per core
admin:
  listen: 127.0.0.1:9901      # optional; serves the admin endpoints below

listeners:
  - name: web                 # unique
    listen: 127.0.0.1:8080    # "HOST:PORT" or "[V6]:PORT", or a list of them
    mode: http                # http (default) | tcp
    routes:                   # http mode; tried in order, first match wins
      - match:                # every condition given must hold; no match block = match all
          host: api.example.com     # exact, or "*.example.com"; compared without port, case-insensitively
          path_prefix: /api/
        backend: api
      - backend: web
    backend: web              # shorthand for a single catch-all route; required in tcp mode
    max_connections: 10000    # open client connections; beyond it new ones wait in the accept queue
    timeouts:
      header: 10s             # a client must send a whole request head within this (slowloris)
      idle: 60s               # a keep-alive connection with no request in flight is closed after this

backends:
  - name: web
    balance: round_robin      # random | round_robin | least_connections | least_response_time | ip_hash | consistent_hash
    hash_key: client_ip       # consistent_hash only: client_ip | path | header:NAME | cookie:NAME | query:NAME
    sticky:                   # optional cookie session affinity, on top of any balance
      cookie: weir_srv        # cookie name the load balancer sets and reads
    health_check:             # optional; without it every server counts as up
      type: http              # http (default) | tcp
      path: /healthz          # http only
      interval: 2s
      timeout: 1s
      rise: 2                 # consecutive passes to mark a down server up
      fall: 3                 # consecutive failures to mark an up server down
    limits:
      max_active_per_server: 100  # in-flight requests one server may have; more wait in the queue
      queue_size: 1000            # requests waiting per backend; beyond it the client gets 503 at once
      queue_timeout: 5s           # a request that waits longer gets 503
    timeouts:
      connect: 2s
      response: 30s               # from request sent to response head received; then 504
    retries: 2                    # tries on another server when connecting fails, or the connection
                                  # is refused/reset before any response byte and the request is
                                  # idempotent or was not sent yet; never after response bytes
    servers:
      - address: 127.0.0.1:9001   # HOST:PORT; a hostname is resolved
        weight: 3                 # default 1; 0 = receives no new traffic
        name: s1                  # optional; default "<backend>-<index>"
)";

constexpr std::string_view kApiBackend = R"(  - name: api
    servers:
      - address: 127.0.0.1:9101
)";

TEST(ContractExample, VerbatimOnlyLacksTheApiBackend) {
  // The contract's example routes to "api" without defining it: that is the one error.
  LoadResult r = load_config_string(kContractExample, "contract.yaml");
  EXPECT_FALSE(r.ok());
  std::vector<std::string> e;
  for (const auto& d : r.diagnostics) {
    if (!d.warning) e.push_back(d.format());
  }
  EXPECT_EQ(e, std::vector<std::string>{"contract.yaml:13:18: unknown backend \"api\""});
}

TEST(ContractExample, EveryFieldLands) {
  LoadResult r =
      load_config_string(std::string(kContractExample) + std::string(kApiBackend), "contract.yaml");
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty()) << ::testing::PrintToString(all_messages(r));

  EXPECT_EQ(c.source_file, "contract.yaml");
  EXPECT_EQ(c.workers, 0u);
  EXPECT_EQ(c.admin.listen, "127.0.0.1:9901");
  ASSERT_EQ(c.listeners.size(), 1u);
  const Listener& l = c.listeners[0];
  EXPECT_EQ(l.name, "web");
  EXPECT_EQ(l.listen, std::vector<std::string>{"127.0.0.1:8080"});
  EXPECT_EQ(l.mode, ListenerMode::Http);
  EXPECT_EQ(l.pos.line, 6);
  EXPECT_EQ(l.pos.col, 5);
  ASSERT_EQ(l.routes.size(), 3u);
  EXPECT_EQ(l.routes[0].match.host, "api.example.com");
  EXPECT_EQ(l.routes[0].match.path_prefix, "/api/");
  EXPECT_EQ(l.routes[0].backend, "api");
  EXPECT_EQ(l.routes[0].backend_index, 1u);
  EXPECT_EQ(l.routes[0].pos.line, 10);
  EXPECT_EQ(l.routes[1].match.host, "");
  EXPECT_EQ(l.routes[1].match.path_prefix, "");
  EXPECT_EQ(l.routes[1].backend, "web");
  EXPECT_EQ(l.routes[1].backend_index, 0u);
  EXPECT_EQ(l.routes[2].backend, "web");  // the shorthand, last
  EXPECT_EQ(l.routes[2].backend_index, 0u);
  EXPECT_EQ(l.max_connections, 10000u);
  EXPECT_EQ(l.timeouts.header, milliseconds(10000));
  EXPECT_EQ(l.timeouts.idle, milliseconds(60000));
  EXPECT_FALSE(l.trusted_proxies);

  ASSERT_EQ(c.backends.size(), 2u);
  const Backend& b = c.backends[0];
  EXPECT_EQ(b.name, "web");
  EXPECT_EQ(b.pos.line, 22);
  EXPECT_EQ(b.balance, Balance::RoundRobin);
  EXPECT_EQ(b.hash_key, "client_ip");
  ASSERT_TRUE(b.sticky.has_value());
  EXPECT_EQ(b.sticky->cookie, "weir_srv");
  EXPECT_EQ(b.sticky->secret_file, "");
  EXPECT_FALSE(b.sticky->max_age.has_value());
  ASSERT_TRUE(b.health_check.has_value());
  EXPECT_EQ(b.health_check->type, HealthType::Http);
  EXPECT_EQ(b.health_check->path, "/healthz");
  EXPECT_EQ(b.health_check->interval, milliseconds(2000));
  EXPECT_EQ(b.health_check->timeout, milliseconds(1000));
  EXPECT_EQ(b.health_check->rise, 2u);
  EXPECT_EQ(b.health_check->fall, 3u);
  EXPECT_EQ(b.health_check->expect_status_min, 200);
  EXPECT_EQ(b.health_check->expect_status_max, 399);
  EXPECT_EQ(b.limits.max_active_per_server, 100u);
  EXPECT_EQ(b.limits.queue_size, 1000u);
  EXPECT_EQ(b.limits.queue_timeout, milliseconds(5000));
  EXPECT_EQ(b.timeouts.connect, milliseconds(2000));
  EXPECT_EQ(b.timeouts.response, milliseconds(30000));
  EXPECT_EQ(b.retries, 2u);
  ASSERT_EQ(b.servers.size(), 1u);
  EXPECT_EQ(b.servers[0].address, "127.0.0.1:9001");
  EXPECT_EQ(b.servers[0].host, "127.0.0.1");
  EXPECT_EQ(b.servers[0].port, 9001);
  EXPECT_EQ(b.servers[0].weight, 3u);
  EXPECT_EQ(b.servers[0].name, "s1");
  EXPECT_EQ(b.servers[0].pos.line, 45);
  EXPECT_EQ(b.servers[0].pos.col, 9);
  EXPECT_EQ(c.backends[1].name, "api");
  EXPECT_EQ(c.backends[1].servers[0].name, "api-1");
}

TEST(ExampleFile, LoadsCleanly) {
  LoadResult r = load_config_file(example_path().string());
  const Config& c = ok(r);
  EXPECT_TRUE(r.diagnostics.empty()) << ::testing::PrintToString(all_messages(r));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.backends.size(), 4u);
  EXPECT_EQ(c.listeners[1].mode, ListenerMode::Tcp);
  EXPECT_EQ(c.listeners[0].listen.size(), 2u);
  ASSERT_TRUE(c.listeners[0].trusted_proxies);
  EXPECT_EQ(c.listeners[0].trusted_proxies->size(), 2u);
  EXPECT_EQ(c.backends[2].balance, Balance::ConsistentHash);
  EXPECT_EQ(c.backends[2].hash_key, "path");
  EXPECT_EQ(c.backends[0].sticky->max_age, milliseconds(3600000));
  EXPECT_EQ(c.backends[1].health_check->expect_status_min, 200);
  EXPECT_EQ(c.backends[1].health_check->expect_status_max, 200);
  EXPECT_EQ(c.backends[3].health_check->type, HealthType::Tcp);
}

TEST(Loader, DefaultsOfAMinimalConfig) {
  LoadResult r = load(with_backend(""));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty());
  EXPECT_EQ(c.workers, 0u);
  EXPECT_EQ(c.admin.listen, "");
  EXPECT_EQ(c.limits.buffer_size, 16384u);
  EXPECT_EQ(c.limits.max_request_line, 8192u);
  EXPECT_EQ(c.limits.max_header_bytes, 16384u);
  EXPECT_EQ(c.limits.max_headers, 100u);
  EXPECT_EQ(c.limits.max_idle_upstream_per_server, 64u);
  EXPECT_EQ(c.limits.upstream_idle_timeout, milliseconds(30000));
  EXPECT_EQ(c.limits.drain_timeout, milliseconds(30000));
  const Listener& l = c.listeners.at(0);
  EXPECT_EQ(l.mode, ListenerMode::Http);
  ASSERT_EQ(l.routes.size(), 1u);
  EXPECT_EQ(l.routes[0].match.host, "");
  EXPECT_EQ(l.routes[0].match.path_prefix, "");
  EXPECT_EQ(l.routes[0].backend_index, 0u);
  EXPECT_EQ(l.max_connections, 10000u);
  EXPECT_EQ(l.timeouts.header, milliseconds(10000));
  EXPECT_EQ(l.timeouts.idle, milliseconds(60000));
  const Backend& b = c.backends.at(0);
  EXPECT_EQ(b.balance, Balance::RoundRobin);
  EXPECT_FALSE(b.sticky.has_value());
  EXPECT_FALSE(b.health_check.has_value());
  EXPECT_EQ(b.limits.max_active_per_server, 0u);
  EXPECT_EQ(b.limits.queue_size, 1000u);
  EXPECT_EQ(b.retries, 2u);
  EXPECT_EQ(b.servers.at(0).name, "web-1");
  EXPECT_EQ(b.servers.at(0).weight, 1u);
}

TEST(Loader, Workers) {
  EXPECT_EQ(ok(load("workers: 4\n" + with_backend(""))).workers, 4u);
  EXPECT_EQ(ok(load("workers: 256\n" + with_backend(""))).workers, 256u);
  EXPECT_EQ(ok(load("workers: auto\n" + with_backend(""))).workers, 0u);
  const char* bad[] = {"0", "257", "-1", "many", "\"4\"", "[1]", "1.5"};
  for (const char* w : bad) {
    SCOPED_TRACE(w);
    std::string e = error("workers: " + std::string(w) + "\n" + with_backend(""));
    EXPECT_TRUE(e.starts_with("t.yaml:1:10: \"workers\" must be auto or an integer from 1 to 256"))
        << e;
  }
}

TEST(Loader, GlobalLimits) {
  const Config& c = ok(load(R"(
limits:
  buffer_size: 64KiB
  max_request_line: 4KB
  max_header_bytes: 1MiB
  max_headers: 50
  max_idle_upstream_per_server: 0
  upstream_idle_timeout: 1.5s
  drain_timeout: 0s
)" + with_backend("")));
  EXPECT_EQ(c.limits.buffer_size, 65536u);
  EXPECT_EQ(c.limits.max_request_line, 4000u);
  EXPECT_EQ(c.limits.max_header_bytes, 1048576u);
  EXPECT_EQ(c.limits.max_headers, 50u);
  EXPECT_EQ(c.limits.max_idle_upstream_per_server, 0u);
  EXPECT_EQ(c.limits.upstream_idle_timeout, milliseconds(1500));
  EXPECT_EQ(c.limits.drain_timeout, milliseconds(0));
}

TEST(Loader, SizeErrorsInConfig) {
  EXPECT_EQ(error("limits:\n  buffer_size: 16kb\n" + with_backend("")),
            "t.yaml:2:16: \"buffer_size\": unknown size unit \"kb\" in \"16kb\" (use B, KB, MB, "
            "GB, KiB, MiB or GiB)");
  EXPECT_EQ(error("limits:\n  buffer_size: -1\n" + with_backend("")),
            "t.yaml:2:16: \"buffer_size\": size \"-1\" must not be negative");
  EXPECT_EQ(error("limits:\n  buffer_size: 99999999999999999999999\n" + with_backend("")),
            "t.yaml:2:16: \"buffer_size\": size \"99999999999999999999999\" is too large");
  EXPECT_EQ(error("limits:\n  buffer_size: 100\n" + with_backend("")),
            "t.yaml:2:16: \"buffer_size\" must be from 1024 to 1073741824 bytes, got \"100\"");
  EXPECT_EQ(error("limits:\n  max_header_bytes: 1.5KiB\n" + with_backend("")),
            "t.yaml:2:21: \"max_header_bytes\": size \"1.5KiB\" must be a whole number (e.g. "
            "1536 rather than 1.5KiB)");
}

TEST(Loader, DurationErrorsInConfig) {
  EXPECT_EQ(error(with_backend("    timeouts:\n      connect: 2\n")),
            "t.yaml:10:16: \"connect\": duration needs a unit, e.g. 2s");
  EXPECT_EQ(error(with_backend("    timeouts:\n      connect: -2s\n")),
            "t.yaml:10:16: \"connect\": duration \"-2s\" must not be negative");
  EXPECT_EQ(error(with_backend("    timeouts:\n      response: 0s\n")),
            "t.yaml:10:17: \"response\" must be longer than 0");
  EXPECT_EQ(error(with_backend("    timeouts:\n      response: 99999999999999999999h\n")),
            "t.yaml:10:17: \"response\": duration \"99999999999999999999h\" is too large (at "
            "most 3650d)");
  EXPECT_EQ(error(with_backend("    timeouts:\n      response: {a: 1}\n")),
            "t.yaml:10:17: \"response\" must be a duration such as 2s, got a map");
}

TEST(Loader, MissingFile) {
  LoadResult r = load_config_file("/nonexistent/weir.yaml");
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].format(),
            "/nonexistent/weir.yaml: cannot open: No such file or directory");
}

TEST(Loader, DirectoryIsNotAFile) {
  LoadResult r = load_config_file("/");
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].format(), "/: cannot read: Is a directory");
}

TEST(Loader, EmptyFile) {
  EXPECT_EQ(error(""), "t.yaml: the configuration is empty");
  EXPECT_EQ(error("# only a comment\n\n"), "t.yaml: the configuration is empty");
}

TEST(Loader, YamlSyntaxError) {
  EXPECT_EQ(error("listeners:\n  - name: [web\n    listen: 1\n"),
            "t.yaml:3:11: YAML syntax error: end of sequence flow not found");
  EXPECT_EQ(error("workers: 1\n  admin: 2\n"), "t.yaml:2:8: YAML syntax error: illegal map value");
}

TEST(Loader, OneDocumentOnly) {
  EXPECT_EQ(error(with_backend("---\nworkers: 2\n")),
            "t.yaml:9:1: only one YAML document is allowed in a configuration file");
}

// yaml-cpp 0.7 loops forever (allocating) on a stray "," where a document's value should
// start: found by fuzz_config. Each of these must come back with an error, at once.
TEST(Loader, StrayCommaIsAnErrorNotAHang) {
  EXPECT_EQ(error(","),
            "t.yaml:1:1: YAML syntax error: unexpected \",\" (quote a value that starts with it)");
  EXPECT_EQ(error(" ,\n"),
            "t.yaml:1:2: YAML syntax error: unexpected \",\" (quote a value that starts with it)");
  EXPECT_EQ(error("\"x\",\n"),
            "t.yaml:1:4: YAML syntax error: unexpected \",\" (quote a value that starts with it)");
  EXPECT_EQ(error("# c\n,\n"),
            "t.yaml:2:1: YAML syntax error: unexpected \",\" (quote a value that starts with it)");
  EXPECT_EQ(error(",ishosti[:to\nlis\n"),
            "t.yaml:1:1: YAML syntax error: unexpected \",\" (quote a value that starts with it)");
  EXPECT_FALSE(error(with_backend("") + ",\n").empty());
}

TEST(Loader, RootMustBeAMap) {
  EXPECT_EQ(error("- a\n- b\n"),
            "t.yaml:1:1: the configuration must be a map with \"listeners\" and \"backends\", "
            "got a list");
}

TEST(Loader, FormatOfDiagnostics) {
  EXPECT_EQ((Diagnostic{SourcePos{"f.yaml", 3, 7}, "bad", false}).format(), "f.yaml:3:7: bad");
  EXPECT_EQ((Diagnostic{SourcePos{"f.yaml", 3, 7}, "hmm", true}).format(),
            "f.yaml:3:7: warning: hmm");
  EXPECT_EQ((Diagnostic{SourcePos{"f.yaml", 0, 0}, "gone", false}).format(), "f.yaml: gone");
}

TEST(Loader, NeverThrowsOnGarbage) {
  const std::string inputs[] = {
      std::string("\0\xff\xfe", 3),
      "{{{{",
      "]]]",
      "a: &x [*x]",
      "? [a]\n: b\n",
      "!!binary x",
      std::string(5000, '['),
      "\t\t",
      "listeners: *nope",
      "%YAML 9.9\n---\na: 1\n",
      "listeners:\n  - !!map {}\n",
      ":",
      "'",
  };
  for (const std::string& in : inputs) {
    SCOPED_TRACE(in.substr(0, 40));
    LoadResult r;
    EXPECT_NO_THROW(r = load_config_string(in, "g.yaml"));
    EXPECT_FALSE(r.ok());
    EXPECT_FALSE(r.diagnostics.empty());
  }
}

TEST(Loader, UnknownKeySuggestsTheClosest) {
  EXPECT_EQ(errors(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    bakend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)"),
            (std::vector<std::string>{
                "t.yaml:2:5: listener needs routes or backend",
                "t.yaml:4:5: unknown key \"bakend\" in listener; did you mean \"backend\"?"}));
  std::vector<std::string> e = errors(with_backend("    helth_check: {}\n"));
  EXPECT_EQ(e, std::vector<std::string>{
                   "t.yaml:9:5: unknown key \"helth_check\" in backend; did you mean "
                   "\"health_check\"?"});
}

TEST(Loader, UnknownKeyEverywhere) {
  std::vector<std::string> e = errors(R"(
wrokers: 2
colour: blue
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: {hots: a.example, pathe: /}
        backend: web
        weight: 2
    timeouts: {header: 1s, idel: 2s}
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
        wieght: 2
)");
  EXPECT_EQ(e, (std::vector<std::string>{
                   "t.yaml:1:1: unknown key \"wrokers\" in the configuration; did you mean "
                   "\"workers\"?",
                   "t.yaml:2:1: unknown key \"colour\" in the configuration",
                   "t.yaml:7:17: unknown key \"hots\" in match; did you mean \"host\"?",
                   "t.yaml:7:34: unknown key \"pathe\" in match; did you mean \"path\"?",
                   "t.yaml:9:9: unknown key \"weight\" in route",
                   "t.yaml:10:28: unknown key \"idel\" in listener timeouts; did you mean "
                   "\"idle\"?",
                   "t.yaml:15:9: unknown key \"wieght\" in server; did you mean \"weight\"?",
               }));
}

TEST(Loader, DuplicateYamlKey) {
  EXPECT_EQ(error(with_backend("    retries: 1\n    retries: 3\n")),
            "t.yaml:10:5: duplicate key \"retries\" (first at line 9)");
}

TEST(Loader, MergeKeysAreNotSupported) {
  EXPECT_EQ(error(with_backend("    <<: {retries: 1}\n")),
            "t.yaml:9:5: YAML merge keys (<<) are not supported");
}

TEST(Loader, WrongTypes) {
  std::vector<std::string> e = errors(R"(
admin: 127.0.0.1:9901
listeners:
  - name: {a: 1}
    listen: 127.0.0.1:8080
    mode: [http]
    backend: web
    max_connections: "100"
    timeouts: 10s
backends: {name: web}
)");
  EXPECT_EQ(e, (std::vector<std::string>{
                   "t.yaml:1:8: \"admin\" must be a map, got \"127.0.0.1:9901\"",
                   "t.yaml:3:11: \"name\" must be a string, got a map",
                   "t.yaml:5:11: \"mode\" must be a string, got a list",
                   "t.yaml:6:14: unknown backend \"web\"",
                   "t.yaml:7:22: \"max_connections\" must be an integer from 1 to 10000000, got "
                   "the string \"100\"",
                   "t.yaml:8:15: \"timeouts\" must be a map, got \"10s\"",
                   "t.yaml:9:11: \"backends\" must be a list, got a map",
               }));
}

TEST(Loader, EmptyValueOfABlockMeansItsDefaults) {
  LoadResult r = load(with_backend("    health_check:\n    limits:\n"));
  const Config& c = ok(r);
  ASSERT_TRUE(c.backends.at(0).health_check.has_value());
  EXPECT_EQ(c.backends[0].health_check->path, "/healthz");
  EXPECT_EQ(error(with_backend("    retries:\n")),
            "t.yaml:9:5: \"retries\" must be an integer from 0 to 10, got nothing");
}

TEST(Loader, EmptyAndWronglyTypedListItems) {
  std::vector<std::string> e = errors(R"(
listeners:
  - web
  -
  - name: web
    listen: [127.0.0.1:80, {a: 1}]
    backend: web
backends:
  - name: web
    servers:
      - 127.0.0.1:9001
)");
  EXPECT_EQ(e, (std::vector<std::string>{
                   "t.yaml:2:3: \"listeners\" has an empty item",
                   "t.yaml:2:5: an item of \"listeners\" must be a map, got \"web\"",
                   "t.yaml:5:28: an item of \"listen\" must be a string, got a map",
                   "t.yaml:10:9: an item of \"servers\" must be a map, got \"127.0.0.1:9001\"",
               }));
}

TEST(Loader, MultipleErrorsAreAllReportedInFileOrder) {
  std::vector<std::string> e = errors(R"(
workers: zero
listeners:
  - name: web
    listen: 127.0.0.1:99999
    backend: nowhere
    timeouts:
      idle: 5
backends:
  - name: web
    balance: fastest
    retries: 11
    servers: []
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
  EXPECT_EQ(e, (std::vector<std::string>{
                   "t.yaml:1:10: \"workers\" must be auto or an integer from 1 to 256, got "
                   "\"zero\"",
                   "t.yaml:4:13: invalid port \"99999\" in \"127.0.0.1:99999\" (expected 1-65535)",
                   "t.yaml:5:14: unknown backend \"nowhere\"",
                   "t.yaml:7:13: \"idle\": duration needs a unit, e.g. 2s",
                   "t.yaml:10:14: unknown balance \"fastest\" (expected random, round_robin, "
                   "least_connections, least_response_time, ip_hash or consistent_hash)",
                   "t.yaml:11:14: \"retries\" must be an integer from 0 to 10, got \"11\"",
                   "t.yaml:12:14: \"servers\" needs at least one server",
                   "t.yaml:13:11: duplicate backend name \"web\" (first at line 9)",
               }));
  EXPECT_EQ(load(R"(
workers: zero
)")
                .config,
            nullptr);
}

TEST(Loader, AnchorsAndAliasesAreRefused) {
  // Aliases can make the node graph cyclic or exponential: refused before it is built.
  EXPECT_EQ(errors(R"(
listeners:
  - name: a
    listen: 127.0.0.1:8080
    backend: &b web
backends:
  - name: *b
    servers:
      - address: 127.0.0.1:9000
)"),
            std::vector<std::string>{
                "t.yaml:4:14: YAML anchors and aliases (&name, *name) are not supported"});
  auto r = load("a: &x [*x]\n");
  EXPECT_FALSE(r.ok());
}

TEST(Loader, AdminTokenAndLimits) {
  TempDir dir;
  std::filesystem::path token = dir.write("admin.token", "0123456789abcdef-token\n\n");
  const Config& c =
      ok(load(with_backend("admin:\n  listen: 127.0.0.1:9901\n  token_file: " + token.string() +
                           "\n  header_timeout: 2s\n  idle_timeout: 1m\n"
                           "  max_connections: 8\n")));
  EXPECT_EQ(c.admin.token_file, token.string());
  EXPECT_EQ(c.admin.token, "0123456789abcdef-token");
  EXPECT_EQ(c.admin.header_timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(c.admin.idle_timeout, std::chrono::milliseconds(60000));
  EXPECT_EQ(c.admin.max_connections, 8u);
  // Defaults: no token (the write endpoints are off), timeouts and a cap of its own.
  const Config& d = ok(load(with_backend("admin: {listen: 127.0.0.1:9901}\n")));
  EXPECT_EQ(d.admin.token, "");
  EXPECT_EQ(d.admin.header_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(d.admin.idle_timeout, std::chrono::milliseconds(30000));
  EXPECT_EQ(d.admin.max_connections, 64u);
}

TEST(Loader, AdminTokenErrors) {
  TempDir dir;
  std::filesystem::path weak = dir.write("weak.token", "short\n");
  EXPECT_EQ(error(with_backend("admin: {listen: 127.0.0.1:9901, token_file: /nonexistent/t}\n")),
            "t.yaml:9:45: cannot open token_file \"/nonexistent/t\": No such file or directory");
  EXPECT_EQ(
      error(with_backend("admin: {listen: 127.0.0.1:9901, token_file: " + weak.string() + "}\n")),
      "t.yaml:9:45: token_file \"" + weak.string() + "\" must hold at least 16 bytes");
  EXPECT_EQ(error(with_backend("admin: {listen: 127.0.0.1:9901, token_file: \"\"}\n")),
            "t.yaml:9:45: \"token_file\" must not be empty");
  EXPECT_EQ(error(with_backend("admin: {listen: 127.0.0.1:9901, max_connections: 0}\n")),
            "t.yaml:9:50: \"max_connections\" must be an integer from 1 to 100000, got \"0\"");
  EXPECT_EQ(error(with_backend("admin: {listen: 127.0.0.1:9901, header_timeout: 0s}\n")),
            "t.yaml:9:49: \"header_timeout\" must be longer than 0");
}

TEST(Loader, FleetAndUpgradeKeys) {
  const Config& c = ok(load(R"(
limits:
  drain_grace: 3s
  tunnel_drain_timeout: 10m
listeners:
  - name: web
    listen: 192.0.2.10:8080
    freebind: true
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)"));
  EXPECT_TRUE(c.listeners.at(0).freebind);
  EXPECT_EQ(c.limits.drain_grace, milliseconds(3000));
  EXPECT_EQ(c.limits.tunnel_drain_timeout, milliseconds(600000));
  const Config& d = ok(load(with_backend("")));
  EXPECT_FALSE(d.listeners.at(0).freebind);
  EXPECT_EQ(d.limits.drain_grace, milliseconds(0));
  EXPECT_EQ(d.limits.tunnel_drain_timeout, milliseconds(3600000));
  EXPECT_EQ(error(with_backend("limits: {drain_grace: soon}\n")),
            "t.yaml:9:23: \"drain_grace\": invalid duration \"soon\" (expected e.g. 250ms, 2s, "
            "1m, 1h, 1d)");
}

}  // namespace
}  // namespace weir::config
