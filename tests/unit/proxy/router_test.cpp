#include "proxy/router.hpp"

#include <gtest/gtest.h>

namespace weir::proxy {
namespace {

config::Route route(std::string host, std::string prefix, size_t backend) {
  config::Route r;
  r.match.host = std::move(host);
  r.match.path_prefix = std::move(prefix);
  r.backend_index = backend;
  return r;
}

std::string norm(std::string_view h) {
  char buf[256];
  return std::string(normalize_host(h, buf, sizeof buf));
}

TEST(Router, NormalizesHost) {
  EXPECT_EQ(norm("Example.COM:8080"), "example.com");
  EXPECT_EQ(norm("example.com."), "example.com");
  EXPECT_EQ(norm("[::1]:80"), "[::1]");
  EXPECT_EQ(norm("plain"), "plain");
}

TEST(Router, FirstMatchWins) {
  std::vector<config::Route> routes = {route("api.example.com", "/v1/", 0),
                                       route("api.example.com", "", 1), route("", "/static/", 2),
                                       route("", "", 3)};
  EXPECT_EQ(match_route(routes, "api.example.com", "/v1/users"), 0);
  EXPECT_EQ(match_route(routes, "api.example.com", "/v2/users"), 1);
  EXPECT_EQ(match_route(routes, "www.example.com", "/static/a.css"), 2);
  EXPECT_EQ(match_route(routes, "www.example.com", "/"), 3);
}

TEST(Router, WildcardMatchesSubdomainsOnly) {
  std::vector<config::Route> routes = {route("*.example.com", "", 0)};
  EXPECT_EQ(match_route(routes, "a.example.com", "/"), 0);
  EXPECT_EQ(match_route(routes, "a.b.example.com", "/"), 0);
  EXPECT_EQ(match_route(routes, "example.com", "/"), -1);
  EXPECT_EQ(match_route(routes, "badexample.com", "/"), -1);
}

TEST(Router, NoMatchIsMinusOne) {
  std::vector<config::Route> routes = {route("a.com", "/x", 0)};
  EXPECT_EQ(match_route(routes, "a.com", "/y"), -1);
  EXPECT_EQ(match_route(routes, "b.com", "/x"), -1);
  EXPECT_EQ(match_route({}, "a.com", "/"), -1);
}

TEST(Router, PathPrefixIsCaseSensitiveAndLiteral) {
  std::vector<config::Route> routes = {route("", "/API/", 0)};
  EXPECT_EQ(match_route(routes, "h", "/API/x"), 0);
  EXPECT_EQ(match_route(routes, "h", "/api/x"), -1);
  EXPECT_EQ(match_route(routes, "h", "/API"), -1);
}

}  // namespace
}  // namespace weir::proxy
