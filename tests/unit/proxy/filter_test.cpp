// build_filters: the filter chains a listener's config makes (redirect_https, tls.hsts, route
// header rules), and what those filters do to requests, upstream heads and responses.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "config/loader.hpp"
#include "http/parser.hpp"
#include "proxy/filter.hpp"
#include "proxy/head_edits.hpp"

namespace weir::proxy {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

config::ConfigPtr load(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  config::LoadResult r = config::load_config_string(yaml, "t.yaml");
  std::string diags;
  for (const auto& d : r.diagnostics)
    diags += "\n  " + d.format();
  EXPECT_TRUE(r.ok()) << diags;
  // These tests count and run the other filters: hide_server_headers (on by default) is
  // tested on its own below.
  if (r.config) {
    auto cfg = std::make_shared<config::Config>(*r.config);
    for (auto& l : cfg->listeners)
      l.hide_server_headers = false;
    return cfg;
  }
  return r.config;
}

Fields added(const HeaderEdits& e) {
  Fields out;
  e.for_each_added([&](std::string_view n, std::string_view v) { out.emplace_back(n, v); });
  return out;
}

Fields fields_of(const ResponseOut& r) {
  Fields out;
  r.for_each_field([&](std::string_view n, std::string_view v) { out.emplace_back(n, v); });
  return out;
}

// A request as the exchange shows it to filters.
struct Request {
  http::RequestHead head;
  ClientInfo client = [] {
    ClientInfo c;
    c.ip = "192.0.2.7";
    return c;
  }();
  std::string host;
  std::string target;
  Request(std::string h, std::string t) : host(std::move(h)), target(std::move(t)) {
    head.method_text = "GET";
    head.method = http::Method::Get;
    head.target = target;
    head.path = std::string_view(target).substr(0, target.find('?'));
    head.host = host;
  }
  RequestView view() const {
    std::string_view t = target;
    return RequestView{head, host, t, t.substr(0, t.find('?')), client};
  }
};

// Runs a chain's on_request; the answer's extra fields land in `edits`.
FilterStatus ask(const FilterChain& chain, const Request& req, LocalAnswer& a, HeaderEdits& edits) {
  a.edits = &edits;
  return chain.on_request(req.view(), a);
}

// ---- redirect_https ---------------------------------------------------------------------------

constexpr std::string_view kRedirect = R"(
listeners:
  - name: plain
    listen: 127.0.0.1:8080
    redirect_https: 8443
    routes:
      - match: {path_prefix: /api/}
        backend: web
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)";

TEST(RedirectHttps, AnswersWith308ToTheSameUrlOverHttps) {
  auto cfg = load(kRedirect);
  ASSERT_TRUE(cfg);
  config::Listener l = cfg->listeners.at(0);
  l.hide_server_headers = false;  // counted apart: HideServerHeaders below
  ASSERT_EQ(l.redirect_https, 8443);
  ListenerFilters f = build_filters(l);
  ASSERT_EQ(f.listener.filters.size(), 1u);
  EXPECT_FALSE(f.listener.body_filters);

  Request req("example.com", "/a/b?x=1&y=2");
  HeaderEdits edits;
  LocalAnswer a;
  ASSERT_EQ(ask(f.listener, req, a, edits), FilterStatus::Answered);
  EXPECT_EQ(a.status, 308);
  EXPECT_FALSE(a.close);
  EXPECT_FALSE(a.body.empty());
  EXPECT_EQ(added(edits), (Fields{{"Location", "https://example.com:8443/a/b?x=1&y=2"}}));
}

TEST(RedirectHttps, EveryRouteChainRedirectsToo) {
  auto cfg = load(kRedirect);
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  ASSERT_EQ(f.routes.size(), cfg->listeners.at(0).routes.size());
  ASSERT_EQ(f.routes.size(), 2u);
  for (const FilterChain& chain : f.routes) {
    Request req("api.example.com", "/api/v1");
    HeaderEdits edits;
    LocalAnswer a;
    ASSERT_EQ(ask(chain, req, a, edits), FilterStatus::Answered);
    EXPECT_EQ(a.status, 308);
    EXPECT_EQ(added(edits), (Fields{{"Location", "https://api.example.com:8443/api/v1"}}));
    EXPECT_FALSE(chain.body_filters);
  }
}

