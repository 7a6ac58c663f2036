// `ocsp:` of listener certificates and of the listener's `tls:` (the certificates' default).
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "config/loader.hpp"
#include "loader_test_util.hpp"

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)

// A TLS listener whose `tls:` is at line 4, its certificates' lines (`certs`) from line 6 and
// `extra` (inside the tls map) after them.
std::string with_certs(std::string_view certs, std::string_view extra = "") {
  return yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8443
    tls:
      certificates:
)") + std::string(certs) +
         std::string(extra) + yaml(R"(
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
}

TEST(Ocsp, PerCertificateFileAndFetch) {
  LoadResult r = load(with_certs(R"(        - cert: /etc/weir/a.pem
          key: /etc/weir/a.key
          ocsp: { file: /etc/weir/a.ocsp }
        - cert: /etc/weir/b.pem
          key: /etc/weir/b.key
          ocsp:
            fetch: true
        - cert: /etc/weir/c.pem
          key: /etc/weir/c.key
)"));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.diagnostics.empty());
  const ListenerTls& tls = *c.listeners.at(0).tls;
  EXPECT_FALSE(tls.ocsp.has_value());
  ASSERT_EQ(tls.certificates.size(), 3u);
  const auto& a = tls.certificates[0].ocsp;
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->file, "/etc/weir/a.ocsp");
  EXPECT_FALSE(a->fetch);
  EXPECT_EQ(a->pos.file, "t.yaml");
  EXPECT_EQ(a->pos.line, 8);  // the `ocsp:` key
  EXPECT_EQ(a->pos.col, 11);
  const auto& b = tls.certificates[1].ocsp;
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->file.empty());
  EXPECT_TRUE(b->fetch);
  EXPECT_EQ(b->pos.line, 11);
  EXPECT_FALSE(tls.certificates[2].ocsp.has_value());
}

TEST(Ocsp, ListenerDefaultAppliesToCertificatesWithoutTheirOwn) {
  LoadResult r = load(with_certs(R"(        - cert: /etc/weir/a.pem
          key: /etc/weir/a.key
        - cert: /etc/weir/b.pem
          key: /etc/weir/b.key
          ocsp: { fetch: false }
        - cert: /etc/weir/c.pem
          key: /etc/weir/c.key
          ocsp: { file: c.ocsp }
)",
                                 "      ocsp: { fetch: true }\n"));
  const Config& c = ok(r);
  ASSERT_TRUE(r.ok());
  const ListenerTls& tls = *c.listeners.at(0).tls;
  ASSERT_TRUE(tls.ocsp.has_value());
  EXPECT_TRUE(tls.ocsp->fetch);
  EXPECT_EQ(tls.ocsp->pos.line, 14);
  EXPECT_EQ(tls.ocsp->pos.col, 7);
  ASSERT_TRUE(tls.certificates[0].ocsp.has_value());  // inherited, pointing at the listener's key
  EXPECT_TRUE(tls.certificates[0].ocsp->fetch);
  EXPECT_EQ(tls.certificates[0].ocsp->pos.line, 14);
  ASSERT_TRUE(tls.certificates[1].ocsp.has_value());  // its own opt-out
  EXPECT_FALSE(tls.certificates[1].ocsp->fetch);
  EXPECT_TRUE(tls.certificates[1].ocsp->file.empty());
  ASSERT_TRUE(tls.certificates[2].ocsp.has_value());  // its own file
  EXPECT_FALSE(tls.certificates[2].ocsp->fetch);
  EXPECT_EQ(tls.certificates[2].ocsp->file, "c.ocsp");  // no config folder in load_config_string
}

TEST(Ocsp, Errors) {
  const std::string cert = "        - cert: /etc/weir/a.pem\n          key: /etc/weir/a.key\n";
  EXPECT_EQ(error(with_certs(cert + "          ocsp: {}\n")),
            "t.yaml:8:17: \"ocsp\" needs \"file\" (a DER OCSP response) or \"fetch: true\"");
  EXPECT_EQ(error(with_certs(cert + "          ocsp: { file: a.der, fetch: true }\n")),
            "t.yaml:8:17: \"ocsp\" takes either \"file\" or \"fetch: true\", not both");
  EXPECT_EQ(error(with_certs(cert + "          ocsp: { fetch: yes }\n")),
            "t.yaml:8:26: \"fetch\" must be true or false, got \"yes\"");
  EXPECT_EQ(error(with_certs(cert + "          ocsp: { file: \"\" }\n")),
            "t.yaml:8:25: \"file\" must not be empty");
  auto unknown = errors(with_certs(cert + "          ocsp: { url: http://x/ }\n"));
  ASSERT_EQ(unknown.size(), 2u);  // and "needs file or fetch" at the map
  EXPECT_EQ(unknown[1].rfind("t.yaml:8:19: unknown key \"url\" in certificate ocsp", 0), 0u)
      << unknown[1];
  EXPECT_EQ(
      error(with_certs(cert, "      ocsp: { file: a.der }\n")),
      "t.yaml:8:15: an OCSP response file is for one certificate: set \"ocsp: { file: ... }\" "
      "on that certificate (the listener's \"ocsp\" takes only \"fetch\")");
  EXPECT_EQ(error(with_certs(cert + "          ocsp: true\n")).rfind("t.yaml:8:17: ", 0), 0u);
}

}  // namespace
}  // namespace weir::config
