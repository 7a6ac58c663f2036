// TLS and HTTP/2 keys: a listener's `tls`, `h2c` and `redirect_https`, a server's `tls`, and the
// HTTP/2 and TLS extension keys under `limits`.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.hpp"
#include "loader_test_util.hpp"

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;
namespace fs = std::filesystem;

using Strings = std::vector<std::string>;

// One http listener "web" whose `extra` lines start at line 4, then its `backend: web`.
std::string with_listener(std::string_view extra) {
  return yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
)") + std::string(extra) +
         yaml(R"(
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
}

// A listener with a minimal valid `tls:` at line 4 and `extra` (inside the tls map) at line 8.
std::string with_tls(std::string_view extra) {
  return with_listener(R"(    tls:
      certificates:
        - cert: /etc/weir/site.pem
          key: /etc/weir/site.key
)" + std::string(extra));
}

// A valid config whose `limits:` lines (`extra`) start at line 2.
std::string with_limits(std::string_view extra) {
  return "limits:\n" + std::string(extra) + with_backend("");
}

// ---- listener tls ----------------------------------------------------------------------------

TEST(ListenerTls, EveryKey) {
  LoadResult r = load(with_listener(R"(    tls:
      certificates:
        - cert: /etc/weir/site.pem
          key: /etc/weir/site.key
        - {cert: /etc/weir/other.pem, key: /etc/weir/other.key}
      min_version: "1.3"
      alpn: [http/1.1, h2]
      hsts: 180d
)"));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty());
  const Listener& l = c.listeners.at(0);
  ASSERT_TRUE(l.tls.has_value());
  const ListenerTls& tls = *l.tls;
  EXPECT_EQ(tls.pos.file, "t.yaml");
  EXPECT_EQ(tls.pos.line, 4);
  EXPECT_EQ(tls.pos.col, 5);
  ASSERT_EQ(tls.certificates.size(), 2u);
  EXPECT_EQ(tls.certificates[0].cert, "/etc/weir/site.pem");
  EXPECT_EQ(tls.certificates[0].key, "/etc/weir/site.key");
  EXPECT_EQ(tls.certificates[0].pos.line, 6);  // the `cert:` key
  EXPECT_EQ(tls.certificates[0].pos.col, 11);
  EXPECT_EQ(tls.certificates[1].cert, "/etc/weir/other.pem");
  EXPECT_EQ(tls.certificates[1].key, "/etc/weir/other.key");
  EXPECT_EQ(tls.certificates[1].pos.line, 8);
  EXPECT_EQ(tls.certificates[1].pos.col, 12);
  EXPECT_EQ(tls.min_version, 13);
  EXPECT_EQ(tls.alpn, (Strings{"http/1.1", "h2"}));
  EXPECT_EQ(tls.hsts, milliseconds(180LL * 24 * 3600 * 1000));
  EXPECT_FALSE(l.h2c);
  EXPECT_EQ(l.redirect_https, 0);
  ASSERT_EQ(l.routes.size(), 1u);
}

TEST(ListenerTls, Defaults) {
  LoadResult r = load(with_tls(""));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty());
  const ListenerTls& tls = *c.listeners.at(0).tls;
  ASSERT_EQ(tls.certificates.size(), 1u);
  EXPECT_EQ(tls.min_version, 12);
  EXPECT_EQ(tls.alpn, (Strings{"h2", "http/1.1"}));
  EXPECT_FALSE(tls.hsts.has_value());

  // Without the keys: a plain listener, no h2c, no redirect.
  const Config& plain = ok(load(with_backend("")));
  const Listener& l = plain.listeners.at(0);
  EXPECT_FALSE(l.tls.has_value());
  EXPECT_FALSE(l.h2c);
  EXPECT_EQ(l.redirect_https, 0);
}