TEST(RedirectHttps, NoHostIsABadRequestThatCloses) {
  auto cfg = load(kRedirect);
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  Request req("", "/a");
  HeaderEdits edits;
  LocalAnswer a;
  ASSERT_EQ(ask(f.listener, req, a, edits), FilterStatus::Answered);
  EXPECT_EQ(a.status, 400);
  EXPECT_TRUE(a.close);
  EXPECT_TRUE(edits.empty()) << "no Location without a host";
}

TEST(RedirectHttps, Port443IsLeftOut) {
  config::Listener l;
  l.hide_server_headers = false;
  l.name = "plain";
  l.redirect_https = 443;
  ListenerFilters f = build_filters(l);
  Request req("example.com", "/x?q");
  HeaderEdits edits;
  LocalAnswer a;
  ASSERT_EQ(ask(f.listener, req, a, edits), FilterStatus::Answered);
  EXPECT_EQ(a.status, 308);
  EXPECT_EQ(added(edits), (Fields{{"Location", "https://example.com/x?q"}}));
}

TEST(RedirectHttps, EmptyTargetRedirectsToTheRoot) {
  config::Listener l;
  l.hide_server_headers = false;
  l.redirect_https = 8443;
  ListenerFilters f = build_filters(l);
  Request req("example.com", "");
  HeaderEdits edits;
  LocalAnswer a;
  ASSERT_EQ(ask(f.listener, req, a, edits), FilterStatus::Answered);
  EXPECT_EQ(added(edits), (Fields{{"Location", "https://example.com:8443/"}}));
}

TEST(RedirectHttps, EachAnswerKeepsItsOwnLocation) {
  // The filter is shared by the exchanges of a worker: one answer's Location must not change
  // when the next request is redirected.
  config::Listener l;
  l.hide_server_headers = false;
  l.redirect_https = 8443;
  ListenerFilters f = build_filters(l);
  Request first("one.example", "/first");
  Request second("two.example", "/second/path/that/is/longer/than/the/first/one");
  HeaderEdits e1, e2;
  LocalAnswer a1, a2;
  ASSERT_EQ(ask(f.listener, first, a1, e1), FilterStatus::Answered);
  ASSERT_EQ(ask(f.listener, second, a2, e2), FilterStatus::Answered);
  EXPECT_EQ(added(e1), (Fields{{"Location", "https://one.example:8443/first"}}));
  EXPECT_EQ(added(e2),
            (Fields{{"Location",
                     "https://two.example:8443/second/path/that/is/longer/than/the/first/one"}}));
}

TEST(RedirectHttps, ReplacesALocationSetEarlier) {
  config::Listener l;
  l.hide_server_headers = false;
  l.redirect_https = 8443;
  ListenerFilters f = build_filters(l);
  Request req("example.com", "/");
  HeaderEdits edits;
  edits.add("location", "http://elsewhere/");
  LocalAnswer a;
  ASSERT_EQ(ask(f.listener, req, a, edits), FilterStatus::Answered);
  EXPECT_EQ(added(edits), (Fields{{"Location", "https://example.com:8443/"}}));
}

TEST(RedirectHttps, LeavesUpstreamHeadsAndResponsesAlone) {
  config::Listener l;
  l.hide_server_headers = false;
  l.redirect_https = 8443;
  ListenerFilters f = build_filters(l);
  Request req("example.com", "/");
  HeaderEdits up;
  f.listener.on_upstream_request(req.view(), up);
  EXPECT_TRUE(up.empty());
  HeaderEdits resp_edits;
  ResponseOut resp;
  resp.edits = &resp_edits;
  f.listener.on_response(resp);
  EXPECT_TRUE(resp_edits.empty());
}

