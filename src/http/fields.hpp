#pragma once
// Internal helpers of the codec for the framing headers (Content-Length, Transfer-Encoding),
// whose misreading is how requests get smuggled. The public helpers (iequals, list_contains,
// is_hop_by_hop) are declared in parser.hpp.
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