TEST(ListenerTls, ContractExample) {
  LoadResult r = load(R"(
listeners:
  - name: https
    listen: 0.0.0.0:8443
    tls:
      certificates:               # picked by SNI from each certificate's own names
        - cert: /etc/weir/site.pem      # PEM chain, leaf first
          key: /etc/weir/site.key
        - cert: /etc/weir/other.pem
          key: /etc/weir/other.key
      min_version: "1.2"          # "1.2" (default) | "1.3"
      alpn: [h2, http/1.1]        # default; [http/1.1] turns HTTP/2 off
      hsts: 180d                  # optional
    backend: web
  - name: plain
    listen: 0.0.0.0:8080
    h2c: false                    # true: also accept HTTP/2 with prior knowledge in clear text
    redirect_https: 8443          # optional: answer every request with 308
    backend: web

backends:
  - name: web
    servers:
      - address: 10.0.0.5:443
        tls:                      # optional: re-encrypt to this server
          ca: /etc/weir/internal-ca.pem   # default: the system's trust store
          sni: app.internal               # default: the host part of address
          verify: true                    # default true; false only for tests
)");
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty()) << ::testing::PrintToString(all_messages(r));
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].tls->certificates.size(), 2u);
  EXPECT_EQ(c.listeners[0].tls->min_version, 12);
  EXPECT_EQ(c.listeners[1].redirect_https, 8443);
  EXPECT_FALSE(c.listeners[1].h2c);
  EXPECT_FALSE(c.listeners[1].tls.has_value());
  const ServerTls& st = *c.backends.at(0).servers.at(0).tls;
  EXPECT_EQ(st.ca, "/etc/weir/internal-ca.pem");
  EXPECT_EQ(st.sni, "app.internal");
  EXPECT_TRUE(st.verify);
}

TEST(ListenerTls, MinVersion) {
  // Unquoted, YAML reads 1.2 as a number: its text is what counts.
  const std::pair<const char*, int> valid[] = {
      {"1.2", 12}, {"1.3", 13}, {"\"1.2\"", 12}, {"\"1.3\"", 13}, {"'1.3'", 13}};
  for (const auto& [text, version] : valid) {
    SCOPED_TRACE(text);
    EXPECT_EQ(ok(load(with_tls("      min_version: " + std::string(text) + "\n")))
                  .listeners.at(0)
                  .tls->min_version,
              version);
  }
  const std::pair<const char*, const char*> invalid[] = {
      {"1.1", "\"1.1\""},         {"\"1.0\"", "\"1.0\""}, {"1.20", "\"1.20\""},
      {"TLSv1.3", "\"TLSv1.3\""}, {"13", "\"13\""},       {"[1.2]", "a list"},
  };
  for (const auto& [text, got] : invalid) {
    SCOPED_TRACE(text);
    EXPECT_EQ(error(with_tls("      min_version: " + std::string(text) + "\n")),
              std::string("t.yaml:8:20: \"min_version\" must be \"1.2\" or \"1.3\", got ") + got);
  }
  EXPECT_EQ(error(with_tls("      min_version:\n")),
            "t.yaml:8:7: \"min_version\" must be \"1.2\" or \"1.3\", got nothing");
}

TEST(ListenerTls, Alpn) {
  EXPECT_EQ(ok(load(with_tls("      alpn: [http/1.1]\n"))).listeners.at(0).tls->alpn,
            Strings{"http/1.1"});
  EXPECT_EQ(ok(load(with_tls("      alpn: [h2]\n"))).listeners.at(0).tls->alpn, Strings{"h2"});
  EXPECT_EQ(ok(load(with_tls("      alpn:\n        - h2\n        - http/1.1\n")))
                .listeners.at(0)
                .tls->alpn,
            (Strings{"h2", "http/1.1"}));

  EXPECT_EQ(error(with_tls("      alpn: []\n")),
            "t.yaml:8:13: \"alpn\" needs at least one protocol");
  EXPECT_EQ(error(with_tls("      alpn: [h2, h3]\n")),
            "t.yaml:8:18: unknown ALPN protocol \"h3\" (expected h2 or http/1.1)");
  EXPECT_EQ(error(with_tls("      alpn: [HTTP/1.1]\n")),
            "t.yaml:8:14: unknown ALPN protocol \"HTTP/1.1\" (expected h2 or http/1.1)");
  EXPECT_EQ(error(with_tls("      alpn: [h2, http/1.1, h2]\n")),
            "t.yaml:8:28: \"h2\" is listed twice in \"alpn\"");
  EXPECT_EQ(error(with_tls("      alpn: h2\n")),
            "t.yaml:8:13: \"alpn\" must be a list, got \"h2\"");
  EXPECT_EQ(error(with_tls("      alpn: [{a: b}]\n")),
            "t.yaml:8:14: an item of \"alpn\" must be a string, got a map");
}