TEST(Filters, PlainListenerWithoutFeaturesHasNoFilters) {
  auto cfg = load(R"(
listeners:
  - name: plain
    listen: 127.0.0.1:8080
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  EXPECT_TRUE(f.owned.empty());
  EXPECT_TRUE(f.listener.filters.empty());
  ASSERT_EQ(f.routes.size(), 1u);
  EXPECT_TRUE(f.routes[0].filters.empty());
  Request req("example.com", "/");
  HeaderEdits edits;
  LocalAnswer a;
  EXPECT_EQ(ask(f.routes[0], req, a, edits), FilterStatus::Continue);
  EXPECT_EQ(a.status, 0);
  EXPECT_TRUE(edits.empty());
}

// ---- tls.hsts ---------------------------------------------------------------------------------

constexpr std::string_view kTls = R"(
listeners:
  - name: https
    listen: 127.0.0.1:8443
    tls:
      certificates:
        - cert: /etc/weir/site.pem
          key: /etc/weir/site.key
      hsts: 180d
    routes:
      - match: {path_prefix: /api/}
        response_headers:
          set: {X-Route: api}
        backend: web
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)";

TEST(Hsts, SetsStrictTransportSecurityOnEveryResponse) {
  auto cfg = load(kTls);
  ASSERT_TRUE(cfg);
  config::Listener l = cfg->listeners.at(0);
  l.hide_server_headers = false;  // counted apart: HideServerHeaders below
  ASSERT_TRUE(l.tls && l.tls->hsts);
  ListenerFilters f = build_filters(l);
  ASSERT_EQ(f.listener.filters.size(), 1u);

  // The server's own answer.
  const http::Header received[] = {{"Content-Type", "text/plain"}};
  HeaderEdits edits;
  ResponseOut resp;
  resp.fields = received;
  resp.edits = &edits;
  f.listener.on_response(resp);
  EXPECT_EQ(fields_of(resp), (Fields{{"Content-Type", "text/plain"},
                                     {"Strict-Transport-Security", "max-age=15552000"}}));

  // weir's own answer (a 404 before any route matched).
  HeaderEdits local_edits;
  ResponseOut local;
  local.status = 404;
  local.local = true;
  local.edits = &local_edits;
  f.listener.on_response(local);
  EXPECT_EQ(fields_of(local), (Fields{{"Strict-Transport-Security", "max-age=15552000"}}));
}

TEST(Hsts, ReplacesTheServersOwnField) {
  auto cfg = load(kTls);
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  const http::Header received[] = {{"strict-transport-security", "max-age=5"}, {"X-A", "1"}};
  HeaderEdits edits;
  ResponseOut resp;
  resp.fields = received;
  resp.edits = &edits;
  f.listener.on_response(resp);
  EXPECT_EQ(fields_of(resp),
            (Fields{{"X-A", "1"}, {"Strict-Transport-Security", "max-age=15552000"}}));
}

TEST(Hsts, MaxAgeIsInWholeSeconds) {
  config::Listener l;
  l.hide_server_headers = false;
  l.tls.emplace();
  l.tls->hsts = config::Duration(90500);  // 90.5 s
  ListenerFilters f = build_filters(l);
  HeaderEdits edits;
  ResponseOut resp;
  resp.edits = &edits;
  f.listener.on_response(resp);
  EXPECT_EQ(added(edits), (Fields{{"Strict-Transport-Security", "max-age=90"}}));
}

TEST(Hsts, EveryRouteChainHasItBeforeTheRoutesOwnRules) {
  auto cfg = load(kTls);
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  ASSERT_EQ(f.routes.size(), 2u);
  ASSERT_EQ(f.routes[0].filters.size(), 2u);  // hsts, then the route's rules
  EXPECT_EQ(f.routes[0].filters[0], f.listener.filters[0]);
  ASSERT_EQ(f.routes[1].filters.size(), 1u);  // hsts only
  EXPECT_EQ(f.routes[1].filters[0], f.listener.filters[0]);

  HeaderEdits e0;
  ResponseOut r0;
  r0.edits = &e0;
  f.routes[0].on_response(r0);
  EXPECT_EQ(added(e0),
            (Fields{{"Strict-Transport-Security", "max-age=15552000"}, {"X-Route", "api"}}));
  HeaderEdits e1;
  ResponseOut r1;
  r1.edits = &e1;
  f.routes[1].on_response(r1);
  EXPECT_EQ(added(e1), (Fields{{"Strict-Transport-Security", "max-age=15552000"}}));
}

