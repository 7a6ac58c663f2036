#pragma once
// Route matching for one listener: host (exact or "*.suffix", case-insensitive, port ignored),
// exact path, path prefix, path regex (RE2), methods, headers, cookies and decoded query
// parameters; every condition a route gives must hold; the first matching route wins.
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "http/parser.hpp"

namespace weir::proxy {

// What a route is matched on. `head` (for methods, headers, cookies; query comes from `query`)
// may be null: a route with such conditions then does not match.
struct RouteRequest {
  std::string_view host;   // normalized (normalize_host)
  std::string_view path;   // without the query
  std::string_view query;  // after '?', raw
  const http::RequestHead* head = nullptr;
};

int find_route(const std::vector<config::Route>& routes, const RouteRequest& rq);

// tcp mode: the first route whose `sni` matches the ClientHello's server name (lower-cased;
// "" when there is none or the connection is not TLS), else the catch-all route, else -1.
int find_tcp_route(const std::vector<config::Route>& routes, std::string_view sni);

// True if the decoded query parameter `name` is present (and equals `value` unless `any`).
// Exposed for tests.
bool query_matches(std::string_view query, const config::FieldMatch& m);

// Returns the index of the first matching route, or -1.
int find_route(const std::vector<config::Route>& routes, std::string_view host,
               std::string_view path);

// Returns the backend index of the first matching route, or -1.
int match_route(const std::vector<config::Route>& routes, std::string_view host,
                std::string_view path);

// "Example.COM:8080" → "example.com" (into buf; returns a view of buf).
std::string_view normalize_host(std::string_view host, char* buf, size_t cap);

}  // namespace weir::proxy