TEST(ListenerTls, Hsts) {
  EXPECT_EQ(ok(load(with_tls("      hsts: 1s\n"))).listeners.at(0).tls->hsts, milliseconds(1000));
  EXPECT_EQ(ok(load(with_tls("      hsts: 365d\n"))).listeners.at(0).tls->hsts,
            milliseconds(365LL * 24 * 3600 * 1000));
  EXPECT_EQ(error(with_tls("      hsts: 0s\n")), "t.yaml:8:13: \"hsts\" must be longer than 0");
  EXPECT_EQ(error(with_tls("      hsts: 500ms\n")),
            "t.yaml:8:13: \"hsts\" must be at least 1s (max-age is in seconds)");
  EXPECT_EQ(error(with_tls("      hsts: 31536000\n")),
            "t.yaml:8:13: \"hsts\": duration needs a unit, e.g. 2s");
  EXPECT_EQ(error(with_tls("      hsts: [1d]\n")),
            "t.yaml:8:13: \"hsts\" must be a duration such as 2s, got a list");
}

TEST(ListenerTls, Certificates) {
  EXPECT_EQ(error(with_listener("    tls:\n")), "t.yaml:4:5: listener tls needs \"certificates\"");
  EXPECT_EQ(error(with_listener("    tls: {alpn: [h2]}\n")),
            "t.yaml:4:10: listener tls needs \"certificates\"");
  EXPECT_EQ(error(with_listener("    tls: true\n")),
            "t.yaml:4:10: \"tls\" must be a map, got \"true\"");
  EXPECT_EQ(error(with_listener("    tls: {certificates: []}\n")),
            "t.yaml:4:25: \"certificates\" needs at least one certificate");
  EXPECT_EQ(error(with_listener("    tls: {certificates: {cert: a, key: b}}\n")),
            "t.yaml:4:25: \"certificates\" must be a list, got a map");
  EXPECT_EQ(error(with_listener("    tls: {certificates: [site.pem]}\n")),
            "t.yaml:4:26: an item of \"certificates\" must be a map, got \"site.pem\"");
  EXPECT_EQ(error(with_listener("    tls:\n      certificates:\n        - cert: a.pem\n")),
            "t.yaml:6:11: certificate needs \"key\"");
  EXPECT_EQ(error(with_listener("    tls:\n      certificates:\n        - key: a.key\n")),
            "t.yaml:6:11: certificate needs \"cert\"");
  EXPECT_EQ(error(with_listener("    tls:\n      certificates:\n        - {cert: \"\", key: a}\n")),
            "t.yaml:6:18: \"cert\" must not be empty");
  EXPECT_EQ(error(with_listener("    tls:\n      certificates:\n        - {cert: a, key: ''}\n")),
            "t.yaml:6:26: \"key\" must not be empty");
  EXPECT_EQ(error(with_listener("    tls:\n      certificates:\n        - {cert: [a], key: b}\n")),
            "t.yaml:6:18: \"cert\" must be a string, got a list");
  EXPECT_EQ(error(with_listener("    tls:\n      certificates:\n        - {cert: a, key:}\n")),
            "t.yaml:6:21: \"key\" must be a string, got nothing");
  EXPECT_EQ(errors(with_listener("    tls:\n      certificates:\n        - {crt: a, key: b}\n")),
            (Strings{"t.yaml:6:11: certificate needs \"cert\"",
                     "t.yaml:6:12: unknown key \"crt\" in certificate; did you mean \"cert\"?"}));
}

TEST(ListenerTls, UnknownKeys) {
  EXPECT_EQ(error(with_tls("      min_versoin: \"1.3\"\n")),
            "t.yaml:8:7: unknown key \"min_versoin\" in listener tls; did you mean "
            "\"min_version\"?");
  EXPECT_EQ(error(with_tls("      ciphers: HIGH\n")),
            "t.yaml:8:7: unknown key \"ciphers\" in listener tls");
  EXPECT_EQ(error(with_listener("    tsl: {}\n")),
            "t.yaml:4:5: unknown key \"tsl\" in listener; did you mean \"tls\"?");
  // The keys used to be reported as "not supported yet".
  EXPECT_EQ(error(with_backend("    tls: true\n")), "t.yaml:9:5: unknown key \"tls\" in backend");
}

