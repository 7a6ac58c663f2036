#pragma once
// Re-serializes message heads for forwarding (never the raw bytes received): hop-by-hop headers
// and those named by Connection are dropped, X-Forwarded-* replaced, framing re-stated.
#include <string>
#include <string_view>

#include "http/parser.hpp"
#include "proxy/head_edits.hpp"

namespace weir::proxy {

struct RequestForward {
  std::string_view target;  // origin-form target to send
  std::string_view host;    // Host to send (the authority of an absolute-form target wins)
  std::string_view client_ip;
  bool trusted_client = false;  // keep and extend the client's X-Forwarded-* headers
  std::string_view proto = "http";
  bool upgrade = false;                // forward Upgrade + Connection: upgrade
  const HeaderEdits* edits = nullptr;  // filters' edits (on_upstream_request), or none
};

// Appends the request head to `out` (which the caller clears).
void build_request_head(const http::RequestHead& req, const RequestForward& fwd, std::string& out);

enum class OutFraming : uint8_t { None, ContentLength, Chunked, Close };

// Appends the HTTP/1.1 response head to `out`: the fields that survive the edits, hop-by-hop
// ones dropped, then the framing. `framing` is how weir will send the body to the client (for
// weir's own answers: ContentLength of the local body); `close` adds Connection: close;
// `keep_alive_10` adds Connection: keep-alive (HTTP/1.0 client).
void build_response_head(const ResponseOut& resp, OutFraming framing, bool close,
                         bool keep_alive_10, std::string& out);

// "http://host:port/p?q" → "/p?q", and its authority; origin-form passes through.
void split_absolute_target(std::string_view target, std::string_view& origin_form,
                           std::string_view& authority);

}  // namespace weir::proxy
