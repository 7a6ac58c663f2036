// HTTP/3 keys: a listener's `http3` (needs `tls`, not for tcp listeners) and the QUIC keys under
// `limits` (h3_max_concurrent_streams, h3_stream_window, h3_connection_window,
// quic_idle_timeout, quic_retry_threshold).
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/loader.hpp"
#include "loader_test_util.hpp"

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;

using Strings = std::vector<std::string>;

// One http listener "web" whose `extra` lines start at line 4, then its `backend: web`.
std::string with_listener(std::string_view extra) {
  return yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8443
)") + std::string(extra) +
         yaml(R"(
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
}

// A listener with a minimal valid `tls:` at lines 4-7 and `extra` (listener keys) at line 8.
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

// ---- listener http3 ----------------------------------------------------------------------------

TEST(Http3Listener, WithTls) {
  LoadResult r = load(with_tls("    http3: true\n"));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty()) << ::testing::PrintToString(all_messages(r));
  const Listener& l = c.listeners.at(0);
  EXPECT_TRUE(l.http3);
  ASSERT_TRUE(l.tls.has_value());
  EXPECT_EQ(l.tls->certificates.size(), 1u);

  // Before `tls:` in the file is the same: the order of keys does not matter.
  EXPECT_TRUE(ok(load(with_listener(R"(    http3: true
    tls: {certificates: [{cert: /etc/weir/site.pem, key: /etc/weir/site.key}]}
)")))
                  .listeners.at(0)
                  .http3);
}

TEST(Http3Listener, OffByDefaultAndWhenFalse) {
  EXPECT_FALSE(ok(load(with_tls(""))).listeners.at(0).http3);
  EXPECT_FALSE(ok(load(with_backend(""))).listeners.at(0).http3);
  EXPECT_FALSE(ok(load(with_tls("    http3: false\n"))).listeners.at(0).http3);
  // `false` needs no tls: nothing is served over QUIC.
  LoadResult r = load(with_listener("    http3: false\n"));
  EXPECT_TRUE(r.ok()) << ::testing::PrintToString(all_messages(r));
  EXPECT_FALSE(ok(r).listeners.at(0).http3);
}

TEST(Http3Listener, NeedsTls) {
  // FILE:LINE:COL of the `http3` key, naming both http3 and tls.
  const std::string e = error(with_listener("    http3: true\n"));
  EXPECT_EQ(e,
            "t.yaml:4:5: http3 needs tls: QUIC always encrypts, with the listener's "
            "certificates");
  EXPECT_NE(e.find("http3"), std::string::npos);
  EXPECT_NE(e.find("tls"), std::string::npos);
  // At the key's own place, wherever it is.
  EXPECT_EQ(error(with_listener("    h2c: true\n    http3: true\n")),
            "t.yaml:5:5: http3 needs tls: QUIC always encrypts, with the listener's "
            "certificates");
}

TEST(Http3Listener, NotOnTcpListeners) {
  EXPECT_EQ(error(with_listener("    mode: tcp\n    http3: true\n")),
            "t.yaml:5:5: http3 is for http listeners: a tcp listener forwards bytes");
  // With tls too: both keys are mistakes on a tcp listener, each reported at its own place.
  const Strings e = errors(with_listener(R"(    mode: tcp
    tls: {certificates: [{cert: a, key: b}]}
    http3: true
)"));
  EXPECT_EQ(e, (Strings{"t.yaml:5:5: TLS termination is for http listeners: a tcp listener "
                        "forwards TLS untouched",
                        "t.yaml:6:5: http3 is for http listeners: a tcp listener forwards bytes"}))
      << ::testing::PrintToString(e);
  // `false` is harmless on a tcp listener.
  LoadResult r = load(with_listener("    mode: tcp\n    http3: false\n"));
  EXPECT_TRUE(r.ok()) << ::testing::PrintToString(all_messages(r));
}

TEST(Http3Listener, NotABool) {
  // A quoted string is never a bool, whatever it says.
  EXPECT_EQ(error(with_tls("    http3: \"yes\"\n")),
            "t.yaml:8:12: \"http3\" must be true or false, got the string \"yes\"");
  EXPECT_EQ(error(with_tls("    http3: yes\n")),
            "t.yaml:8:12: \"http3\" must be true or false, got \"yes\"");
  EXPECT_EQ(error(with_tls("    http3: \"true\"\n")),
            "t.yaml:8:12: \"http3\" must be true or false, got the string \"true\"");
  EXPECT_EQ(error(with_tls("    http3: 1\n")),
            "t.yaml:8:12: \"http3\" must be true or false, got \"1\"");
  EXPECT_EQ(error(with_tls("    http3:\n")),
            "t.yaml:8:5: \"http3\" must be true or false, got nothing");
  // Not a bool, and no tls: only the type is reported (the value is unknown).
  EXPECT_EQ(error(with_listener("    http3: \"yes\"\n")),
            "t.yaml:4:12: \"http3\" must be true or false, got the string \"yes\"");
}

TEST(Http3Listener, Misspelled) {
  const std::string e = error(with_tls("    http_3: true\n"));
  EXPECT_EQ(e.rfind("t.yaml:8:5: unknown key \"http_3\"", 0), 0u) << e;
}

// ---- limits ------------------------------------------------------------------------------------

TEST(Http3Limits, Defaults) {
  const GlobalLimits& l = ok(load(with_backend(""))).limits;
  EXPECT_EQ(l.h3_max_concurrent_streams, 100u);
  EXPECT_EQ(l.h3_stream_window, 256u * 1024);
  EXPECT_EQ(l.h3_connection_window, 1024u * 1024);
  EXPECT_EQ(l.quic_idle_timeout, milliseconds(30000));
  EXPECT_EQ(l.quic_retry_threshold, 100u);
  // An empty limits map, or other keys only, leaves them alone.
  const GlobalLimits& other = ok(load(with_limits("  h2_max_concurrent_streams: 7\n"))).limits;
  EXPECT_EQ(other.h3_max_concurrent_streams, 100u);
  EXPECT_EQ(other.h3_stream_window, 256u * 1024);
  EXPECT_EQ(other.h3_connection_window, 1024u * 1024);
  EXPECT_EQ(other.quic_idle_timeout, milliseconds(30000));
  EXPECT_EQ(other.quic_retry_threshold, 100u);
}

TEST(Http3Limits, EveryKey) {
  LoadResult r = load(with_limits(R"(  h3_max_concurrent_streams: 250
  h3_stream_window: 1MiB
  h3_connection_window: 64MiB
  quic_idle_timeout: 90s
  quic_retry_threshold: 5
)"));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty()) << ::testing::PrintToString(all_messages(r));
  EXPECT_EQ(c.limits.h3_max_concurrent_streams, 250u);
  EXPECT_EQ(c.limits.h3_stream_window, 1024u * 1024);
  EXPECT_EQ(c.limits.h3_connection_window, 64u * 1024 * 1024);
  EXPECT_EQ(c.limits.quic_idle_timeout, milliseconds(90 * 1000));
  EXPECT_EQ(c.limits.quic_retry_threshold, 5u);
  // The HTTP/2 ones are not touched by the HTTP/3 ones.
  EXPECT_EQ(c.limits.h2_max_concurrent_streams, 100u);
  EXPECT_EQ(c.limits.h2_stream_window, 256u * 1024);
  EXPECT_EQ(c.limits.h2_connection_window, 1024u * 1024);
}

TEST(Http3Limits, Units) {
  EXPECT_EQ(ok(load(with_limits("  h3_stream_window: 16KiB\n"))).limits.h3_stream_window,
            16u * 1024);
  EXPECT_EQ(ok(load(with_limits("  h3_stream_window: 131072\n"))).limits.h3_stream_window, 131072u);
  EXPECT_EQ(ok(load(with_limits("  h3_connection_window: 2MiB\n"))).limits.h3_connection_window,
            2u * 1024 * 1024);
  EXPECT_EQ(ok(load(with_limits("  quic_idle_timeout: 1500ms\n"))).limits.quic_idle_timeout,
            milliseconds(1500));
  EXPECT_EQ(ok(load(with_limits("  quic_idle_timeout: 2m\n"))).limits.quic_idle_timeout,
            milliseconds(120 * 1000));
}

TEST(Http3Limits, Bounds) {
  // The bounds themselves are accepted.
  const Config& edges = ok(load(with_limits(R"(  h3_max_concurrent_streams: 10000
  h3_stream_window: 1GiB
  h3_connection_window: 4GiB
  quic_retry_threshold: 1000000
)")));
  EXPECT_EQ(edges.limits.h3_max_concurrent_streams, 10000u);
  EXPECT_EQ(edges.limits.h3_stream_window, 1024u * 1024 * 1024);
  EXPECT_EQ(edges.limits.h3_connection_window, 4ull * 1024 * 1024 * 1024);
  EXPECT_EQ(edges.limits.quic_retry_threshold, 1000000u);
  const Config& low = ok(load(with_limits(R"(  h3_max_concurrent_streams: 1
  h3_stream_window: 16KiB
  h3_connection_window: 16KiB
)")));
  EXPECT_EQ(low.limits.h3_max_concurrent_streams, 1u);
  EXPECT_EQ(low.limits.h3_stream_window, 16u * 1024);
  EXPECT_EQ(low.limits.h3_connection_window, 16u * 1024);
  // Equal windows are fine.
  EXPECT_EQ(ok(load(with_limits("  h3_stream_window: 1MiB\n"))).limits.h3_stream_window,
            1024u * 1024);
}

TEST(Http3Limits, RetryThresholdZeroMeansAlways) {
  LoadResult r = load(with_limits("  quic_retry_threshold: 0\n"));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty()) << ::testing::PrintToString(all_messages(r));
  EXPECT_EQ(c.limits.quic_retry_threshold, 0u);
}

TEST(Http3Limits, ConnectionWindowBelowStreamWindow) {
  EXPECT_EQ(error(with_limits("  h3_stream_window: 1MiB\n  h3_connection_window: 512KiB\n")),
            "t.yaml:3:25: \"h3_connection_window\" must be at least \"h3_stream_window\" (1048576 "
            "bytes)");
  // In the other order in the file: still reported at the connection window.
  EXPECT_EQ(error(with_limits("  h3_connection_window: 512KiB\n  h3_stream_window: 1MiB\n")),
            "t.yaml:2:25: \"h3_connection_window\" must be at least \"h3_stream_window\" (1048576 "
            "bytes)");
  // Only the connection window written, below the default stream window (256 KiB).
  EXPECT_EQ(error(with_limits("  h3_connection_window: 128KiB\n")),
            "t.yaml:2:25: \"h3_connection_window\" must be at least \"h3_stream_window\" (262144 "
            "bytes)");
  // Only the stream window written, above the default connection window (1 MiB): reported at
  // the stream window, the only one written.
  const std::string e = error(with_limits("  h3_stream_window: 32MiB\n"));
  EXPECT_EQ(e.rfind("t.yaml:2:21: ", 0), 0u) << e;
  EXPECT_NE(e.find("h3_connection_window"), std::string::npos) << e;
  EXPECT_NE(e.find("h3_stream_window"), std::string::npos) << e;
}

TEST(Http3Limits, Errors) {
  EXPECT_EQ(error(with_limits("  h3_max_concurrent_streams: 0\n")),
            "t.yaml:2:30: \"h3_max_concurrent_streams\" must be an integer from 1 to 10000, got "
            "\"0\"");
  EXPECT_EQ(error(with_limits("  h3_max_concurrent_streams: 10001\n")),
            "t.yaml:2:30: \"h3_max_concurrent_streams\" must be an integer from 1 to 10000, got "
            "\"10001\"");
  EXPECT_EQ(error(with_limits("  h3_stream_window: 8KiB\n")),
            "t.yaml:2:21: \"h3_stream_window\" must be from 16384 to 1073741824 bytes, got "
            "\"8KiB\"");
  EXPECT_EQ(error(with_limits("  h3_stream_window: 2GiB\n  h3_connection_window: 4GiB\n")),
            "t.yaml:2:21: \"h3_stream_window\" must be from 16384 to 1073741824 bytes, got "
            "\"2GiB\"");
  EXPECT_EQ(error(with_limits("  h3_connection_window: 8GiB\n")),
            "t.yaml:2:25: \"h3_connection_window\" must be from 16384 to 4294967296 bytes, got "
            "\"8GiB\"");
  EXPECT_EQ(error(with_limits("  quic_retry_threshold: 1000001\n")),
            "t.yaml:2:25: \"quic_retry_threshold\" must be an integer from 0 to 1000000, got "
            "\"1000001\"");
  EXPECT_EQ(error(with_limits("  quic_retry_threshold: -1\n")),
            "t.yaml:2:25: \"quic_retry_threshold\" must be an integer from 0 to 1000000, got "
            "\"-1\"");
  EXPECT_EQ(error(with_limits("  quic_idle_timeout: 30\n")),
            "t.yaml:2:22: \"quic_idle_timeout\": duration needs a unit, e.g. 2s");
  EXPECT_EQ(error(with_limits("  quic_idle_timeout: 0s\n")),
            "t.yaml:2:22: \"quic_idle_timeout\" must be longer than 0");
  const std::string e = error(with_limits("  quic_retry_treshold: 5\n"));
  EXPECT_EQ(e.rfind("t.yaml:2:3: unknown key \"quic_retry_treshold\" in limits", 0), 0u) << e;
}

}  // namespace
}  // namespace weir::config