TEST(ListenerTls, PathsAreNotOpened) {
  // The loader records paths only; net/tls loads and checks the files.
  const Config& c = ok(load(with_listener(
      "    tls: {certificates: [{cert: /nonexistent/a.pem, key: /nonexistent/a.key}]}\n")));
  EXPECT_EQ(c.listeners.at(0).tls->certificates.at(0).cert, "/nonexistent/a.pem");
  // Loaded from a string, relative paths stay as written.
  const Config& rel =
      ok(load(with_listener("    tls: {certificates: [{cert: a.pem, key: a.key}]}\n")));
  EXPECT_EQ(rel.listeners.at(0).tls->certificates.at(0).cert, "a.pem");
  EXPECT_EQ(rel.listeners.at(0).tls->certificates.at(0).key, "a.key");
}

TEST(ListenerTls, RelativePathsAreRelativeToTheConfig) {
  TempDir dir;
  std::string text = R"(listeners:
  - name: web
    listen: 127.0.0.1:8443
    backend: web
    tls:
      certificates:
        - cert: certs/site.pem
          key: /etc/weir/site.key
        - cert: ./other.pem
          key: other.key
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
        tls: {ca: ca/internal.pem}
)";
  fs::path config = dir.write("weir.yaml", text);
  LoadResult r = load_config_file(config.string());
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  const ListenerTls& tls = *c.listeners.at(0).tls;
  EXPECT_EQ(tls.certificates.at(0).cert, (dir.path() / "certs/site.pem").string());
  EXPECT_EQ(tls.certificates.at(0).key, "/etc/weir/site.key");
  EXPECT_EQ(tls.certificates.at(0).pos.file, config.string());
  EXPECT_EQ(tls.certificates.at(0).pos.line, 7);
  EXPECT_EQ(tls.certificates.at(1).cert, (dir.path() / "./other.pem").string());
  EXPECT_EQ(tls.certificates.at(1).key, (dir.path() / "other.key").string());
  EXPECT_EQ(c.backends.at(0).servers.at(0).tls->ca, (dir.path() / "ca/internal.pem").string());
}

// ---- h2c, redirect_https -----------------------------------------------------------------------

TEST(ListenerProtocols, H2c) {
  EXPECT_TRUE(ok(load(with_listener("    h2c: true\n"))).listeners.at(0).h2c);
  EXPECT_FALSE(ok(load(with_listener("    h2c: false\n"))).listeners.at(0).h2c);
  EXPECT_TRUE(ok(load(with_listener("    h2c: True\n"))).listeners.at(0).h2c);
  EXPECT_EQ(error(with_listener("    h2c: yes\n")),
            "t.yaml:4:10: \"h2c\" must be true or false, got \"yes\"");
  EXPECT_EQ(error(with_listener("    h2c: \"true\"\n")),
            "t.yaml:4:10: \"h2c\" must be true or false, got the string \"true\"");
  EXPECT_EQ(error(with_listener("    h2c:\n")),
            "t.yaml:4:5: \"h2c\" must be true or false, got nothing");
  EXPECT_EQ(error(with_tls("    h2c: true\n")),
            "t.yaml:8:5: h2c is for plain listeners: a TLS listener offers h2 by ALPN");
  EXPECT_EQ(error(with_tls("    h2c: false\n")),
            "t.yaml:8:5: h2c is for plain listeners: a TLS listener offers h2 by ALPN");
}

TEST(ListenerProtocols, RedirectHttps) {
  EXPECT_EQ(ok(load(with_listener("    redirect_https: 443\n"))).listeners.at(0).redirect_https,
            443);
  EXPECT_EQ(ok(load(with_listener("    redirect_https: 65535\n"))).listeners.at(0).redirect_https,
            65535);
  EXPECT_EQ(error(with_listener("    redirect_https: 0\n")),
            "t.yaml:4:21: \"redirect_https\" must be an integer from 1 to 65535, got \"0\"");
  EXPECT_EQ(error(with_listener("    redirect_https: 65536\n")),
            "t.yaml:4:21: \"redirect_https\" must be an integer from 1 to 65535, got \"65536\"");
  EXPECT_EQ(error(with_listener("    redirect_https: true\n")),
            "t.yaml:4:21: \"redirect_https\" must be an integer from 1 to 65535, got \"true\"");
  EXPECT_EQ(error(with_tls("    redirect_https: 8443\n")),
            "t.yaml:8:5: redirect_https is for plain listeners: a TLS listener already speaks "
            "HTTPS");
}

