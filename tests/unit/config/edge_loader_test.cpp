// The edge keys: `compression` of listeners and routes.
#include <gtest/gtest.h>

#include "config/loader.hpp"
#include "loader_test_util.hpp"

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)

std::string listener_with(std::string_view listener_extra, std::string_view route_extra = "") {
  return yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
)") + std::string(listener_extra) +
         yaml(R"(
    routes:
      - match: { path_prefix: / }
        backend: web
)") + std::string(route_extra) +
         yaml(R"(
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
}

TEST(Compression, DefaultsAsEdgeMdSaysThem) {
  const Config& c = ok(load(listener_with("    compression: true\n")));
  ASSERT_TRUE(c.listeners[0].compression);
  const Compression& z = *c.listeners[0].compression;
  EXPECT_TRUE(z.enabled);
  EXPECT_EQ(z.algorithms, (std::vector<std::string>{"zstd", "br", "gzip"}));
  EXPECT_EQ(z.min_size, 1024u);
  EXPECT_EQ(z.types.size(), 7u);
  EXPECT_EQ(z.gzip_level, 5);
  EXPECT_EQ(z.br_level, 4);
  EXPECT_EQ(z.zstd_level, 3);
  EXPECT_EQ(z.pos.line, 4);
  EXPECT_FALSE(c.listeners[0].routes[0].compression);
}

