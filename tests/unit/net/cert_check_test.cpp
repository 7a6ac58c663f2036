// check_certificates: every listener certificate and key, every server CA file.
#include <gtest/gtest.h>

#include "net/tls/tls.hpp"
#include "tls_test_util.hpp"

namespace weir::net::tls {
namespace {

using namespace weir::net::tls::test;  // NOLINT(google-build-using-namespace)

config::Config with_certs(std::vector<config::TlsCertificate> list) {
  config::Config cfg;
  config::Listener l;
  l.name = "https";
  l.tls.emplace();
  l.tls->certificates = std::move(list);
  cfg.listeners.push_back(std::move(l));
  cfg.listeners.push_back(config::Listener{});  // a plain listener: nothing to check
  return cfg;
}

std::vector<std::string> check(const config::Config& cfg, long offset = 0) {
  std::vector<std::string> out;
  auto now = std::chrono::system_clock::from_time_t(certs().at + offset);
  for (const auto& d : check_certificates(cfg, now))
    out.push_back(d.format());
  return out;
}

using Lines = std::vector<std::string>;

TEST(CertCheck, GoodCertificates) {
  const Certs& c = certs();
  EXPECT_EQ(check(with_certs({cert_entry(c.rsa_cert, c.rsa_key), cert_entry(c.ec_cert, c.ec_key),
                              cert_entry(c.cn_cert, c.cn_key)})),
            Lines{});
  EXPECT_EQ(check(config::Config{}), Lines{});
}

TEST(CertCheck, MissingFiles) {
  const Certs& c = certs();
  std::string cert = c.path("nope.pem"), key = c.path("nope.key");
  EXPECT_EQ(check(with_certs({cert_entry(c.rsa_cert, c.rsa_key), cert_entry(cert, key, 7)})),
            (Lines{"t.yaml:7:9: cannot read certificate " + cert + ": No such file or directory",
                   "t.yaml:7:9: cannot read key " + key + ": No such file or directory"}));
  EXPECT_EQ(check(with_certs({cert_entry(c.dir, c.rsa_key, 3)})),
            Lines{"t.yaml:3:9: cannot read certificate " + c.dir + ": Is a directory"});
}

TEST(CertCheck, NotPem) {
  const Certs& c = certs();
  EXPECT_EQ(check(with_certs({cert_entry(c.garbage, c.garbage, 4)})),
            (Lines{"t.yaml:4:9: no PEM certificate in " + c.garbage,
                   "t.yaml:4:9: no PEM private key in " + c.garbage}));
  // A key where the certificate should be, and the other way round.
  EXPECT_EQ(check(with_certs({cert_entry(c.ec_key, c.ec_cert, 5)})),
            (Lines{"t.yaml:5:9: no PEM certificate in " + c.ec_key,
                   "t.yaml:5:9: no PEM private key in " + c.ec_cert}));
}

TEST(CertCheck, KeyMismatch) {
  const Certs& c = certs();
  EXPECT_EQ(check(with_certs({cert_entry(c.ec_cert, c.stray_key, 2)})),
            Lines{"t.yaml:2:9: key " + c.stray_key + " does not match certificate " + c.ec_cert});
  EXPECT_EQ(check(with_certs({cert_entry(c.rsa_cert, c.ec_key, 3)})),
            Lines{"t.yaml:3:9: key " + c.ec_key + " does not match certificate " + c.rsa_cert});
}

TEST(CertCheck, Expired) {
  const Certs& c = certs();
  EXPECT_EQ(check(with_certs({cert_entry(c.expired_cert, c.expired_key, 6)})),
            Lines{"t.yaml:6:9: certificate " + c.expired_cert + " expired on " + day(-kDay)});
  // A valid certificate checked two years from now.
  EXPECT_EQ(check(with_certs({cert_entry(c.ec_cert, c.ec_key, 6)}), 2 * 365 * kDay),
            Lines{"t.yaml:6:9: certificate " + c.ec_cert + " expired on " + day(365 * kDay)});
}

TEST(CertCheck, NotYetValid) {
  const Certs& c = certs();
  EXPECT_EQ(
      check(with_certs({cert_entry(c.future_cert, c.future_key, 8)})),
      Lines{"t.yaml:8:9: certificate " + c.future_cert + " is not valid before " + day(2 * kDay)});
}

TEST(CertCheck, ExpiringSoonIsAWarning) {
  const Certs& c = certs();
  auto cfg = with_certs({cert_entry(c.expiring_cert, c.expiring_key, 9)});
  auto diags = check_certificates(cfg, std::chrono::system_clock::from_time_t(certs().at));
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_TRUE(diags[0].warning);
  EXPECT_EQ(diags[0].pos.line, 9);
  EXPECT_EQ(diags[0].format(), "t.yaml:9:9: warning: certificate " + c.expiring_cert +
                                   " expires on " + day(3 * kDay) + " (in 3 days)");
  EXPECT_EQ(check(cfg, 2 * kDay + 1), Lines{"t.yaml:9:9: warning: certificate " + c.expiring_cert +
                                            " expires on " + day(3 * kDay) + " (in 1 day)"});
  // 14 days ahead of an ordinary certificate: nothing.
  EXPECT_EQ(check(with_certs({cert_entry(c.ec_cert, c.ec_key)}), 365 * kDay - 15 * kDay), Lines{});
  EXPECT_EQ(check(with_certs({cert_entry(c.ec_cert, c.ec_key)}), 365 * kDay - 13 * kDay),
            Lines{"t.yaml:1:9: warning: certificate " + c.ec_cert + " expires on " +
                  day(365 * kDay) + " (in 13 days)"});
}

TEST(CertCheck, ServerCaFiles) {
  const Certs& c = certs();
  config::Config cfg;
  config::Backend b;
  b.name = "web";
  auto server = [](const std::string& ca, int line) {
    config::Server s;
    s.tls.emplace();
    s.tls->ca = ca;
    s.tls->pos = config::SourcePos{"t.yaml", line, 9};
    return s;
  };
  b.servers.push_back(server(c.ca, 10));
  b.servers.push_back(server("", 11));  // the system's store: not checked here
  b.servers.push_back(server(c.path("no-ca.pem"), 12));
  b.servers.push_back(server(c.garbage, 13));
  b.servers.push_back(config::Server{});  // plain
  cfg.backends.push_back(b);
  auto lines = check(cfg);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "t.yaml:12:9: cannot load CA file " + c.path("no-ca.pem") +
                          ": No such file or directory");
  EXPECT_EQ(lines[1].rfind("t.yaml:13:9: cannot load CA file " + c.garbage + ": ", 0), 0u)
      << lines[1];
}

TEST(CertCheck, ErrorsAndWarningsTogether) {
  const Certs& c = certs();
  auto diags = check_certificates(with_certs({cert_entry(c.expiring_cert, c.expiring_key, 1),
                                              cert_entry(c.expired_cert, c.expired_key, 2)}),
                                  std::chrono::system_clock::from_time_t(c.at));
  ASSERT_EQ(diags.size(), 2u);
  EXPECT_TRUE(diags[0].warning);
  EXPECT_FALSE(diags[1].warning);
  EXPECT_EQ(diags[1].pos.line, 2);
}

}  // namespace
}  // namespace weir::net::tls