TEST(ListenerProtocols, RedirectOnlyListenerNeedsNoBackend) {
  LoadResult r = load(R"(
listeners:
  - name: https
    listen: 127.0.0.1:8443
    tls: {certificates: [{cert: site.pem, key: site.key}]}
    backend: web
  - name: http
    listen: 127.0.0.1:8080
    redirect_https: 8443
    h2c: true
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty()) << ::testing::PrintToString(all_messages(r));
  const Listener& l = c.listeners.at(1);
  EXPECT_TRUE(l.routes.empty());
  EXPECT_EQ(l.redirect_https, 8443);
  EXPECT_TRUE(l.h2c);

  // Only redirect_https waives it: a plain listener still needs somewhere to send requests.
  EXPECT_EQ(error(R"(
listeners:
  - name: http
    listen: 127.0.0.1:8080
    h2c: true
)"),
            "t.yaml:2:5: listener needs routes or backend");
  // A TLS listener cannot redirect: that error alone, not also the missing backend.
  EXPECT_EQ(error(R"(
listeners:
  - name: https
    listen: 127.0.0.1:8443
    tls: {certificates: [{cert: a, key: b}]}
    redirect_https: 443
)"),
            "t.yaml:5:5: redirect_https is for plain listeners: a TLS listener already speaks "
            "HTTPS");
}

TEST(ListenerProtocols, NotInTcpMode) {
  std::string config = with_listener(R"(    mode: tcp
    tls: {certificates: [{cert: a, key: b}]}
    h2c: true
    redirect_https: 443
)");
  EXPECT_EQ(errors(config),
            (Strings{"t.yaml:5:5: TLS termination is for http listeners: a tcp listener forwards "
                     "TLS untouched",
                     "t.yaml:6:5: h2c is for http listeners: a tcp listener forwards bytes "
                     "untouched",
                     "t.yaml:7:5: redirect_https is for http listeners: a tcp listener forwards "
                     "bytes untouched"}));
  // Invalid contents are not reported on top: the key itself is the mistake.
  EXPECT_EQ(error(with_listener("    mode: tcp\n    tls: {}\n")),
            "t.yaml:5:5: TLS termination is for http listeners: a tcp listener forwards TLS "
            "untouched");
}

// ---- server tls --------------------------------------------------------------------------------

TEST(ServerTls, Map) {
  LoadResult r =
      load(with_backend("        tls:\n          ca: /etc/weir/ca.pem\n"
                        "          sni: App.Internal\n          verify: false\n"));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty());
  const Server& s = c.backends.at(0).servers.at(0);
  ASSERT_TRUE(s.tls.has_value());
  EXPECT_EQ(s.tls->ca, "/etc/weir/ca.pem");
  EXPECT_EQ(s.tls->sni, "app.internal");  // host names compare case-insensitively
  EXPECT_FALSE(s.tls->verify);
  EXPECT_EQ(s.tls->pos.line, 9);
  EXPECT_EQ(s.tls->pos.col, 9);
}

TEST(ServerTls, ShorthandsAndDefaults) {
  for (const char* on : {"true", "True", "{}", ""}) {
    SCOPED_TRACE(on);
    const Config& c = ok(load(with_backend("        tls: " + std::string(on) + "\n")));
    const Server& s = c.backends.at(0).servers.at(0);
    ASSERT_TRUE(s.tls.has_value());
    EXPECT_EQ(s.tls->ca, "");   // the system's trust store
    EXPECT_EQ(s.tls->sni, "");  // the runtime uses the server's host
    EXPECT_TRUE(s.tls->verify);
    EXPECT_EQ(s.tls->pos.line, 9);
    EXPECT_EQ(s.tls->pos.col, 9);
  }
  EXPECT_FALSE(ok(load(with_backend("        tls: false\n"))).backends.at(0).servers.at(0).tls);
  EXPECT_FALSE(ok(load(with_backend(""))).backends.at(0).servers.at(0).tls);
  EXPECT_TRUE(ok(load(with_backend("        tls: {verify: true}\n")))
                  .backends.at(0)
                  .servers.at(0)
                  .tls->verify);
}

