#include "proxy/forward.hpp"

#include <charconv>

#include "http/status.hpp"

namespace weir::proxy {
namespace {

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, p);
}

bool is_forwarded_header(std::string_view name) {
  switch (name.size()) {  // by length first: most fields are none of these
    case 9:
      return http::iequals(name, "forwarded");
    case 15:
      return http::iequals(name, "x-forwarded-for");
    case 16:
      return http::iequals(name, "x-forwarded-host");
    case 17:
      return http::iequals(name, "x-forwarded-proto");
    default:
      return false;
  }
}

}  // namespace

void split_absolute_target(std::string_view target, std::string_view& origin_form,
                           std::string_view& authority) {
  authority = {};
  origin_form = target;
  size_t scheme_end = target.find("://");
  if (target.empty() || target[0] == '/' || scheme_end == std::string_view::npos) return;
  std::string_view rest = target.substr(scheme_end + 3);
  size_t slash = rest.find_first_of("/?");
  authority = rest.substr(0, slash);
  if (slash == std::string_view::npos) {
    origin_form = "/";
  } else {
    // "http://h?q" gives "?q": build_request_head puts the "/" in front.
    origin_form = rest.substr(slash);
  }
}

void build_request_head(const http::RequestHead& req, const RequestForward& fwd, std::string& out) {
  out.append(req.method_text);
  out.push_back(' ');
  if (!fwd.target.empty() && fwd.target[0] == '?') out.push_back('/');
  out.append(fwd.target);
  out.append(" HTTP/1.1\r\n");
  append_header(out, "Host", fwd.host);
  std::string_view prior_xff;
  const http::HopByHop hop_by_hop(req.headers);
  for (const auto& h : req.headers) {
    if (http::iequals(h.name, "host") || http::iequals(h.name, "content-length")) continue;
    if (hop_by_hop(h.name)) continue;
    if (fwd.edits && fwd.edits->removes(h.name)) continue;
    if (is_forwarded_header(h.name)) {
      if (fwd.trusted_client) {
        if (http::iequals(h.name, "x-forwarded-for")) {
          prior_xff = h.value;
          continue;
        }
        append_header(out, h.name, h.value);
      }
      continue;
    }
    append_header(out, h.name, h.value);
  }
  out.append("X-Forwarded-For: ");
  if (!prior_xff.empty()) {
    out.append(prior_xff);
    out.append(", ");
  }
  out.append(fwd.client_ip);
  out.append("\r\n");
  // Proto and host describe this hop unless a trusted proxy already set them (kept above).
  bool have_proto = false, have_host = false;
  if (fwd.trusted_client) {
    for (const auto& h : req.headers) {
      have_proto |= http::iequals(h.name, "x-forwarded-proto");
      have_host |= http::iequals(h.name, "x-forwarded-host");
    }
  }
  if (!have_proto) append_header(out, "X-Forwarded-Proto", fwd.proto);
  if (!have_host && !fwd.host.empty()) append_header(out, "X-Forwarded-Host", fwd.host);
  switch (req.body) {
    case http::BodyKind::ContentLength:
      out.append("Content-Length: ");
      append_uint(out, req.content_length);
      out.append("\r\n");
      break;
    case http::BodyKind::Chunked:
      out.append("Transfer-Encoding: chunked\r\n");
      break;
    default:
      break;
  }
  if (fwd.edits)
    fwd.edits->for_each_added(
        [&](std::string_view n, std::string_view v) { append_header(out, n, v); });
  if (fwd.upgrade) {
    append_header(out, "Connection", "upgrade");
    append_header(out, "Upgrade", req.upgrade_protocol);
  }
  out.append("\r\n");
}

void build_response_head(const ResponseOut& resp, OutFraming framing, bool close,
                         bool keep_alive_10, std::string& out) {
  out.append("HTTP/1.1 ");
  append_uint(out, resp.status);
  out.push_back(' ');
  out.append(resp.reason.empty() ? http::reason_phrase(resp.status) : resp.reason);
  out.append("\r\n");
  bool upgrade = resp.status == 101;
  const http::HopByHop hop_by_hop(resp.fields);
  resp.for_each_field([&](std::string_view name, std::string_view value) {
    if (http::iequals(name, "content-length")) {
      // Kept as sent where it describes no body of ours to frame (HEAD, 304).
      if (framing == OutFraming::None) append_header(out, name, value);
      return;
    }
    if (upgrade && http::iequals(name, "upgrade")) {
      append_header(out, name, value);
      return;
    }
    if (hop_by_hop(name)) return;
    append_header(out, name, value);
  });
  switch (framing) {
    case OutFraming::ContentLength:
      out.append("Content-Length: ");
      append_uint(out, resp.content_length);  // weir's own answers: their body's (HEAD too)
      out.append("\r\n");
      break;
    case OutFraming::Chunked:
      out.append("Transfer-Encoding: chunked\r\n");
      break;
    default:
      break;
  }
  if (upgrade) {
    out.append("Connection: upgrade\r\n");
  } else if (close) {
    out.append("Connection: close\r\n");
  } else if (keep_alive_10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

}  // namespace weir::proxy
