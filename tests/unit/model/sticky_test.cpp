// Sticky-session tokens (src/model/sticky.*) and the tables build_snapshot makes of them: a
// token is HMAC-SHA256(key, backend "\n" server) cut to 128 bits, in hex. It names its server
// without revealing it (no name, no address), cannot be forged or altered, is the same for a
// server in every snapshot built with the same key (reloads), differs under another key (a
// restart without secret_file), and the Set-Cookie value carries the security attributes.
#include "model/sticky.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "model/snapshot.hpp"
#include "model_test_util.hpp"

namespace weir::model {
namespace {

using test::build;
using test::server_named;

constexpr std::string_view kKey = "test-secret-key-0123456789abcdef";

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// A table for servers "a", "b", "c" of backend "web" under kKey.
StickyTable table_abc() {
  StickyTable t;
  t.cookie = "srv";
  for (const char* s : {"a", "b", "c"})
    t.tokens.push_back(sticky_token(kKey, "web", s));
  return t;
}

// A secret file in the temp folder, removed at the end of the test.
class SecretFile {
 public:
  explicit SecretFile(std::string_view contents) {
    char name[] = "/tmp/weir_sticky_secret_XXXXXX";
    int fd = ::mkstemp(name);
    EXPECT_GE(fd, 0);
    if (fd >= 0) ::close(fd);
    path_ = name;
    std::ofstream(path_) << contents;
  }
  ~SecretFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A config with one backend "web" whose servers are `servers` (YAML list items, indented by 6),
// sticky by cookie "srv", with `sticky_extra` added to the sticky map.
std::string sticky_config(std::string_view servers, std::string_view sticky_extra = "") {
  std::string y =
      "listeners:\n"
      "  - name: main\n"
      "    listen: 127.0.0.1:18080\n"
      "    backend: web\n"
      "backends:\n"
      "  - name: web\n"
      "    sticky: { cookie: srv";
  y += sticky_extra;
  y += " }\n    servers:\n";
  y += servers;
  return y;
}

constexpr std::string_view kTwoServers =
    "      - { name: a, address: 127.0.0.1:9001 }\n"
    "      - { name: b, address: 127.0.0.1:9002 }\n";

// ---------------------------------------------------------------------------------------------
// The token

TEST(StickyToken, IsTheFirst128BitsOfTheHmacInLowerHex) {
  // Known answers: printf 'web\na' | openssl dgst -sha256 -hmac test-secret-key-0123456789abcdef
  EXPECT_EQ(sticky_token(kKey, "web", "a"), "b7c1a0630119d9bd528adaa31d9acb36");
  EXPECT_EQ(sticky_token(kKey, "web", "b"), "2d7afbc5a9112134c82f3cb5c969ba24");
}

// Nothing but 32 hex digits, whatever the names: a cookie shows no name and no address.
TEST(StickyToken, Is32LowerHexDigitsWhateverTheNames) {
  for (std::string_view server : {"a", "web-1", "db.internal", "10.0.0.7", ""}) {
    std::string t = sticky_token(kKey, "web", server);
    EXPECT_EQ(t.size(), 32u) << server;
    EXPECT_TRUE(is_lower_hex(t)) << t;
  }
  EXPECT_EQ(sticky_token("", "", "").size(), 32u);
}

TEST(StickyToken, DiffersByServerBackendAndKey) {
  std::set<std::string> seen;
  for (std::string_view key : {kKey, std::string_view("another-key-of-32-bytes-xxxxxxxxx")}) {
    for (std::string_view backend : {"web", "api"}) {
      for (std::string_view server : {"a", "b", "web-1", "web-2"}) {
        EXPECT_TRUE(seen.insert(sticky_token(key, backend, server)).second)
            << key << " " << backend << " " << server;
      }
    }
  }
  EXPECT_EQ(seen.size(), 16u);
}

TEST(StickyToken, SeparatesBackendFromServer) {
  // "ab" + "c" and "a" + "bc" are different servers: the separator keeps them apart.
  EXPECT_NE(sticky_token(kKey, "ab", "c"), sticky_token(kKey, "a", "bc"));
}

TEST(StickyToken, IsAFunctionOfItsInputsOnly) {
  EXPECT_EQ(sticky_token(kKey, "web", "a"), sticky_token(kKey, "web", "a"));
  std::string key_copy(kKey);
  EXPECT_EQ(sticky_token(key_copy, "web", "a"), sticky_token(kKey, "web", "a"));
}

TEST(StickyKey, RandomKeyIs32FreshBytes) {
  std::string k1 = random_key();
  std::string k2 = random_key();
  EXPECT_EQ(k1.size(), 32u);
  EXPECT_EQ(k2.size(), 32u);
  EXPECT_NE(k1, k2);
  EXPECT_NE(k1, std::string(32, '\0'));
}

// ---------------------------------------------------------------------------------------------
// The table: find

TEST(StickyTable, FindsEveryServerByItsToken) {
  StickyTable t = table_abc();
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(t.find(t.tokens[static_cast<size_t>(i)]), i);
}

TEST(StickyTable, RejectsEveryAlteredToken) {
  StickyTable t = table_abc();
  const std::string good = t.tokens[1];
  // One digit changed, at every position.
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = bad[i] == '0' ? '1' : '0';
    EXPECT_EQ(t.find(bad), -1) << bad;
  }
  // Cut short, at every length.
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_EQ(t.find(good.substr(0, n)), -1) << n;
  // Longer, padded, or in another case.
  EXPECT_EQ(t.find(good + "0"), -1);
  EXPECT_EQ(t.find(" " + good), -1);
  EXPECT_EQ(t.find(good + " "), -1);
  std::string upper = good;
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  ASSERT_NE(upper, good);
  EXPECT_EQ(t.find(upper), -1);
}

TEST(StickyTable, RejectsGarbageAndForeignTokens) {
  StickyTable t = table_abc();
  for (std::string_view bad :
       {"", "0", "a", "web", "127.0.0.1:9001", "00000000000000000000000000000000",
        "ffffffffffffffffffffffffffffffff", "gggggggggggggggggggggggggggggggg"}) {
    EXPECT_EQ(t.find(bad), -1) << bad;
  }
  // Another backend's server of the same name, the same server under another key.
  EXPECT_EQ(t.find(sticky_token(kKey, "api", "a")), -1);
  EXPECT_EQ(t.find(sticky_token("another-key-of-32-bytes-xxxxxxxxx", "web", "a")), -1);
  // A NUL byte in the middle of an otherwise valid token.
  std::string nul = t.tokens[0];
  nul[5] = '\0';
  EXPECT_EQ(t.find(nul), -1);
  // An empty table knows nothing.
  EXPECT_EQ(StickyTable{}.find(t.tokens[0]), -1);
}

// ---------------------------------------------------------------------------------------------
// The table: the Set-Cookie value

TEST(StickyCookie, CarriesTheTokenAndTheSecurityAttributes) {
  StickyTable t = table_abc();
  std::string out = "left over";
  t.cookie_value(2, false, out);
  EXPECT_EQ(out, "srv=" + t.tokens[2] + "; Path=/; HttpOnly; SameSite=Lax");
  t.cookie_value(0, true, out);
  EXPECT_EQ(out, "srv=" + t.tokens[0] + "; Path=/; HttpOnly; SameSite=Lax; Secure");
}

TEST(StickyCookie, MaxAgeInWholeSeconds) {
  StickyTable t = table_abc();
  t.max_age = std::chrono::hours(1);
  std::string out;
  t.cookie_value(1, true, out);
  EXPECT_EQ(out, "srv=" + t.tokens[1] + "; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600; Secure");
  t.max_age = std::chrono::milliseconds(90500);  // rounded up: never shorter than configured
  t.cookie_value(1, false, out);
  EXPECT_EQ(out, "srv=" + t.tokens[1] + "; Path=/; HttpOnly; SameSite=Lax; Max-Age=91");
}

TEST(StickyCookie, RoundTripsThroughTheCookieValue) {
  StickyTable t = table_abc();
  std::string out;
  for (int i = 0; i < 3; ++i) {
    t.cookie_value(i, true, out);
    ASSERT_TRUE(out.starts_with("srv="));
    std::string value = out.substr(4, out.find(';') - 4);
    EXPECT_EQ(t.find(value), i) << out;
  }
}

// A sticky max_age under one second rounds up: "Max-Age=0" would tell the browser to delete
// the cookie at once, and stickiness would silently never work.
TEST(StickyCookie, SubSecondMaxAgeDoesNotDeleteTheCookie) {
  config::LoadResult r =
      config::load_config_string(sticky_config(kTwoServers, ", max_age: 500ms"), "t.yaml");
  ASSERT_TRUE(r.ok());
  ServerRegistry registry;
  SnapshotPtr snap = build(r.config, registry);
  ASSERT_TRUE(snap);
  ASSERT_TRUE(snap->backends[0].sticky);
  std::string out;
  snap->backends[0].sticky->cookie_value(0, false, out);
  EXPECT_NE(out.find("; Max-Age=1"), std::string::npos) << out;  // rounded up
}

// ---------------------------------------------------------------------------------------------
// Tables in snapshots

TEST(StickySnapshot, OneTokenPerServerInServerOrder) {
  ServerRegistry registry;
  SnapshotPtr snap = build(sticky_config(kTwoServers, ", max_age: 2h"), registry);
  ASSERT_TRUE(snap);
  const BackendRuntime& b = snap->backends[0];
  ASSERT_TRUE(b.sticky);
  EXPECT_EQ(b.sticky->cookie, "srv");
  ASSERT_TRUE(b.sticky->max_age);
  EXPECT_EQ(*b.sticky->max_age, std::chrono::hours(2));
  ASSERT_EQ(b.sticky->tokens.size(), b.servers.size());
  for (size_t i = 0; i < b.servers.size(); ++i) {
    const std::string& tok = b.sticky->tokens[i];
    EXPECT_EQ(tok.size(), 32u);
    EXPECT_TRUE(is_lower_hex(tok)) << tok;
    EXPECT_EQ(b.sticky->find(tok), static_cast<int>(i));
  }
  EXPECT_NE(b.sticky->tokens[0], b.sticky->tokens[1]);
  // The key is the registry's, made once per process.
  EXPECT_EQ(b.sticky->tokens[0], sticky_token(registry.process_sticky_key(), "web", "a"));
  EXPECT_EQ(b.sticky->tokens[1], sticky_token(registry.process_sticky_key(), "web", "b"));
}

TEST(StickySnapshot, NoTableWithoutSticky) {
  ServerRegistry registry;
  SnapshotPtr snap = build(R"(
listeners:
  - { name: main, listen: 127.0.0.1:18080, backend: web }
backends:
  - name: web
    servers: [{ name: a, address: 127.0.0.1:9001 }]
)",
                           registry);
  ASSERT_TRUE(snap);
  EXPECT_FALSE(snap->backends[0].sticky);
}

TEST(StickySnapshot, ProcessKeyIsMadeOnceAndIsRandom) {
  ServerRegistry r1, r2;
  const std::string k1 = r1.process_sticky_key();
  EXPECT_EQ(k1.size(), 32u);
  EXPECT_EQ(r1.process_sticky_key(), k1);
  EXPECT_NE(r2.process_sticky_key(), k1);
}

TEST(StickySnapshot, TokensSurviveAReloadWithTheSameProcessKey) {
  ServerRegistry registry;
  SnapshotPtr s1 = build(sticky_config(kTwoServers), registry);
  // The reload reorders the servers, moves "a" to another address and adds "c".
  SnapshotPtr s2 = build(sticky_config("      - { name: c, address: 127.0.0.1:9003 }\n"
                                       "      - { name: b, address: 127.0.0.1:9002 }\n"
                                       "      - { name: a, address: 127.0.0.2:9101 }\n"),
                         registry);
  ASSERT_TRUE(s1 && s2);
  const BackendRuntime& b1 = s1->backends[0];
  const BackendRuntime& b2 = s2->backends[0];
  for (std::string_view name : {"a", "b"}) {
    ServerId i1 = server_named(b1, name), i2 = server_named(b2, name);
    ASSERT_TRUE(b1.has(i1) && b2.has(i2)) << name;
    const std::string& old_token = b1.sticky->tokens[i1.index()];
    // A cookie set before the reload still names the same server after it.
    EXPECT_EQ(b2.sticky->tokens[i2.index()], old_token) << name;
    EXPECT_EQ(b2.sticky->find(old_token), i2.as_int()) << name;
  }
}

TEST(StickySnapshot, ARestartWithoutSecretFileForgetsTheCookies) {
  ServerRegistry before, after;  // a registry per process
  SnapshotPtr s1 = build(sticky_config(kTwoServers), before);
  SnapshotPtr s2 = build(sticky_config(kTwoServers), after);
  ASSERT_TRUE(s1 && s2);
  for (const std::string& tok : s1->backends[0].sticky->tokens)
    EXPECT_EQ(s2->backends[0].sticky->find(tok), -1);
}

TEST(StickySnapshot, ASecretFileGivesTheSameTokensEverywhere) {
  SecretFile secret("shared-secret-of-weir-instances\n");
  std::string cfg = sticky_config(kTwoServers, ", secret_file: " + secret.path());
  ServerRegistry instance1, instance2;
  SnapshotPtr s1 = build(cfg, instance1);
  SnapshotPtr s2 = build(cfg, instance2);
  ASSERT_TRUE(s1 && s2);
  ASSERT_TRUE(s1->backends[0].sticky && s2->backends[0].sticky);
  EXPECT_EQ(s1->backends[0].sticky->tokens, s2->backends[0].sticky->tokens);
  // The key is the file's contents without the trailing newline.
  EXPECT_EQ(s1->backends[0].sticky->tokens[0],
            sticky_token("shared-secret-of-weir-instances", "web", "a"));
  // Another secret, other tokens.
  SecretFile other("another-secret-of-weir-instances");
  ServerRegistry instance3;
  SnapshotPtr s3 = build(sticky_config(kTwoServers, ", secret_file: " + other.path()), instance3);
  ASSERT_TRUE(s3 && s3->backends[0].sticky);
  for (const std::string& tok : s1->backends[0].sticky->tokens)
    EXPECT_EQ(s3->backends[0].sticky->find(tok), -1);
}

TEST(StickySnapshot, TokensDoNotDependOnTheAddress) {
  SecretFile secret("shared-secret-of-weir-instances");
  ServerRegistry r1, r2;
  SnapshotPtr s1 = build(sticky_config(kTwoServers, ", secret_file: " + secret.path()), r1);
  SnapshotPtr s2 = build(sticky_config("      - { name: a, address: 127.0.0.9:7001 }\n"
                                       "      - { name: b, address: 127.0.0.9:7002 }\n",
                                       ", secret_file: " + secret.path()),
                         r2);
  ASSERT_TRUE(s1 && s2);
  EXPECT_EQ(s1->backends[0].sticky->tokens, s2->backends[0].sticky->tokens);
  EXPECT_EQ(s1->backends[0].sticky->tokens[1],
            sticky_token("shared-secret-of-weir-instances", "web", "b"));
}

}  // namespace
}  // namespace weir::model