TEST(ServerTls, Errors) {
  EXPECT_EQ(error(with_backend("        tls: yes\n")),
            "t.yaml:9:14: \"tls\" must be true, false or a map of ca, sni and verify, got \"yes\"");
  EXPECT_EQ(error(with_backend("        tls: \"true\"\n")),
            "t.yaml:9:14: \"tls\" must be true, false or a map of ca, sni and verify, got the "
            "string \"true\"");
  EXPECT_EQ(error(with_backend("        tls: [ca.pem]\n")),
            "t.yaml:9:14: \"tls\" must be true, false or a map of ca, sni and verify, got a list");
  EXPECT_EQ(error(with_backend("        tls: {ca: \"\"}\n")),
            "t.yaml:9:19: \"ca\" must not be empty");
  EXPECT_EQ(error(with_backend("        tls: {ca: [a]}\n")),
            "t.yaml:9:19: \"ca\" must be a string, got a list");
  EXPECT_EQ(error(with_backend("        tls: {sni: \"app internal\"}\n")),
            "t.yaml:9:20: invalid sni \"app internal\": expected a host name such as app.internal");
  EXPECT_EQ(error(with_backend("        tls: {sni: \"\"}\n")),
            "t.yaml:9:20: invalid sni \"\": expected a host name such as app.internal");
  EXPECT_EQ(error(with_backend("        tls: {sni: app.internal:443}\n")),
            "t.yaml:9:20: invalid sni \"app.internal:443\": expected a host name such as "
            "app.internal");
  EXPECT_EQ(error(with_backend("        tls: {sni: 10.0.0.5}\n")),
            "t.yaml:9:20: \"sni\" must be a host name, not an IP address, got \"10.0.0.5\"");
  EXPECT_EQ(error(with_backend("        tls: {sni: \"::1\"}\n")),
            "t.yaml:9:20: \"sni\" must be a host name, not an IP address, got \"::1\"");
  EXPECT_EQ(error(with_backend("        tls: {verify: no}\n")),
            "t.yaml:9:23: \"verify\" must be true or false, got \"no\"");
  EXPECT_EQ(error(with_backend("        tls: {verfiy: false}\n")),
            "t.yaml:9:15: unknown key \"verfiy\" in server tls; did you mean \"verify\"?");
  EXPECT_EQ(error(with_backend("        tls: {certificates: []}\n")),
            "t.yaml:9:15: unknown key \"certificates\" in server tls");
}

TEST(ServerTls, RelativeCaFromAString) {
  // Loaded from a string there is no folder: the path stays as written.
  EXPECT_EQ(
      ok(load(with_backend("        tls: {ca: ca.pem}\n"))).backends.at(0).servers.at(0).tls->ca,
      "ca.pem");
}

// ---- limits
// --------------------------------------------------------------------------------------

TEST(TlsLimits, Defaults) {
  const GlobalLimits& l = ok(load(with_backend(""))).limits;
  EXPECT_EQ(l.h2_max_concurrent_streams, 100u);
  EXPECT_EQ(l.h2_stream_window, 256u * 1024);
  EXPECT_EQ(l.h2_connection_window, 1024u * 1024);
  EXPECT_EQ(l.tls_ticket_rotation, milliseconds(3600 * 1000));
}

