#include "proxy/router.hpp"

#include <re2/re2.h>

#include <algorithm>

#include "http/chars.hpp"
#include "http/fields.hpp"

namespace weir::proxy {
namespace {

// application/x-www-form-urlencoded decoding of one name or value, compared with `want` as it
// goes (no allocation): "+" is a space, "%XX" a byte; a malformed escape stands for itself.
bool decoded_equals(std::string_view raw, std::string_view want) {
  size_t j = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%' && i + 2 < raw.size()) {
      int hi = http::chars::hex_digit(raw[i + 1]), lo = http::chars::hex_digit(raw[i + 2]);
      if (hi >= 0 && lo >= 0) {
        c = static_cast<char>(hi * 16 + lo);
        i += 2;
      }
    }
    if (j >= want.size() || want[j] != c) return false;
    ++j;
  }
  return j == want.size();
}

bool field_matches(std::string_view value, const config::FieldMatch& m) {
  return m.any || value == m.value;
}

bool header_matches(const http::RequestHead& head, const config::FieldMatch& m) {
  for (const auto& h : head.headers) {
    if (http::iequals(h.name, m.name) && field_matches(h.value, m)) return true;
  }
  return false;
}

// Cookie: a=1; b=2 — in any of the request's Cookie fields (HTTP/2 may split them).
bool cookie_matches(const http::RequestHead& head, const config::FieldMatch& m) {
  for (const auto& h : head.headers) {
    if (!http::iequals(h.name, "cookie")) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t'))
        pair.remove_prefix(1);
      while (!pair.empty() && (pair.back() == ' ' || pair.back() == '\t'))
        pair.remove_suffix(1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos || pair.substr(0, eq) != m.name) continue;
      std::string_view v = pair.substr(eq + 1);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      if (field_matches(v, m)) return true;
    }
  }
  return false;
}

}  // namespace

bool query_matches(std::string_view query, const config::FieldMatch& m) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (!decoded_equals(name, m.name)) continue;
    if (m.any || decoded_equals(value, m.value)) return true;
  }
  return false;
}

std::string_view normalize_host(std::string_view host, char* buf, size_t cap) {
  // Strip the port: "[v6]:port" keeps the brackets' content; "name:port" drops ":port".
  if (!host.empty() && host[0] == '[') {
    auto close = host.find(']');
    host = close == std::string_view::npos ? host : host.substr(0, close + 1);
  } else if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // FQDN form
  size_t n = host.size() < cap ? host.size() : cap;
  for (size_t i = 0; i < n; ++i) {
    char c = host[i];
    buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  }
  return {buf, n};
}

static bool host_matches(const std::string& pattern, std::string_view host) {
  if (pattern.empty()) return true;
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    std::string_view suffix(pattern.data() + 1, pattern.size() - 1);  // ".example.com"
    return host.size() > suffix.size() && host.substr(host.size() - suffix.size()) == suffix;
  }
  return host == pattern;
}

static bool route_matches(const config::RouteMatch& m, const RouteRequest& rq) {
  if (!host_matches(m.host, rq.host)) return false;
  if (!m.path.empty() && rq.path != m.path) return false;
  if (!m.path_prefix.empty() && rq.path.substr(0, m.path_prefix.size()) != m.path_prefix)
    return false;
  if (m.regex && !RE2::PartialMatch(re2::StringPiece(rq.path.data(), rq.path.size()), *m.regex))
    return false;
  if (!m.methods.empty() || !m.headers.empty() || !m.cookies.empty()) {
    if (!rq.head) return false;
    if (!m.methods.empty() &&
        std::find(m.methods.begin(), m.methods.end(), rq.head->method_text) == m.methods.end())
      return false;
    for (const auto& h : m.headers)
      if (!header_matches(*rq.head, h)) return false;
    for (const auto& c : m.cookies)
      if (!cookie_matches(*rq.head, c)) return false;
  }
  for (const auto& q : m.query)
    if (!query_matches(rq.query, q)) return false;
  return true;
}

int find_route(const std::vector<config::Route>& routes, const RouteRequest& rq) {
  for (size_t i = 0; i < routes.size(); ++i) {
    if (route_matches(routes[i].match, rq)) return static_cast<int>(i);
  }
  return -1;
}

int find_tcp_route(const std::vector<config::Route>& routes, std::string_view sni) {
  int catch_all = -1;
  for (size_t i = 0; i < routes.size(); ++i) {
    const std::string& pattern = routes[i].match.sni;
    if (pattern.empty()) {
      if (catch_all < 0) catch_all = static_cast<int>(i);
    } else if (!sni.empty() && host_matches(pattern, sni)) {
      return static_cast<int>(i);
    }
  }
  return catch_all;
}

int find_route(const std::vector<config::Route>& routes, std::string_view host,
               std::string_view path) {
  return find_route(routes, RouteRequest{host, path, {}, nullptr});
}

int match_route(const std::vector<config::Route>& routes, std::string_view host,
                std::string_view path) {
  int i = find_route(routes, host, path);
  return i < 0 ? -1 : static_cast<int>(routes[static_cast<size_t>(i)].backend_index);
}

}  // namespace weir::proxy
