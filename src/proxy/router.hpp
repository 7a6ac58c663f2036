#pragma once
// Route matching for one listener: host (exact or "*.suffix", case-insensitive, port ignored)
// and path prefix; first match wins.
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace weir::proxy {

// Returns the index of the first matching route, or -1.
int find_route(const std::vector<config::Route>& routes, std::string_view host,
               std::string_view path);

// Returns the backend index of the first matching route, or -1.
int match_route(const std::vector<config::Route>& routes, std::string_view host,
                std::string_view path);

// "Example.COM:8080" → "example.com" (into buf; returns a view of buf).
std::string_view normalize_host(std::string_view host, char* buf, size_t cap);

}  // namespace weir::proxy