TEST(TlsLimits, EveryKey) {
  LoadResult r = load(with_limits(R"(  h2_max_concurrent_streams: 250
  h2_stream_window: 1MiB
  h2_connection_window: 64MiB
  tls_ticket_rotation: 12h
)"));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty());
  EXPECT_EQ(c.limits.h2_max_concurrent_streams, 250u);
  EXPECT_EQ(c.limits.h2_stream_window, 1024u * 1024);
  EXPECT_EQ(c.limits.h2_connection_window, 64u * 1024 * 1024);
  EXPECT_EQ(c.limits.tls_ticket_rotation, milliseconds(12 * 3600 * 1000));

  // The bounds themselves are accepted.
  const Config& edges = ok(load(with_limits(R"(  h2_max_concurrent_streams: 10000
  h2_stream_window: 16KiB
  h2_connection_window: 2147483647
  tls_ticket_rotation: 1s
)")));
  EXPECT_EQ(edges.limits.h2_max_concurrent_streams, 10000u);
  EXPECT_EQ(edges.limits.h2_stream_window, 16u * 1024);
  EXPECT_EQ(edges.limits.h2_connection_window, 2147483647u);
  EXPECT_EQ(edges.limits.tls_ticket_rotation, milliseconds(1000));
  EXPECT_EQ(ok(load(with_limits("  h2_stream_window: 1GiB\n  h2_connection_window: 1GiB\n")))
                .limits.h2_stream_window,
            1024u * 1024 * 1024);
  // Equal windows are fine.
  EXPECT_EQ(ok(load(with_limits("  h2_stream_window: 1MiB\n"))).limits.h2_stream_window,
            1024u * 1024);
}

TEST(TlsLimits, Errors) {
  EXPECT_EQ(error(with_limits("  h2_max_concurrent_streams: 0\n")),
            "t.yaml:2:30: \"h2_max_concurrent_streams\" must be an integer from 1 to 10000, got "
            "\"0\"");
  EXPECT_EQ(error(with_limits("  h2_max_concurrent_streams: 10001\n")),
            "t.yaml:2:30: \"h2_max_concurrent_streams\" must be an integer from 1 to 10000, got "
            "\"10001\"");
  EXPECT_EQ(error(with_limits("  h2_stream_window: 8KiB\n")),
            "t.yaml:2:21: \"h2_stream_window\" must be from 16384 to 1073741824 bytes, got "
            "\"8KiB\"");
  EXPECT_EQ(error(with_limits("  h2_stream_window: 2GiB\n")),
            "t.yaml:2:21: \"h2_stream_window\" must be from 16384 to 1073741824 bytes, got "
            "\"2GiB\"");
  EXPECT_EQ(error(with_limits("  h2_connection_window: 2GiB\n")),
            "t.yaml:2:25: \"h2_connection_window\" must be from 16384 to 2147483647 bytes, got "
            "\"2GiB\"");
  EXPECT_EQ(error(with_limits("  h2_connection_window: 1.5MiB\n")),
            "t.yaml:2:25: \"h2_connection_window\": size \"1.5MiB\" must be a whole number (e.g. "
            "1536 rather than 1.5KiB)");
  EXPECT_EQ(error(with_limits("  h2_stream_window: 1MiB\n  h2_connection_window: 512KiB\n")),
            "t.yaml:3:25: \"h2_connection_window\" must be at least \"h2_stream_window\" (1048576 "
            "bytes)");
  // Only the stream window written: it is the one reported against the default.
  EXPECT_EQ(error(with_limits("  h2_stream_window: 32MiB\n")),
            "t.yaml:2:21: \"h2_stream_window\" must be at most \"h2_connection_window\" (1048576 "
            "bytes)");
  // Only the connection window written, below the default stream window.
  EXPECT_EQ(error(with_limits("  h2_connection_window: 128KiB\n")),
            "t.yaml:2:25: \"h2_connection_window\" must be at least \"h2_stream_window\" (262144 "
            "bytes)");
  EXPECT_EQ(error(with_limits("  tls_ticket_rotation: 500ms\n")),
            "t.yaml:2:24: \"tls_ticket_rotation\" must be at least 1s");
  EXPECT_EQ(error(with_limits("  tls_ticket_rotation: 0s\n")),
            "t.yaml:2:24: \"tls_ticket_rotation\" must be longer than 0");
  EXPECT_EQ(error(with_limits("  tls_ticket_rotation: 3600\n")),
            "t.yaml:2:24: \"tls_ticket_rotation\": duration needs a unit, e.g. 2s");
  EXPECT_EQ(error(with_limits("  h2_max_concurent_streams: 5\n")),
            "t.yaml:2:3: unknown key \"h2_max_concurent_streams\" in limits; did you mean "
            "\"h2_max_concurrent_streams\"?");
}

}  // namespace
}  // namespace weir::config
