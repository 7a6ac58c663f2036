// HTTP/1.1 head parser (RFC 9112): one pass over the bytes with table lookups, no allocation.
//
// Decisions where the RFC leaves a choice (all on the strict side, since we are a proxy and a
// disagreement with the backend about where a message ends is a smuggling vector):
//  - line endings must be CRLF; a bare LF or a bare CR anywhere in a head is 400 (502 for a
//    response);
//  - up to kMaxLeadingEmptyLines CRLFs before a request line are skipped, more are 400;
//  - obs-fold, whitespace before the colon, empty field names are 400;
//  - Transfer-Encoding in a request: the final coding must be chunked (else 400), chunked only
//    once (else 400), and any other coding with it is 501 (we do not decode codings); together
//    with Content-Length it is 400; in an HTTP/1.0 request it is 400;
//  - in a response, Content-Length with Transfer-Encoding, or Transfer-Encoding in HTTP/1.0, is
//    502 rather than the RFC's "chunked wins and close";
//  - an Expect other than 100-continue is ignored; Expect and Upgrade are ignored in HTTP/1.0;
//  - for absolute-form, `host` is the target's authority (RFC 9112 3.2.2), though the Host
//    field is still required in HTTP/1.1.
// Errors are decided by the earliest offending byte, so a prefix that fails fails the same way
// once more bytes arrive, and every head that parses has only NeedMore prefixes.
#include "http/parser.hpp"

#include <algorithm>
#include <limits>

#include "http/chars.hpp"
#include "http/fields.hpp"