TEST(Hsts, TlsWithoutHstsHasNoFilter) {
  config::Listener l;
  l.hide_server_headers = false;
  l.tls.emplace();
  ListenerFilters f = build_filters(l);
  EXPECT_TRUE(f.listener.filters.empty());
}

TEST(Hsts, DoesNotTouchRequests) {
  auto cfg = load(kTls);
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  Request req("example.com", "/");
  HeaderEdits edits;
  LocalAnswer a;
  EXPECT_EQ(ask(f.listener, req, a, edits), FilterStatus::Continue);
  HeaderEdits up;
  f.listener.on_upstream_request(req.view(), up);
  EXPECT_TRUE(edits.empty());
  EXPECT_TRUE(up.empty());
}

// ---- route header rules -----------------------------------------------------------------------

constexpr std::string_view kRules = R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: {path_prefix: /api/}
        request_headers:
          remove: [X-Debug]
          set: {X-Env: prod}
          add: {Via: "1.1 weir"}
        response_headers:
          remove: [X-Internal]
          set: {Cache-Control: no-store}
          add: {X-Served-By: weir}
        backend: web
      - match: {path_prefix: /static/}
        response_headers:
          add: {X-Static: "yes"}
        backend: web
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)";

TEST(HeaderRules, ChainsPerRoute) {
  auto cfg = load(kRules);
  ASSERT_TRUE(cfg);
  config::Listener l = cfg->listeners.at(0);
  l.hide_server_headers = false;   // counted apart: HideServerHeaders below
  ASSERT_EQ(l.routes.size(), 3u);  // /api/, /static/, the catch-all
  ListenerFilters f = build_filters(l);
  EXPECT_TRUE(f.listener.filters.empty());
  ASSERT_EQ(f.routes.size(), 3u);
  EXPECT_EQ(f.routes[0].filters.size(), 1u);
  EXPECT_EQ(f.routes[1].filters.size(), 1u);
  EXPECT_TRUE(f.routes[2].filters.empty()) << "a route without rules has only the listener's";
  EXPECT_NE(f.routes[0].filters[0], f.routes[1].filters[0]);
  for (const auto& chain : f.routes)
    EXPECT_FALSE(chain.body_filters);
  EXPECT_FALSE(f.listener.body_filters);
}

TEST(HeaderRules, RequestRulesApplyToTheUpstreamHead) {
  auto cfg = load(kRules);
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  Request req("example.com", "/api/users");
  HeaderEdits edits;
  f.routes[0].on_upstream_request(req.view(), edits);
  EXPECT_TRUE(edits.removes("x-debug"));
  EXPECT_TRUE(edits.removes("X-Env"));  // set replaces the client's fields of that name
  EXPECT_FALSE(edits.removes("Via"));   // add keeps them
  EXPECT_EQ(added(edits), (Fields{{"X-Env", "prod"}, {"Via", "1.1 weir"}}));
  // Requests are not answered by header rules.
  HeaderEdits answer_edits;
  LocalAnswer a;
  EXPECT_EQ(ask(f.routes[0], req, a, answer_edits), FilterStatus::Continue);
  EXPECT_TRUE(answer_edits.empty());
}

TEST(HeaderRules, ResponseRulesApplyToTheResponse) {
  auto cfg = load(kRules);
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  const http::Header received[] = {{"Server", "app"},
                                   {"X-Internal", "node-7"},
                                   {"Cache-Control", "max-age=60"},
                                   {"x-internal", "rack-2"},
                                   {"X-Served-By", "app"}};
  HeaderEdits edits;
  ResponseOut resp;
  resp.fields = received;
  resp.edits = &edits;
  f.routes[0].on_response(resp);
  EXPECT_EQ(fields_of(resp), (Fields{{"Server", "app"},
                                     {"X-Served-By", "app"},
                                     {"Cache-Control", "no-store"},
                                     {"X-Served-By", "weir"}}));
}

