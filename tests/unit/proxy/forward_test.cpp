#include "proxy/forward.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace weir::proxy {
namespace {

struct Parsed {
  std::string raw;
  std::vector<http::Header> storage = std::vector<http::Header>(100);
  http::RequestHead head;
  explicit Parsed(std::string r) : raw(std::move(r)) {
    auto res = http::parse_request(raw, head, storage, http::Limits{});
    EXPECT_EQ(res.status, http::ParseStatus::Done) << res.error_reason;
  }
};

std::string forward(const Parsed& p, RequestForward fwd) {
  std::string out;
  if (fwd.target.empty()) fwd.target = p.head.target;
  if (fwd.host.empty()) fwd.host = p.head.host;
  if (fwd.client_ip.empty()) fwd.client_ip = "10.1.2.3";
  build_request_head(p.head, fwd, out);
  return out;
}

TEST(Forward, DropsHopByHopAndConnectionNamedHeaders) {
  Parsed p(
      "GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
      "Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\nX-Keep: yes\r\n\r\n");
  std::string out = forward(p, {});
  EXPECT_EQ(out.find("X-Secret"), std::string::npos) << out;
  EXPECT_EQ(out.find("Keep-Alive"), std::string::npos);
  EXPECT_EQ(out.find("TE:"), std::string::npos);
  EXPECT_EQ(out.find("Proxy-Connection"), std::string::npos);
  EXPECT_EQ(out.find("Connection:"), std::string::npos);
  EXPECT_NE(out.find("X-Keep: yes\r\n"), std::string::npos);
  EXPECT_EQ(out.rfind("GET /a HTTP/1.1\r\nHost: h\r\n", 0), 0u);
}

TEST(Forward, ReplacesUntrustedForwardedHeaders) {
  Parsed p(
      "GET / HTTP/1.1\r\nHost: site\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
      "X-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\n\r\n");
  std::string out = forward(p, {});
  EXPECT_EQ(out.find("6.6.6.6"), std::string::npos) << out;
  EXPECT_EQ(out.find("evil"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-For: 10.1.2.3\r\n"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-Proto: http\r\n"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-Host: site\r\n"), std::string::npos);
}

TEST(Forward, TrustedProxyChainIsExtended) {
  Parsed p(
      "GET / HTTP/1.1\r\nHost: site\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\n\r\n");
  RequestForward f;
  f.trusted_client = true;
  std::string out = forward(p, f);
  EXPECT_NE(out.find("X-Forwarded-For: 1.1.1.1, 10.1.2.3\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("X-Forwarded-Proto: https\r\n"), std::string::npos);
  EXPECT_EQ(out.find("X-Forwarded-Proto: http\r\n"), std::string::npos);
}

TEST(Forward, RestatesFraming) {
  Parsed cl("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");
  EXPECT_NE(forward(cl, {}).find("Content-Length: 5\r\n"), std::string::npos);
  Parsed te("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  std::string out = forward(te, {});
  EXPECT_NE(out.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_EQ(out.find("Content-Length"), std::string::npos);
}

TEST(Forward, UpgradeOnlyWhenAsked) {
  Parsed p("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(forward(p, {}).find("Upgrade"), std::string::npos);
  RequestForward f;
  f.upgrade = true;
  std::string out = forward(p, f);
  EXPECT_NE(out.find("Connection: upgrade\r\nUpgrade: websocket\r\n"), std::string::npos) << out;
}

TEST(Forward, AbsoluteTargetSplit) {
  std::string_view origin, authority;
  split_absolute_target("http://Example.com:81/p?q=1", origin, authority);
  EXPECT_EQ(origin, "/p?q=1");
  EXPECT_EQ(authority, "Example.com:81");
  split_absolute_target("http://example.com", origin, authority);
  EXPECT_EQ(origin, "/");
  split_absolute_target("/plain?x", origin, authority);
  EXPECT_EQ(origin, "/plain?x");
  EXPECT_TRUE(authority.empty());
}

TEST(Forward, ResponseHeadFraming) {
  std::string raw =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n"
      "Server: app\r\n\r\n";
  std::vector<http::Header> storage(100);
  http::ResponseHead h;
  auto r = http::parse_response(raw, h, storage, http::Limits{}, http::Method::Get);
  ASSERT_EQ(r.status, http::ParseStatus::Done);
  std::string out;
  build_response_head(h, OutFraming::Chunked, false, false, out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nServer: app\r\nTransfer-Encoding: chunked\r\n\r\n");
  out.clear();
  build_response_head(h, OutFraming::Close, true, false, out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nServer: app\r\nConnection: close\r\n\r\n");
}

TEST(Forward, LocalResponse) {
  std::string out;
  build_local_response(503, "Service Unavailable\n", true, "Retry-After: 1\r\n", out);
  EXPECT_EQ(out,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\nService Unavailable\n");
}

}  // namespace
}  // namespace weir::proxy