namespace weir::http {

namespace {

constexpr int kMaxLeadingEmptyLines = 4;

ParseResult need_more() {
  return ParseResult{};
}

ParseResult fail(uint16_t status, size_t offset, const char* reason) {
  ParseResult r;
  r.status = ParseStatus::Error;
  r.error_status = status;
  r.error_offset = offset;
  r.error_reason = reason;
  return r;
}

size_t offset_of(std::string_view buf, std::string_view part) {
  return static_cast<size_t>(part.data() - buf.data());
}

size_t saturating_add(size_t a, size_t b) {
  return b > std::numeric_limits<size_t>::max() - a ? std::numeric_limits<size_t>::max() : a + b;
}

// The status codes one kind of message answers with.
struct Codes {
  uint16_t bad;        // malformed
  uint16_t too_large;  // too many or too long fields
};

// Parses header lines from `pos` through the empty line. On Done, `consumed` is the head's end.
ParseResult parse_fields(std::string_view b, size_t pos, std::span<Header> storage,
                         size_t max_fields, Codes codes, size_t& count) {
  const size_t n = b.size();
  const size_t cap = std::min(storage.size(), max_fields);
  count = 0;
  for (;;) {
    if (pos >= n) return need_more();
    char c = b[pos];
    if (c == '\r') {
      if (pos + 1 >= n) return need_more();
      if (b[pos + 1] != '\n') return fail(codes.bad, pos, "bare CR");
      ParseResult r;
      r.status = ParseStatus::Done;
      r.consumed = pos + 2;
      return r;
    }
    if (c == '\n') return fail(codes.bad, pos, "bare LF");
    if (chars::is_ows(c)) return fail(codes.bad, pos, "obs-fold or whitespace before field");
    if (count >= cap) return fail(codes.too_large, pos, "too many header fields");

    const size_t name_start = pos;
    for (;;) {
      if (pos >= n) return need_more();
      c = b[pos];
      if (c == ':') break;
      if (!chars::is_token(c)) return fail(codes.bad, pos, "invalid header name");
      ++pos;
    }
    if (pos == name_start) return fail(codes.bad, pos, "empty header name");
    const std::string_view name = b.substr(name_start, pos - name_start);
    ++pos;
    while (pos < n && chars::is_ows(b[pos]))
      ++pos;
    const size_t value_start = pos;
    size_t value_end = pos;  // one past the last non-OWS byte
    for (;;) {
      if (pos >= n) return need_more();
      c = b[pos];
      if (c == '\r') break;
      if (!chars::is_field_value(c)) {
        return fail(codes.bad, pos, c == '\n' ? "bare LF" : "invalid byte in header value");
      }
      ++pos;
      if (!chars::is_ows(c)) value_end = pos;
    }
    if (pos + 1 >= n) return need_more();
    if (b[pos + 1] != '\n') return fail(codes.bad, pos, "bare CR");
    storage[count++] = Header{name, b.substr(value_start, value_end - value_start)};
    pos += 2;
  }
}

// Matches "HTTP/d.d" at b[pos..pos+8), the bytes below `lim`. Returns Done with the digits in
// major/minor, NeedMore, or an Error with `too_long` / `bad`.
ParseResult parse_version(std::string_view b, size_t pos, size_t lim, Codes codes,
                          uint16_t too_long, int& major, int& minor) {
  static constexpr std::string_view kPrefix = "HTTP/";
  for (size_t k = 0; k < 8; ++k) {
    const size_t i = pos + k;
    if (i >= lim) return fail(too_long, i, "start line too long");
    if (i >= b.size()) return need_more();
    const char c = b[i];
    const bool ok = k < 5 ? c == kPrefix[k] : k == 6 ? c == '.' : chars::is_digit(c);
    if (!ok) return fail(codes.bad, i, "invalid HTTP version");
  }
  major = b[pos + 5] - '0';
  minor = b[pos + 7] - '0';
  ParseResult r;
  r.status = ParseStatus::Done;
  return r;
}

// Expects CRLF at b[pos].
ParseResult expect_crlf(std::string_view b, size_t pos, uint16_t bad, const char* what) {
  if (pos >= b.size()) return need_more();
  if (b[pos] == '\n') return fail(bad, pos, "bare LF");
  if (b[pos] != '\r') return fail(bad, pos, what);
  if (pos + 1 >= b.size()) return need_more();
  if (b[pos + 1] != '\n') return fail(bad, pos, "bare CR");
  ParseResult r;
  r.status = ParseStatus::Done;
  return r;
}

Method method_of(std::string_view m) {
  switch (m.size()) {
    case 3:
      if (m == "GET") return Method::Get;
      if (m == "PUT") return Method::Put;
      break;
    case 4:
      if (m == "HEAD") return Method::Head;
      if (m == "POST") return Method::Post;
      break;
    case 5:
      if (m == "PATCH") return Method::Patch;
      if (m == "TRACE") return Method::Trace;
      break;
    case 6:
      if (m == "DELETE") return Method::Delete;
      break;
    case 7:
      if (m == "CONNECT") return Method::Connect;
      if (m == "OPTIONS") return Method::Options;
      break;
    default:
      break;
  }
  return Method::Other;
}

// A plausible authority: host [ ":" port ], host a reg-name or an IP literal in brackets; no
// userinfo, no path, no whitespace or control bytes.
bool valid_authority(std::string_view s, bool require_port) {
  size_t i = 0;
  if (!s.empty() && s[0] == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (size_t k = 1; k < close; ++k) {
      const char c = s[k];
      if (!chars::is_hex(c) && c != ':' && c != '.' && c != 'v' && c != 'V') return false;
    }
    i = close + 1;
  } else {
    while (i < s.size() && s[i] != ':') {
      if (!chars::is(s[i], chars::kRegName)) return false;
      ++i;
    }
    if (i == 0) return false;
  }
  if (i == s.size()) return !require_port;
  if (s[i] != ':') return false;
  const std::string_view port = s.substr(i + 1);
  if (port.size() > 5 || (require_port && port.empty())) return false;
  uint32_t v = 0;
  for (char c : port) {
    if (!chars::is_digit(c)) return false;
    v = v * 10 + uint32_t(c - '0');
  }
  return v <= 65535;
}

void split_path_query(std::string_view s, RequestHead& out) {
  const size_t q = s.find('?');
  out.path = s.substr(0, q);
  out.query = q == std::string_view::npos ? std::string_view{} : s.substr(q + 1);
}

// Checks the form of the request-target against the method (RFC 9112 3.2) and fills path,
// query and authority. Returns the error reason or nullptr.
const char* classify_target(RequestHead& out) {
  const std::string_view t = out.target;
  if (out.method == Method::Connect) {
    if (!valid_authority(t, true)) return "CONNECT needs an authority-form target";
    out.path = t;
    out.authority = t;
    return nullptr;
  }
  if (t[0] == '/') {
    split_path_query(t, out);
    return nullptr;
  }
  if (t == "*") {
    if (out.method != Method::Options) return "asterisk-form is only for OPTIONS";
    out.path = t;
    return nullptr;
  }
  const size_t sep = t.find("://");
  if (sep == std::string_view::npos ||
      !(iequals(t.substr(0, sep), "http") || iequals(t.substr(0, sep), "https"))) {
    return "invalid request-target";
  }
  const std::string_view rest = t.substr(sep + 3);
  const size_t end = std::min(rest.find('/'), rest.find('?'));
  const std::string_view authority = rest.substr(0, end);
  if (!valid_authority(authority, false)) return "invalid authority in request-target";
  out.authority = authority;
  if (end == std::string_view::npos) {
    out.path = "/";  // "http://host" means "/" (RFC 9112 3.2.2)
    return nullptr;
  }
  split_path_query(rest.substr(end), out);
  if (out.path.empty()) out.path = "/";
  return nullptr;
}

// Request line up to and including its CRLF; returns Done with `consumed` = the next offset.
ParseResult parse_request_line(std::string_view b, RequestHead& out, const Limits& limits) {
  constexpr Codes kCodes{400, 431};
  const size_t n = b.size();
  size_t pos = 0;
  for (int lines = 0; pos < n && b[pos] == '\r'; ++lines) {
    if (lines == kMaxLeadingEmptyLines) return fail(400, pos, "too many empty lines");
    if (pos + 1 >= n) return need_more();
    if (b[pos + 1] != '\n') return fail(400, pos, "bare CR");
    pos += 2;
  }
  // Bytes of the line proper (without CRLF) must sit below `lim`; reaching it while the line
  // still needs content means the line is too long, whether or not the rest has arrived.
  const size_t lim = saturating_add(pos, limits.max_request_line);

  const size_t method_start = pos;
  for (;;) {
    if (pos >= lim) return fail(414, pos, "request line too long");
    if (pos >= n) return need_more();
    const char c = b[pos];
    if (c == ' ') break;
    if (!chars::is_token(c)) return fail(400, pos, c == '\n' ? "bare LF" : "invalid method");
    ++pos;
  }
  if (pos == method_start) return fail(400, pos, "empty method");
  out.method_text = b.substr(method_start, pos - method_start);
  out.method = method_of(out.method_text);
  ++pos;

  const size_t target_start = pos;
  for (;;) {
    if (pos >= lim) return fail(414, pos, "request line too long");
    if (pos >= n) return need_more();
    const char c = b[pos];
    if (c == ' ') break;
    if (c == '%') {
      for (size_t k = 1; k <= 2; ++k) {
        if (pos + k >= lim) return fail(414, pos + k, "request line too long");
        if (pos + k >= n) return need_more();
        if (!chars::is_hex(b[pos + k])) return fail(400, pos, "invalid percent-escape");
      }
      pos += 3;
      continue;
    }
    if (!chars::is(c, chars::kTarget)) {
      return fail(400, pos,
                  c == '#' ? "fragment in request-target" : "invalid byte in request-target");
    }
    ++pos;
  }
  if (pos == target_start) return fail(400, pos, "empty request-target");
  out.target = b.substr(target_start, pos - target_start);
  if (const char* why = classify_target(out)) return fail(400, target_start, why);
  ++pos;

  int major = 0;
  int minor = 0;
  ParseResult r = parse_version(b, pos, lim, kCodes, 414, major, minor);
  if (r.status != ParseStatus::Done) return r;
  r = expect_crlf(b, pos + 8, 400, "invalid HTTP version");
  if (r.status != ParseStatus::Done) return r;
  if (major != 1 || minor > 1) return fail(505, pos, "HTTP version not supported");
  out.version_minor = static_cast<uint8_t>(minor);
  r.consumed = pos + 10;
  return r;
}

ParseResult parse_status_line(std::string_view b, ResponseHead& out, const Limits& limits) {
  constexpr Codes kCodes{502, 502};
  const size_t n = b.size();
  const size_t lim = limits.max_request_line;
  int major = 0;
  int minor = 0;
  ParseResult r = parse_version(b, 0, lim, kCodes, 502, major, minor);
  if (r.status != ParseStatus::Done) return r;
  // SP 3DIGIT
  for (size_t i = 8; i < 12; ++i) {
    if (i >= lim) return fail(502, i, "status line too long");
    if (i >= n) return need_more();
    const char c = b[i];
    const bool ok = i == 8 ? c == ' ' : i == 9 ? (c >= '1' && c <= '9') : chars::is_digit(c);
    if (!ok) return fail(502, i, "invalid status code");
  }
  out.status = static_cast<uint16_t>((b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0'));
  size_t pos = 12;
  if (pos >= n) return need_more();
  if (b[pos] == ' ') {  // a reason, possibly empty; the SP before an empty one may be missing
    ++pos;
    const size_t reason_start = pos;
    for (;;) {
      if (pos >= n) return need_more();
      const char c = b[pos];
      if (c == '\r') break;
      if (pos >= lim) return fail(502, pos, "status line too long");
      if (!chars::is_field_value(c)) return fail(502, pos, "invalid byte in reason phrase");
      ++pos;
    }
    out.reason = b.substr(reason_start, pos - reason_start);
  }
  r = expect_crlf(b, pos, 502, "invalid status line");
  if (r.status != ParseStatus::Done) return r;
  if (major != 1 || minor > 1) return fail(502, 0, "unsupported HTTP version");
  out.version_minor = static_cast<uint8_t>(minor);
  r.consumed = pos + 2;
  return r;
}

// What the request/response semantics need from the fields, gathered in one pass.
struct FieldSummary {
  bool has_cl = false;
  uint64_t cl = 0;
  detail::TransferEncoding te;
  const Header* te_field = nullptr;
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
  const Header* upgrade = nullptr;
  const Header* host = nullptr;
  int host_count = 0;
  bool expect_continue = false;
  const char* error = nullptr;  // first malformed framing field
  uint16_t error_status = 0;
  const Header* error_field = nullptr;
};

FieldSummary summarize(std::span<const Header> headers, Codes codes) {
  FieldSummary s;
  auto fail_at = [&](const Header& h, uint16_t status, const char* why) {
    if (s.error == nullptr) {
      s.error = why;
      s.error_status = status;
      s.error_field = &h;
    }
  };
  for (const Header& h : headers) {
    switch (chars::lower(h.name[0])) {
      case 'c':
        if (iequals(h.name, "content-length")) {
          if (!detail::parse_content_length(h.value, s.has_cl, s.cl)) {
            fail_at(h, codes.bad, "invalid or conflicting Content-Length");
          }
        } else if (iequals(h.name, "connection")) {
          s.conn_close |= list_contains(h.value, "close");
          s.conn_keep_alive |= list_contains(h.value, "keep-alive");
          s.conn_upgrade |= list_contains(h.value, "upgrade");
        }
        break;
      case 't':
        if (iequals(h.name, "transfer-encoding")) {
          if (s.te_field == nullptr) s.te_field = &h;
          switch (detail::scan_transfer_encoding(h.value, s.te)) {
            case detail::TeError::None:
              break;
            case detail::TeError::Syntax:
              fail_at(h, codes.bad, "invalid Transfer-Encoding");
              break;
            case detail::TeError::DoubleChunked:
              fail_at(h, codes.bad, "chunked applied twice");
              break;
          }
        }
        break;
      case 'h':
        if (iequals(h.name, "host")) {
          ++s.host_count;
          s.host = &h;
        }
        break;
      case 'e':
        if (iequals(h.name, "expect") && iequals(h.value, "100-continue")) {
          s.expect_continue = true;
        }
        break;
      case 'u':
        if (s.upgrade == nullptr && iequals(h.name, "upgrade")) s.upgrade = &h;
        break;
      default:
        break;
    }
  }
  return s;
}

// The request semantics that do not depend on how the head was encoded: Host, framing,
// Connection, Expect, Upgrade. `buf` locates error offsets (empty: offsets are not meaningful).
ParseResult interpret_fields(std::string_view buf, RequestHead& out, ParseResult r) {
  auto at = [&](std::string_view part) { return buf.empty() ? size_t{0} : offset_of(buf, part); };
  const FieldSummary s = summarize(out.headers, Codes{400, 431});
  const bool http11 = out.version_minor == 1;
  if (s.error != nullptr) return fail(s.error_status, at(s.error_field->name), s.error);
  if (s.host_count > 1) return fail(400, at(s.host->name), "duplicate Host");
  if (s.host_count == 0 && http11)
    return fail(400, buf.empty() ? 0 : r.consumed - 2, "missing Host");
  if (s.host != nullptr) {
    // An empty Host is what RFC 9110 7.2 asks for when the target has no authority.
    if (!s.host->value.empty() && !valid_authority(s.host->value, false)) {
      return fail(400, at(s.host->value), "invalid Host");
    }
    if (out.authority.empty()) out.host = s.host->value;
  }
  if (!out.authority.empty()) out.host = out.authority;

  if (s.te.present) {
    const size_t te_at = at(s.te_field->name);
    if (!http11) return fail(400, te_at, "Transfer-Encoding in an HTTP/1.0 request");
    if (s.has_cl) return fail(400, te_at, "both Content-Length and Transfer-Encoding");
    if (!s.te.chunked_last) return fail(400, te_at, "final transfer coding is not chunked");
    if (s.te.other) return fail(501, te_at, "unsupported transfer coding");
    out.body = BodyKind::Chunked;
  } else if (s.has_cl && s.cl > 0) {
    out.body = BodyKind::ContentLength;
    out.content_length = s.cl;
  }

  out.keep_alive = http11 ? !s.conn_close : (s.conn_keep_alive && !s.conn_close);
  if (http11) {
    out.expect_continue = s.expect_continue;
    if (s.upgrade != nullptr) {
      out.upgrade = s.conn_upgrade;
      out.upgrade_protocol = s.upgrade->value;
    }
  }
  return r;
}

}  // namespace

ParseResult parse_request(std::string_view buf, RequestHead& out, std::span<Header> storage,
                          const Limits& limits) {
  out = RequestHead{};
  // Bytes past the head limit are never looked at; running into it is 431.
  const std::string_view b = buf.substr(0, limits.max_head_bytes);
  auto too_big = [&](ParseResult r) {
    if (r.status == ParseStatus::NeedMore && buf.size() > b.size()) {
      return fail(431, b.size(), "request head too large");
    }
    return r;
  };

  ParseResult r = parse_request_line(b, out, limits);
  if (r.status != ParseStatus::Done) return too_big(r);
  size_t count = 0;
  r = parse_fields(b, r.consumed, storage, limits.max_headers, Codes{400, 431}, count);
  if (r.status != ParseStatus::Done) return too_big(r);
  out.headers = storage.first(count);

  return interpret_fields(buf, out, r);
}

ParseResult interpret_request(RequestHead& out) {
  out.method = method_of(out.method_text);
  out.version_minor = 1;
  if (out.target.empty()) return fail(400, 0, "empty request-target");
  for (size_t i = 0; i < out.target.size(); ++i) {
    const char c = out.target[i];
    if (c == '%') {
      if (i + 2 >= out.target.size() || !chars::is_hex(out.target[i + 1]) ||
          !chars::is_hex(out.target[i + 2]))
        return fail(400, 0, "invalid percent-escape");
      i += 2;
      continue;
    }
    if (!chars::is(c, chars::kTarget))
      return fail(400, 0,
                  c == '#' ? "fragment in request-target" : "invalid byte in request-target");
  }
  if (const char* why = classify_target(out)) return fail(400, 0, why);
  ParseResult r;
  r.status = ParseStatus::Done;
  r = interpret_fields({}, out, r);
  if (r.status == ParseStatus::Error) r.error_offset = 0;
  return r;
}

ParseResult parse_response(std::string_view buf, ResponseHead& out, std::span<Header> storage,
                           const Limits& limits, Method request_method) {
  out = ResponseHead{};
  const std::string_view b = buf.substr(0, limits.max_head_bytes);
  auto too_big = [&](ParseResult r) {
    if (r.status == ParseStatus::NeedMore && buf.size() > b.size()) {
      return fail(502, b.size(), "response head too large");
    }
    return r;
  };

  ParseResult r = parse_status_line(b, out, limits);
  if (r.status != ParseStatus::Done) return too_big(r);
  size_t count = 0;
  r = parse_fields(b, r.consumed, storage, limits.max_headers, Codes{502, 502}, count);
  if (r.status != ParseStatus::Done) return too_big(r);
  out.headers = storage.first(count);

  const FieldSummary s = summarize(out.headers, Codes{502, 502});
  const bool http11 = out.version_minor == 1;
  if (s.error != nullptr) return fail(502, offset_of(buf, s.error_field->name), s.error);
  if (s.te.present) {
    const size_t at = offset_of(buf, s.te_field->name);
    if (s.has_cl) return fail(502, at, "both Content-Length and Transfer-Encoding");
    if (!http11) return fail(502, at, "Transfer-Encoding in an HTTP/1.0 response");
  }

  out.keep_alive = http11 ? !s.conn_close : (s.conn_keep_alive && !s.conn_close);
  const uint16_t st = out.status;
  const bool bodiless = request_method == Method::Head || st < 200 || st == 204 || st == 304 ||
                        (request_method == Method::Connect && st < 300);
  if (bodiless) return r;
  if (s.te.present) {
    if (s.te.chunked_last) {
      out.body = BodyKind::Chunked;
    } else {
      out.body = BodyKind::UntilClose;
      out.keep_alive = false;
    }
  } else if (s.has_cl) {
    if (s.cl > 0) {
      out.body = BodyKind::ContentLength;
      out.content_length = s.cl;
    }
  } else {
    out.body = BodyKind::UntilClose;
    out.keep_alive = false;
  }
  return r;
}

}  // namespace weir::http