TEST(HeaderRules, OnlyOnTheirOwnRoute) {
  auto cfg = load(kRules);
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  Request req("example.com", "/other");
  // The catch-all route: nothing.
  HeaderEdits up;
  f.routes[2].on_upstream_request(req.view(), up);
  EXPECT_TRUE(up.empty());
  HeaderEdits resp_edits;
  ResponseOut resp;
  resp.edits = &resp_edits;
  f.routes[2].on_response(resp);
  EXPECT_TRUE(resp_edits.empty());
  // The listener's chain (no route matched): nothing.
  f.listener.on_response(resp);
  EXPECT_TRUE(resp_edits.empty());
  // /static/ has response rules only: its upstream heads are untouched.
  HeaderEdits static_up;
  f.routes[1].on_upstream_request(req.view(), static_up);
  EXPECT_TRUE(static_up.empty());
  f.routes[1].on_response(resp);
  EXPECT_EQ(added(resp_edits), (Fields{{"X-Static", "yes"}}));
}

TEST(HeaderRules, AppliedInTheOrderRemoveSetAdd) {
  // The same name in all three lists: remove, then set, then add leaves the set value and the
  // added one (any other order would lose one of them).
  config::Listener l;
  l.hide_server_headers = false;
  config::Route r;
  r.request_headers.remove = {"X-A"};
  r.request_headers.set = {{"X-A", "set"}};
  r.request_headers.add = {{"X-A", "added"}};
  r.response_headers.add = {{"X-B", "added"}};
  r.response_headers.set = {{"x-b", "set"}};
  r.response_headers.remove = {"X-B", "X-C"};
  l.routes.push_back(r);
  ListenerFilters f = build_filters(l);
  ASSERT_EQ(f.routes.size(), 1u);

  Request req("example.com", "/");
  HeaderEdits up;
  up.add("X-A", "from an earlier filter");
  f.routes[0].on_upstream_request(req.view(), up);
  EXPECT_EQ(added(up), (Fields{{"X-A", "set"}, {"X-A", "added"}}));
  EXPECT_TRUE(up.removes("x-a"));

  const http::Header received[] = {{"X-B", "server"}, {"X-C", "server"}, {"X-D", "server"}};
  HeaderEdits edits;
  ResponseOut resp;
  resp.fields = received;
  resp.edits = &edits;
  f.routes[0].on_response(resp);
  EXPECT_EQ(fields_of(resp), (Fields{{"X-D", "server"}, {"x-b", "set"}, {"X-B", "added"}}));
}

TEST(HeaderRules, SeveralEntriesKeepTheirOrder) {
  config::Listener l;
  l.hide_server_headers = false;
  config::Route r;
  r.response_headers.set = {{"X-One", "1"}, {"X-Two", "2"}, {"X-One", "1b"}};
  r.response_headers.add = {{"Link", "</a>"}, {"Link", "</b>"}, {"Via", "weir"}};
  l.routes.push_back(r);
  ListenerFilters f = build_filters(l);
  HeaderEdits edits;
  ResponseOut resp;
  resp.edits = &edits;
  f.routes[0].on_response(resp);
  EXPECT_EQ(
      added(edits),
      (Fields{
          {"X-Two", "2"}, {"X-One", "1b"}, {"Link", "</a>"}, {"Link", "</b>"}, {"Via", "weir"}}));
}

TEST(HeaderRules, ChainsStayValidWhenTheFiltersAreMoved) {
  auto cfg = load(kRules);
  ASSERT_TRUE(cfg);
  std::vector<ListenerFilters> all;
  all.push_back(build_filters(cfg->listeners.at(0)));
  all.push_back(build_filters(cfg->listeners.at(0)));  // the vector grows: elements move
  for (const ListenerFilters& f : all) {
    HeaderEdits edits;
    ResponseOut resp;
    resp.edits = &edits;
    f.routes[0].on_response(resp);
    EXPECT_EQ(added(edits), (Fields{{"Cache-Control", "no-store"}, {"X-Served-By", "weir"}}));
  }
}

}  // namespace
}  // namespace weir::proxy

