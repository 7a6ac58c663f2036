#pragma once
// What a hashing backend hashes: the client IP, the path, or the value of a header, cookie or
// query parameter (`hash_key` in the config), read from a parsed request.
#include <string>
#include <string_view>

#include "http/parser.hpp"

namespace weir::model {

struct KeySpec {
  enum class Kind : uint8_t { ClientIp, Path, Header, Cookie, Query };
  Kind kind = Kind::ClientIp;
  std::string name;  // header, cookie or query parameter name

  // "client_ip" | "path" | "header:NAME" | "cookie:NAME" | "query:NAME" (validated by config).
  static KeySpec parse(std::string_view text);
};

// The key's value in this request; false if the request has none (no such header, cookie or
// parameter). The view points into the request or `client_ip`.
bool extract_key(const KeySpec& spec, const http::RequestHead& req, std::string_view client_ip,
                 std::string_view& out);

}  // namespace weir::model
