#include "proxy/h2_request.hpp"

namespace weir::proxy {

bool H2RequestHead::add(std::string_view n, std::string_view v, size_t max_bytes,
                        uint32_t max_count) {
  bytes_ += n.size() + v.size() + 32;
  if (++count_ > max_count || bytes_ > max_bytes) too_large_ = true;
  if (too_large_) return false;
  // nghttp2 has already checked names (lower case, token characters), values, pseudo-header
  // order and presence, connection-specific fields and TE (RFC 9113 §8.2, §8.3).
  if (n == "cookie") {
    if (!cookie_.empty()) cookie_ += "; ";
    cookie_.append(v);
    return true;
  }
  if (n == "te") return true;  // only "trailers" is allowed, and it is hop-by-hop
  uint32_t index = static_cast<uint32_t>(fields_.size());
  if (n == ":method") {
    method_ = index;
  } else if (n == ":path") {
    path_ = index;
  } else if (n == ":authority") {
    if (authority_ != kNone) fields_[authority_].name_len = 0;  // a host seen first: replaced
    authority_ = index;
  } else if (n == "host") {
    if (authority_ != kNone) return true;  // :authority wins when both are present
    authority_ = index;
  } else if (n == ":protocol") {
    protocol_.assign(v);  // nghttp2 allows it only on CONNECT, since weir enables RFC 8441
    return true;
  } else if (!n.empty() && n.front() == ':') {
    return true;  // :scheme: the listener decides what X-Forwarded-Proto says
  }
  if (n == "content-length") has_content_length_ = true;
  Field f;
  f.name_at = static_cast<uint32_t>(arena_.size());
  f.name_len = static_cast<uint32_t>(n.size());
  arena_.append(n);
  f.value_at = static_cast<uint32_t>(arena_.size());
  f.value_len = static_cast<uint32_t>(v.size());
  arena_.append(v);
  fields_.push_back(f);
  return true;
}

http::ParseResult H2RequestHead::build(http::RequestHead& out, std::span<http::Header> storage,
                                       bool end_stream) const {
  out = http::RequestHead{};
  size_t n = 0;
  for (uint32_t i = 0; i < fields_.size(); ++i) {
    const Field& f = fields_[i];
    if (i == method_) {
      out.method_text = value(f);
    } else if (i == path_) {
      out.target = value(f);
    } else if (f.name_len == 0) {
      continue;  // replaced
    } else if (n < storage.size()) {
      storage[n++] = {i == authority_ ? std::string_view("host") : name(f), value(f)};
    }
  }
  if (!cookie_.empty() && n < storage.size()) storage[n++] = {"cookie", cookie_};
  out.headers = storage.first(n);
  const bool extended_connect = !protocol_.empty() && out.method_text == "CONNECT";
  if (extended_connect) out.method_text = "GET";
  http::ParseResult r = http::interpret_request(out);
  if (r.status != http::ParseStatus::Done) return r;
  if (extended_connect) {
    out.upgrade = true;
    out.upgrade_protocol = protocol_;
    out.body = end_stream ? http::BodyKind::None : http::BodyKind::UntilClose;
    return r;
  }
  // Without content-length, a body that follows has no known length (sent on chunked).
  if (!has_content_length_) out.body = end_stream ? http::BodyKind::None : http::BodyKind::Chunked;
  return r;
}

}  // namespace weir::proxy