namespace weir::proxy {
namespace {

TEST(HideServerHeaders, OnByDefaultFirstInEveryChainAndNotOnLocalAnswers) {
  config::Listener l;
  config::Route r;
  r.response_headers.set.emplace_back("Server", "front");
  l.routes.push_back(r);
  ListenerFilters f = build_filters(l);
  ASSERT_EQ(f.listener.filters.size(), 1u);
  ASSERT_EQ(f.routes.at(0).filters.size(), 2u);
  EXPECT_EQ(f.routes[0].filters[0], f.listener.filters[0]);
  // A server's response naming its software (any spelling, one name twice) and other fields.
  std::vector<http::Header> fields = {
      {"server", "nginx/1.22"},    {"Content-Type", "text/plain"}, {"X-POWERED-BY", "PHP/8"},
      {"x-aspnet-version", "4.0"}, {"X-AspNetMvc-Version", "5.2"}, {"Server", "again"},
      {"X-Served-By", "kept"}};
  HeaderEdits e;
  ResponseOut out;
  out.fields = fields;
  out.edits = &e;
  f.listener.on_response(out);
  for (std::string_view name :
       {"server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version"})
    EXPECT_TRUE(e.removes(name)) << name;
  std::vector<std::string> sent;
  out.for_each_field([&](std::string_view n, std::string_view) { sent.emplace_back(n); });
  EXPECT_EQ(sent, (std::vector<std::string>{"Content-Type", "X-Served-By"}));
  HeaderEdits local;
  ResponseOut answer;
  answer.edits = &local;
  answer.local = true;
  f.listener.on_response(answer);
  EXPECT_FALSE(local.removes("server"));
  l.hide_server_headers = false;
  EXPECT_TRUE(build_filters(l).listener.filters.empty());
}

}  // namespace
}  // namespace weir::proxy

namespace weir::proxy {
namespace {

// `compression`: the listener's on every forwarding route without its own, a route's own
// instead, `false` for none; never on the listener's own chain (weir's answers) or an answering
// route.
TEST(CompressionFilter, ChainsByRoute) {
  auto cfg = load(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    compression: { algorithms: [zstd, gzip] }
    routes:
      - match: { path_prefix: /own/ }
        compression: { algorithms: [gzip] }
        backend: web
      - match: { path_prefix: /off/ }
        compression: false
        backend: web
      - match: { path_prefix: /hello }
        respond: { status: 200, body: "hi" }
      - match: { path_prefix: / }
        backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
  ASSERT_TRUE(cfg);
  ListenerFilters f = build_filters(cfg->listeners.at(0));
  EXPECT_FALSE(f.listener.body_filters);
  ASSERT_EQ(f.routes.size(), 4u);
  EXPECT_TRUE(f.routes[0].body_filters);
  EXPECT_FALSE(f.routes[1].body_filters);
  EXPECT_FALSE(f.routes[2].body_filters);
  EXPECT_TRUE(f.routes[3].body_filters);

  const http::Header fields[] = {{"Content-Type", "text/html"}, {"ETag", "\"x\""}};
  auto negotiate = [&](const FilterChain& chain, std::string_view accept,
                       http::Method method = http::Method::Get) {
    HeaderEdits edits;
    ResponseOut h;
    h.fields = fields;
    h.body = http::BodyKind::Chunked;
    h.edits = &edits;
    auto body = chain.on_response_body(h, RequestFacts{method, accept});
    std::string got = body ? "compressed" : "plain";
    h.for_each_field([&](std::string_view n, std::string_view v) {
      got += "|" + std::string(n) + "=" + std::string(v);
    });
    return got;
  };
  EXPECT_EQ(negotiate(f.routes[3], "gzip, zstd"),
            "compressed|Content-Type=text/html|Content-Encoding=zstd|Vary=Accept-Encoding|"
            "ETag=W/\"x\"");
  EXPECT_EQ(negotiate(f.routes[0], "gzip, zstd"),
            "compressed|Content-Type=text/html|Content-Encoding=gzip|Vary=Accept-Encoding|"
            "ETag=W/\"x\"");
  // Accepts none: as it is, with Vary.
  EXPECT_EQ(negotiate(f.routes[3], "br"),
            "plain|Content-Type=text/html|ETag=\"x\"|Vary=Accept-Encoding");
  EXPECT_EQ(negotiate(f.routes[3], ""),
            "plain|Content-Type=text/html|ETag=\"x\"|Vary=Accept-Encoding");
  // HEAD is never compressed (and not a candidate, so no Vary either).
  EXPECT_EQ(negotiate(f.routes[3], "zstd", http::Method::Head),
            "plain|Content-Type=text/html|ETag=\"x\"");
}

}  // namespace
}  // namespace weir::proxy
