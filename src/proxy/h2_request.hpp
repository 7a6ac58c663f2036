#pragma once
// The request head of one HTTP/2 stream as its HEADERS arrive, turned into the same
// http::RequestHead an HTTP/1.1 connection parses: pseudo-fields to method and target,
// :authority (or host) to a "host" field, cookie crumbs joined (RFC 9113 §8.2.3), TE dropped,
// then http::interpret_request applies HTTP/1.1's rules to it.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/parser.hpp"

namespace weir::proxy {

class H2RequestHead {
 public:
  // One decoded field. False once the head is over the limits (HPACK-decoded size, count),
  // from which point fields are only counted (the answer is 431).
  bool add(std::string_view name, std::string_view value, size_t max_bytes, uint32_t max_count);
  bool too_large() const { return too_large_; }
  bool has_content_length() const { return has_content_length_; }
  // Fills `out` (views into this object and `storage`) and checks it; `end_stream`: no DATA
  // follows, else a body without content-length has no known length (sent on chunked).
  // An extended CONNECT (RFC 8441, :protocol websocket) becomes the HTTP/1.1 Upgrade request
  // it stands for: GET :path with `upgrade` set, its body (UntilClose) running until the
  // stream ends.
  http::ParseResult build(http::RequestHead& out, std::span<http::Header> storage,
                          bool end_stream) const;

 private:
  struct Field {
    uint32_t name_at, name_len, value_at, value_len;
  };
  std::string_view name(const Field& f) const { return {arena_.data() + f.name_at, f.name_len}; }
  std::string_view value(const Field& f) const { return {arena_.data() + f.value_at, f.value_len}; }

  std::string arena_;
  std::vector<Field> fields_;
  std::string cookie_;
  std::string protocol_;  // :protocol of an extended CONNECT (RFC 8441)
  static constexpr uint32_t kNone = UINT32_MAX;
  uint32_t method_ = kNone, path_ = kNone, authority_ = kNone;  // indices into fields_
  size_t bytes_ = 0;  // HPACK-decoded size (RFC 9113 §6.5.2 accounting)
  uint32_t count_ = 0;
  bool too_large_ = false;
  bool has_content_length_ = false;
};

}  // namespace weir::proxy
