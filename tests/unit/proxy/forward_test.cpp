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
      "GET / HTTP/1.1\r\nHost: site\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: "
      "https\r\n\r\n");
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
  HeaderEdits edits;
  ResponseOut head;
  head.status = h.status;
  head.reason = h.reason;
  head.fields = h.headers;
  head.body = h.body;
  head.edits = &edits;
  std::string out;
  build_response_head(head, OutFraming::Chunked, false, false, out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nServer: app\r\nTransfer-Encoding: chunked\r\n\r\n");
  out.clear();
  build_response_head(head, OutFraming::Close, true, false, out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nServer: app\r\nConnection: close\r\n\r\n");
}

TEST(Forward, ResponseHeadEdits) {
  std::string raw =
      "HTTP/1.1 200 OK\r\nServer: app\r\nX-Internal: 1\r\nCache-Control: public\r\n"
      "Content-Length: 2\r\n\r\n";
  std::vector<http::Header> storage(100);
  http::ResponseHead h;
  ASSERT_EQ(http::parse_response(raw, h, storage, http::Limits{}, http::Method::Get).status,
            http::ParseStatus::Done);
  HeaderEdits edits;
  edits.remove("x-internal");              // case-insensitive
  edits.set("Cache-Control", "no-store");  // replaces the server's field
  edits.add("Via", "1.1 weir");
  edits.add("Via", "1.1 edge");  // adds keep their order
  ResponseOut head;
  head.status = 200;
  head.fields = h.headers;
  head.body = h.body;
  head.content_length = h.content_length;
  head.edits = &edits;
  std::string out;
  build_response_head(head, OutFraming::ContentLength, false, false, out);
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\nServer: app\r\nCache-Control: no-store\r\nVia: 1.1 weir\r\n"
            "Via: 1.1 edge\r\nContent-Length: 2\r\n\r\n");
}

TEST(Forward, LocalResponse) {
  HeaderEdits edits;
  edits.set("Content-Type", "text/plain");
  edits.set("Retry-After", "1");
  ResponseOut head;
  head.status = 503;
  head.local = true;
  head.local_body = "Service Unavailable\n";
  head.content_length = head.local_body.size();  // set by Exchange::answer (HEAD: no body)
  head.body = http::BodyKind::ContentLength;
  head.edits = &edits;
  std::string out;
  build_response_head(head, OutFraming::ContentLength, true, false, out);
  out.append(head.local_body);
  EXPECT_EQ(out,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n"
            "Content-Length: 20\r\nConnection: close\r\n\r\nService Unavailable\n");
}

TEST(Forward, RequestHeadEdits) {
  std::string raw = "GET /x HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\nX-Env: dev\r\n\r\n";
  std::vector<http::Header> storage(100);
  http::RequestHead req;
  ASSERT_EQ(http::parse_request(raw, req, storage, http::Limits{}).status, http::ParseStatus::Done);
  HeaderEdits edits;
  edits.remove("X-Debug");
  edits.set("X-Env", "prod");
  RequestForward fwd;
  fwd.target = "/x";
  fwd.host = "a";
  fwd.client_ip = "10.0.0.1";
  fwd.edits = &edits;
  std::string out;
  build_request_head(req, fwd, out);
  EXPECT_EQ(out.find("X-Debug"), std::string::npos);
  EXPECT_EQ(out.find("X-Env: dev"), std::string::npos);
  EXPECT_NE(out.find("X-Env: prod\r\n"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-For: 10.0.0.1\r\n"), std::string::npos);
}

}  // namespace
}  // namespace weir::proxy
