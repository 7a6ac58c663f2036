#include "proxy/router.hpp"

namespace weir::proxy {

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

int find_route(const std::vector<config::Route>& routes, std::string_view host,
               std::string_view path) {
  for (size_t i = 0; i < routes.size(); ++i) {
    const auto& r = routes[i];
    if (!host_matches(r.match.host, host)) continue;
    if (!r.match.path_prefix.empty() &&
        path.substr(0, r.match.path_prefix.size()) != r.match.path_prefix)
      continue;
    return static_cast<int>(i);
  }
  return -1;
}

int match_route(const std::vector<config::Route>& routes, std::string_view host,
                std::string_view path) {
  int i = find_route(routes, host, path);
  return i < 0 ? -1 : static_cast<int>(routes[static_cast<size_t>(i)].backend_index);
}

}  // namespace weir::proxy
