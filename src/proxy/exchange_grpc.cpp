// gRPC on the exchange: which requests are gRPC and their deadline, their status for the
// metrics, and weir's own errors said in gRPC's terms.
#include <charconv>
#include <cmath>

#include "http/fields.hpp"
#include "http/status.hpp"
#include "proxy/exchange.hpp"

namespace weir::proxy {

// gRPC (grpc/doc/PROTOCOL-HTTP2.md): a request whose content-type is application/grpc or
// application/grpc+FORMAT. Its grpc-timeout (1-8 digits and a unit: H M S m u n) bounds the
// response timeout once the backend is known.
void Exchange::note_grpc(const http::RequestHead& req) {
  for (const auto& h : req.headers) {
    // Both names are 12 characters: one compare passes over every other field (this runs for
    // every request).
    if (h.name.size() != 12) continue;
    if (http::iequals(h.name, "content-type")) {
      std::string_view v = h.value;
      grpc_ = v.size() >= 16 && http::iequals(v.substr(0, 16), "application/grpc") &&
              (v.size() == 16 || v[16] == '+' || v[16] == ';');
    } else if (http::iequals(h.name, "grpc-timeout")) {
      std::string_view v = h.value;
      if (v.size() < 2 || v.size() > 9) continue;
      uint64_t n = 0;
      bool digits = true;
      for (char c : v.substr(0, v.size() - 1)) {
        if (c < '0' || c > '9') digits = false;
        n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      if (!digits) continue;
      double ms;
      switch (v.back()) {
        case 'H':
          ms = static_cast<double>(n) * 3600e3;
          break;
        case 'M':
          ms = static_cast<double>(n) * 60e3;
          break;
        case 'S':
          ms = static_cast<double>(n) * 1e3;
          break;
        case 'm':
          ms = static_cast<double>(n);
          break;
        case 'u':
          ms = static_cast<double>(n) / 1e3;
          break;
        case 'n':
          ms = static_cast<double>(n) / 1e6;
          break;
        default:
          continue;
      }
      grpc_timeout_ = Millis(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(ms))));
    }
  }
}

// A grpc-status value: 0-255, else -1 (left unknown).
int16_t Exchange::parse_grpc_status(std::string_view v) {
  int code = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), code);
  return ec == std::errc() && p == v.data() + v.size() && code >= 0 && code <= 255
             ? static_cast<int16_t>(code)
             : int16_t{-1};
}

// grpc-status from field lines ("Name: value\r\n" each: the trailers).
void Exchange::note_grpc_status(std::string_view lines) {
  http::for_each_field_line(lines, [&](std::string_view name, std::string_view value) {
    if (http::iequals(name, "grpc-status")) grpc_status_ = parse_grpc_status(value);
  });
}

// weir's own error to a gRPC client: a trailers-only answer (HTTP 200, the status in
// grpc-status), so the client sees a gRPC status rather than an HTTP one it must guess from
// (the mapping of grpc/doc/http-grpc-status-mapping.md, with timeouts as DEADLINE_EXCEEDED).
void Exchange::grpc_answer(uint16_t& status, std::string_view& body,
                           std::string_view& content_type) {
  uint8_t code;
  bool timeout = status == 504 || status == 408;
  switch (status) {
    case 400:
      code = 13;
      break;  // INTERNAL
    case 401:
      code = 16;
      break;  // UNAUTHENTICATED
    case 403:
      code = 7;
      break;  // PERMISSION_DENIED
    case 404:
      code = 12;
      break;  // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
      code = 14;
      break;  // UNAVAILABLE
    default:
      code = timeout ? 4 : 2;  // DEADLINE_EXCEEDED, UNKNOWN
  }
  std::string_view message = http::reason_phrase(status);
  edits_.set("grpc-status", std::to_string(code));
  edits_.set("grpc-message", message);
  grpc_status_ = code;
  status = 200;
  body = {};
  content_type = "application/grpc";
}

}  // namespace weir::proxy
