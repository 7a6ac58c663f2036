#pragma once
// Sticky sessions by cookie: each server of a backend gets an opaque token, an HMAC-SHA256 of
// the backend and server names under a secret key, so a cookie names its server without
// revealing it and cannot be forged. The same key gives the same tokens in every worker, across
// reloads, and on every weir instance that shares the key (sticky.secret_file).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace weir::model {

struct StickyTable {
  std::string cookie;               // cookie name
  std::vector<std::string> tokens;  // by server index
  std::optional<config::Duration> max_age;

  // The server a cookie value names, or -1 (unknown, forged or stale tokens are simply ignored).
  int find(std::string_view token) const;
  // The Set-Cookie value "NAME=TOKEN; Path=/; HttpOnly; SameSite=Lax[; Max-Age=N][; Secure]",
  // into `out` (replaced).
  void cookie_value(int server, bool secure, std::string& out) const;
};

// 32 hex digits: the first 128 bits of HMAC-SHA256(key, backend "\n" server).
std::string sticky_token(std::string_view key, std::string_view backend, std::string_view server);

// 32 random bytes from the system's CSPRNG.
std::string random_key();

}  // namespace weir::model
