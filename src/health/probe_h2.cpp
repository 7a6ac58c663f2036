#include "health/probe_h2.hpp"

#include <nghttp2/nghttp2.h>

#include <charconv>
#include <iterator>

namespace weir::health {

struct H2ProbeCallbacks {
  static int header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nlen,
                    const uint8_t* value, size_t vlen, uint8_t, void* user) {
    auto* self = static_cast<H2Probe*>(user);
    if (f->hd.type != NGHTTP2_HEADERS || f->hd.stream_id != 1) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), nlen);
    if (n != ":status") return 0;
    unsigned st = 0;
    auto [p, ec] = std::from_chars(reinterpret_cast<const char*>(value),
                                   reinterpret_cast<const char*>(value) + vlen, st);
    if (ec == std::errc() && st >= 100 && st <= 999) self->status_ = static_cast<uint16_t>(st);
    return 0;
  }
  static int frame_recv(nghttp2_session*, const nghttp2_frame* f, void* user) {
    auto* self = static_cast<H2Probe*>(user);
    if (f->hd.type == NGHTTP2_HEADERS && f->hd.stream_id == 1 && self->status_ >= 200)
      self->head_done_ = true;
    return 0;
  }
  static int stream_close(nghttp2_session*, int32_t id, uint32_t code, void* user) {
    auto* self = static_cast<H2Probe*>(user);
    if (id == 1 && !self->head_done_) {
      self->reset_ = true;
      self->reset_code_ = code;
    }
    return 0;
  }
};

H2Probe::H2Probe(std::string_view scheme, std::string_view authority, std::string_view path) {
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return;
  nghttp2_session_callbacks_set_on_header_callback(cb, &H2ProbeCallbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &H2ProbeCallbacks::frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &H2ProbeCallbacks::stream_close);
  int rv = nghttp2_session_client_new(&session_, cb, this);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) {
    session_ = nullptr;
    return;
  }
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  auto nv = [](std::string_view n, std::string_view v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                      NGHTTP2_NV_FLAG_NONE};
  };
  nghttp2_nv nva[] = {nv(":method", "GET"), nv(":scheme", scheme), nv(":authority", authority),
                      nv(":path", path.empty() ? "/" : path), nv("user-agent", "weir-health")};
  if (nghttp2_submit_request(session_, nullptr, nva, std::size(nva), nullptr, this) != 1) {
    nghttp2_session_del(session_);
    session_ = nullptr;
  }
}

H2Probe::~H2Probe() {
  if (session_) nghttp2_session_del(session_);
}

std::string H2Probe::take_output() {
  std::string out;
  if (!session_) return out;
  for (;;) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n <= 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  return out;
}

H2Probe::Result H2Probe::feed(std::string_view in, uint16_t& status, std::string& error) {
  ssize_t rv =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
  if (rv < 0) {
    error = std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(rv));
    return Result::Error;
  }
  if (head_done_) {
    status = status_;
    return Result::Done;
  }
  if (reset_) {
    error = std::string("HTTP/2: stream reset: ") + nghttp2_http2_strerror(reset_code_);
    return Result::Error;
  }
  return Result::NeedMore;
}

}  // namespace weir::health
