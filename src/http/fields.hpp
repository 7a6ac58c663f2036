#pragma once
// Internal helpers of the codec for the framing headers (Content-Length, Transfer-Encoding),
// whose misreading is how requests get smuggled, and (at the end) trailer field lines as they
// travel inside weir. The public helpers (iequals, list_contains, is_hop_by_hop) are declared in
// parser.hpp.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/chars.hpp"

namespace weir::http::detail {

// Calls f(element) for each comma-separated element of a list value, trimmed of OWS; stops
// early (returning false) when f returns false.
template <typename F>
constexpr bool for_each_element(std::string_view list, F&& f) {
  size_t i = 0;
  while (i <= list.size()) {
    size_t comma = list.find(',', i);
    if (comma == std::string_view::npos) comma = list.size();
    if (!f(chars::trim_ows(list.substr(i, comma - i)))) return false;
    i = comma + 1;
  }
  return true;
}

constexpr bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (chars::lower(a[i]) != chars::lower(b[i])) return false;
  }
  return true;
}

// Folds one Content-Length field value into (seen, length). False if the value is malformed or
// disagrees with a value seen before. A list ("5, 5") is tolerated only when every element is
// the same number (RFC 9110 8.6); each element is 1*DIGIT, no sign, no inner space, below 2^63.
inline bool parse_content_length(std::string_view value, bool& seen, uint64_t& length) {
  return for_each_element(value, [&](std::string_view elem) {
    if (elem.empty() || elem.size() > 19) return false;
    uint64_t v = 0;
    for (char c : elem) {
      if (!chars::is_digit(c)) return false;
      v = v * 10 + uint64_t(c - '0');  // 19 digits cannot overflow 64 bits
    }
    if (v >= (uint64_t{1} << 63)) return false;
    if (seen && v != length) return false;
    seen = true;
    length = v;
    return true;
  });
}

struct TransferEncoding {
  bool present = false;
  bool chunked = false;       // "chunked" appears (once)
  bool chunked_last = false;  // ... and is the final coding
  bool other = false;         // some coding other than chunked appears
};

enum class TeError : uint8_t { None, Syntax, DoubleChunked };

// Folds one Transfer-Encoding field value into `te` (several fields form one list). Empty
// elements and parameters are legal in lists in general, but on the header that frames the
// body any oddity is a smuggling vector, so they are refused.
inline TeError scan_transfer_encoding(std::string_view value, TransferEncoding& te) {
  te.present = true;
  TeError err = TeError::None;
  for_each_element(value, [&](std::string_view elem) {
    if (elem.empty()) {
      err = TeError::Syntax;
      return false;
    }
    for (char c : elem) {
      if (!chars::is_token(c)) {
        err = TeError::Syntax;
        return false;
      }
    }
    if (ascii_iequals(elem, "chunked")) {
      if (te.chunked) {
        err = TeError::DoubleChunked;
        return false;
      }
      te.chunked = true;
      te.chunked_last = true;
    } else {
      te.chunked_last = false;
      te.other = true;
    }
    return true;
  });
  return err;
}

}  // namespace weir::http::detail

namespace weir::http {

// Trailer fields travel inside weir, between codecs, as HTTP/1.1 field lines: zero or more
// "Name: value\r\n" (no final empty line), at most kMaxTrailerBytes.
inline constexpr size_t kMaxTrailerBytes = 16 * 1024;

// Calls fn(name, value) for each "Name: value\r\n" line of `lines`, the value trimmed of OWS.
// False (after the lines before it) at a line without a name, a colon or its CRLF.
template <typename F>
constexpr bool for_each_field_line(std::string_view lines, F&& fn) {
  while (!lines.empty()) {
    const size_t eol = lines.find("\r\n");
    const size_t colon = lines.substr(0, eol).find(':');
    if (eol == std::string_view::npos || colon == std::string_view::npos || colon == 0)
      return false;
    fn(lines.substr(0, colon), chars::trim_ows(lines.substr(colon + 1, eol - colon - 1)));
    lines.remove_prefix(eol + 2);
  }
  return true;
}

// False for a field that must not be forwarded in a trailer section (compared case-insensitively):
// pseudo-fields (RFC 9113 §8.1); fields that belong to one connection (RFC 9113 §8.2.2:
// connection, keep-alive, proxy-connection, transfer-encoding, upgrade, te); and, from
// RFC 9110 §6.5.1 ("fields necessary before the content": RFC 7230 §4.1.2 gave the list), those
// that frame the message (content-length, transfer-encoding), route it (host), modify the
// request (cache-control, expect, max-forwards, pragma, range, te, the if-* conditionals),
// authenticate (authorization, proxy-authorization, www-authenticate, proxy-authenticate,
// cookie, set-cookie), control the response (age, cache-control, date, expires, location,
// retry-after, vary, warning) or say how to process the content (content-encoding,
// content-type, content-range, trailer). Any other field passes.
bool trailer_field_allowed(std::string_view name);

// Finds `name` in "a=1; b=2" (cookies, sep ';') or "a=1&b=2" (a query, sep '&'): the first
// pair of that name (compared exactly, around OWS), its value trimmed of OWS, undecoded.
constexpr bool find_pair(std::string_view list, char sep, std::string_view name,
                         std::string_view& out) {
  while (!list.empty()) {
    const size_t end = list.find(sep);
    const std::string_view item = chars::trim_ows(list.substr(0, end));
    const size_t eq = item.find('=');
    if (eq != std::string_view::npos && chars::trim_ows(item.substr(0, eq)) == name) {
      out = chars::trim_ows(item.substr(eq + 1));
      return true;
    }
    if (end == std::string_view::npos) break;
    list.remove_prefix(end + 1);
  }
  return false;
}

}  // namespace weir::http