TEST(Compression, EveryKey) {
  const Config& c = ok(load(listener_with(R"(    compression:
      algorithms: [GZIP, br]
      min_size: 2KiB
      types: [text/*, Application/JSON]
      levels: { gzip: 9, br: 6, zstd: 19 }
)")));
  const Compression& z = *c.listeners[0].compression;
  EXPECT_EQ(z.algorithms, (std::vector<std::string>{"gzip", "br"}));
  EXPECT_EQ(z.min_size, 2048u);
  EXPECT_EQ(z.types, (std::vector<std::string>{"text/*", "application/json"}));
  EXPECT_EQ(z.gzip_level, 9);
  EXPECT_EQ(z.br_level, 6);
  EXPECT_EQ(z.zstd_level, 19);
}

TEST(Compression, RouteOwnOrOff) {
  const Config& c =
      ok(load(listener_with("    compression: {}\n", "        compression: false\n")));
  ASSERT_TRUE(c.listeners[0].routes[0].compression);
  EXPECT_FALSE(c.listeners[0].routes[0].compression->enabled);
  const Config& d = ok(load(listener_with("", "        compression: { algorithms: [zstd] }\n")));
  EXPECT_FALSE(d.listeners[0].compression);
  EXPECT_EQ(d.listeners[0].routes[0].compression->algorithms, std::vector<std::string>{"zstd"});
  // `false` on a listener is the same as leaving it out.
  const Config& e = ok(load(listener_with("    compression: false\n")));
  EXPECT_FALSE(e.listeners[0].compression);
}

TEST(Compression, Errors) {
  EXPECT_EQ(error(listener_with("    compression: { algorithms: [lzma] }\n")),
            "t.yaml:4:33: unknown compression algorithm \"lzma\" (known: zstd, br, gzip)");
  EXPECT_EQ(error(listener_with("    compression: { algorithms: [gzip, gzip] }\n")),
            "t.yaml:4:39: compression algorithm \"gzip\" listed twice");
  EXPECT_EQ(error(listener_with("    compression: { algorithms: [] }\n")),
            "t.yaml:4:32: \"algorithms\" needs at least one of zstd, br, gzip");
  EXPECT_EQ(error(listener_with("    compression: { types: [text] }\n")),
            "t.yaml:4:28: \"types\" entries are media types such as text/html or text/*, "
            "without parameters, got \"text\"");
  EXPECT_EQ(error(listener_with("    compression: { types: [\"text/html; charset=utf-8\"] }\n")),
            "t.yaml:4:28: \"types\" entries are media types such as text/html or text/*, "
            "without parameters, got \"text/html; charset=utf-8\"");
  EXPECT_EQ(error(listener_with("    compression: { levels: { br: 9 } }\n")),
            "t.yaml:4:34: br level 9 takes 9 to 33 MiB of memory per response being compressed "
            "(level 4 takes 1.3 MiB): use 0 to 6");
  EXPECT_NE(error(listener_with("    compression: { levels: { gzip: 10 } }\n")).find("t.yaml:4:36"),
            std::string::npos);
  EXPECT_NE(error(listener_with("    compression: { level: 5 }\n")).find("unknown key"),
            std::string::npos);
  EXPECT_NE(error(listener_with("    compression: maybe\n")).find("t.yaml:4:18"),
            std::string::npos);
}

TEST(Compression, NotOnTcpListeners) {
  EXPECT_EQ(error(yaml(R"(
listeners:
  - name: db
    mode: tcp
    listen: 127.0.0.1:5432
    backend: db
    compression: true
backends:
  - name: db
    servers:
      - address: 127.0.0.1:5433
)")),
            "t.yaml:6:5: \"compression\" is for http listeners: a tcp listener does not read the "
            "bytes it forwards");
}

}  // namespace
}  // namespace weir::config

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)

std::string with_cache(std::string_view caches, std::string_view route_extra) {
  return yaml(R"(
caches:
)") + std::string(caches) +
         yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: { path_prefix: / }
)") + std::string(route_extra) +
         yaml(R"(
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
}

TEST(Caches, NamedAndResolved) {
  const Config& c =
      ok(load(with_cache("  - name: edge\n    memory: 64MiB\n    max_object: 1MiB\n"
                         "  - name: other\n",
                         "        cache: other\n        backend: web\n")));
  ASSERT_EQ(c.caches.size(), 2u);
  EXPECT_EQ(c.caches[0].memory, 64u << 20);
  EXPECT_EQ(c.caches[0].max_object, 1u << 20);
  EXPECT_EQ(c.caches[1].memory, 256u << 20);  // the defaults of edge.md
  EXPECT_EQ(c.caches[1].max_object, 8u << 20);
  EXPECT_EQ(c.listeners[0].routes[0].cache, "other");
  EXPECT_EQ(c.listeners[0].routes[0].cache_index, 1u);
}

TEST(Caches, Errors) {
  EXPECT_EQ(error(with_cache("  - name: edge\n", "        cache: egde\n        backend: web\n")),
            "t.yaml:8:16: unknown cache \"egde\"; did you mean \"edge\"?");
  EXPECT_EQ(error(with_cache("  - name: edge\n  - name: edge\n",
                             "        cache: edge\n        backend: web\n")),
            "t.yaml:3:11: duplicate cache name \"edge\" (first at line 2)");
  EXPECT_EQ(error(with_cache("  - name: edge\n    memory: 1MiB\n    max_object: 2MiB\n",
                             "        cache: edge\n        backend: web\n")),
            "t.yaml:4:17: \"max_object\" is larger than the cache's \"memory\"");
  EXPECT_EQ(error(with_cache("  - name: edge\n",
                             "        cache: edge\n        respond: { status: 200 }\n")),
            "t.yaml:8:9: \"cache\" stores what a backend answers: the route needs \"backend\"");
}

TEST(Static, KeysAndErrors) {
  const Config& c = ok(load(yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: { path_prefix: /assets/ }
        static: { root: /tmp, strip_prefix: /assets/, index: home.html, precompressed: true }
)")));
  const auto& st = *c.listeners[0].routes[0].static_files;
  EXPECT_EQ(st.root, "/tmp");
  EXPECT_EQ(st.strip_prefix, "/assets");
  EXPECT_EQ(st.index, "home.html");
  EXPECT_TRUE(st.precompressed);
  EXPECT_FALSE(c.listeners[0].routes[0].forwards());
  auto static_error = [](std::string_view st) {
    return error(yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: { path_prefix: / }
)") +
                 "        static: " + std::string(st) + "\n");
  };
  EXPECT_EQ(static_error("{ root: /nonexistent-weir-root }"),
            "t.yaml:6:25: \"root\" \"/nonexistent-weir-root\": No such file or directory");
  EXPECT_EQ(static_error("{ root: /etc/hostname }"),
            "t.yaml:6:25: \"root\" \"/etc/hostname\" is not a directory");
  EXPECT_EQ(static_error("{ root: /tmp, index: ../x }"),
            "t.yaml:6:38: \"index\" is a file name such as index.html (no \"/\", not hidden), got "
            "\"../x\"");
  EXPECT_EQ(static_error("{ strip_prefix: /a }"), "t.yaml:6:17: static needs \"root\"");
  EXPECT_EQ(error(yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: { path_prefix: / }
        static: { root: /tmp }
        backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)")),
            "t.yaml:7:9: a route has one action only: \"backend\", \"redirect\", \"respond\" or "
            "\"static\"");
}

}  // namespace
}  // namespace weir::config
