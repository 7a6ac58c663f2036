#pragma once
// HTTP/1.1 message-head parser (RFC 9112), strict and allocation-free.
//
// parse_request / parse_response look at the bytes received so far and return one of:
//   Done     - a whole head is in the buffer; `consumed` is its length (through the blank line),
//   NeedMore - the head is incomplete but nothing is wrong so far,
//   Error    - the head is invalid; `status` is the HTTP status to answer (400, 414, 431, 501,
//              505; 502 for a response), `offset` where in the buffer it went wrong.
// Every string_view in the output points into the caller's buffer, which must stay put while
// the head is used. The parser keeps no state between calls; it re-scans from the start (heads
// are small and bounded by Limits), which makes it trivially resumable.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "http/fields.hpp"

namespace weir::http {

enum class Method : uint8_t { Get, Head, Post, Put, Delete, Connect, Options, Trace, Patch, Other };

struct Header {
  std::string_view name;
  std::string_view value;  // without leading/trailing OWS
};

struct Limits {
  size_t max_request_line = 8 * 1024;  // request-line longer → 414 (status line → 502)
  size_t max_head_bytes = 64 * 1024;   // whole head longer → 431
  size_t max_headers = 100;            // more header fields → 431
};

enum class ParseStatus : uint8_t { Done, NeedMore, Error };

struct ParseResult {
  ParseStatus status = ParseStatus::NeedMore;
  size_t consumed = 0;            // Done: bytes of the head including the final CRLFCRLF
  uint16_t error_status = 0;      // Error: status code to answer
  size_t error_offset = 0;        // Error: byte offset of the problem
  const char* error_reason = "";  // Error: short static text, e.g. "invalid header name"
};

// How the body that follows a head is delimited.
enum class BodyKind : uint8_t {
  None,           // no body (requests without CL/TE; HEAD/1xx/204/304 responses; CL: 0)
  ContentLength,  // exactly content_length bytes
  Chunked,        // chunked transfer coding
  UntilClose,     // response only: body runs until the server closes
};

struct RequestHead {
  std::string_view method_text;
  Method method = Method::Other;
  std::string_view target;     // request-target as sent
  std::string_view path;       // origin-form: target up to '?'; absolute-form: the path part
                               // up to '?' ("/" - a static string - if the target has none);
                               // authority-form and "*": the whole target
  std::string_view query;      // after '?', without it; empty if none
  std::string_view authority;  // absolute-form and authority-form: the target's authority
  uint8_t version_minor = 1;   // HTTP/1.<minor>, 0 or 1
  std::span<Header> headers;   // the fields in order, a prefix of the caller's storage
  std::string_view host;       // Host header value (one is required in HTTP/1.1); for
                               // absolute-form the target's authority (RFC 9112 3.2.2)
  BodyKind body = BodyKind::None;
  uint64_t content_length = 0;
  bool keep_alive = true;             // after version and Connection are applied
  bool expect_continue = false;       // Expect: 100-continue
  bool upgrade = false;               // Upgrade header present and Connection lists "upgrade"
  std::string_view upgrade_protocol;  // the Upgrade header value
};

struct ResponseHead {
  uint16_t status = 0;
  std::string_view reason;
  uint8_t version_minor = 1;
  std::span<Header> headers;
  BodyKind body = BodyKind::None;
  uint64_t content_length = 0;
  bool keep_alive = true;  // false if the server said close, or HTTP/1.0 without keep-alive,
                           // or the body is UntilClose
};

ParseResult parse_request(std::string_view buf, RequestHead& out, std::span<Header> storage,
                          const Limits& limits);

// A request head that arrived in another codec (HTTP/2 fields, later HTTP/3), checked and
// completed by the same rules as parse_request: `method_text`, `target` and `headers` are filled
// in by the caller (the authority as a "host" field); this sets method, path, query, authority,
// host, body framing, keep_alive, expect_continue and upgrade, or returns Error (status and
// reason; offsets are 0). HTTP/1.1 semantics, so a missing host is a 400 as in HTTP/1.1.
ParseResult interpret_request(RequestHead& out);

// request_method decides bodiless responses (HEAD, and 2xx to CONNECT).
ParseResult parse_response(std::string_view buf, ResponseHead& out, std::span<Header> storage,
                           const Limits& limits, Method request_method);

// Case-insensitive ASCII comparison, for header names and tokens.
inline bool iequals(std::string_view a, std::string_view b) {
  return detail::ascii_iequals(a, b);
}

// True if `token` appears (case-insensitively) in a comma-separated list value.
bool list_contains(std::string_view list_value, std::string_view token);

// Hop-by-hop: the fixed set (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
// Transfer-Encoding, Upgrade, Proxy-Authenticate, Proxy-Authorization) or named by any
// Connection header in `headers`.
bool is_hop_by_hop(std::string_view name, std::span<const Header> headers);

// The same test for every field of one head: the names the Connection fields list are
// collected once, so each field costs a length switch and a few comparisons.
class HopByHop {
 public:
  explicit HopByHop(std::span<const Header> headers);
  bool operator()(std::string_view name) const;

 private:
  std::array<std::string_view, 8> named_{};  // listed by Connection (beyond the fixed set)
  size_t count_ = 0;
  std::span<const Header> overflow_;  // more than named_ holds: the fields, searched per name
};

}  // namespace weir::http
