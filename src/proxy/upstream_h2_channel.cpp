// H2Channel: one request's stream on a pooled HTTP/2 connection, the exchange's side of it
// (upstream_h2.hpp). The connection itself (H2Session) and the pool: upstream_h2.cpp.
#include "proxy/upstream_h2.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/log.hpp"
#include "http/fields.hpp"
#include "proxy/upstream_conn.hpp"

namespace weir::proxy {
namespace {

// 1xx heads kept before the final one.
constexpr size_t kMaxInterim = 8;

// Request fields that describe one HTTP/1.1 connection, or that HTTP/2 carries as
// pseudo-headers (RFC 9113 §8.2.2, §8.3.1).
bool not_for_h2(std::string_view lower) {
  return lower == "host" || lower == "connection" || lower == "keep-alive" ||
         lower == "proxy-connection" || lower == "transfer-encoding" || lower == "upgrade" ||
         lower == "te";
}

void lower_into(std::string& out, std::string_view name) {
  for (char c : name)
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c);
}

nghttp2_nv make_nv(std::string_view n, std::string_view v) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

// Field lines ("Name: value\r\n" each) → lower-cased names and values in `arena`, those that
// may be forwarded as trailers, then nv pairs pointing into it (the arena is sized first, so
// the pointers stay valid).
void trailer_nva(std::string_view lines, std::string& arena, std::vector<nghttp2_nv>& nva) {
  arena.clear();
  arena.reserve(lines.size());
  std::vector<std::pair<size_t, size_t>> spans;  // name start/len, value start/len
  http::for_each_field_line(lines, [&](std::string_view name, std::string_view value) {
    if (!http::trailer_field_allowed(name)) return;
    size_t n0 = arena.size();
    lower_into(arena, name);
    size_t v0 = arena.size();
    arena.append(value);
    spans.push_back({n0, name.size()});
    spans.push_back({v0, value.size()});
  });
  nva.clear();
  for (size_t i = 0; i + 1 < spans.size(); i += 2)
    nva.push_back(make_nv(std::string_view(arena).substr(spans[i].first, spans[i].second),
                          std::string_view(arena).substr(spans[i + 1].first, spans[i + 1].second)));
}

}  // namespace

// ------------------------------------------------------------------------------------------
// H2Channel

H2Channel::~H2Channel() {
  if (session_) release(false);
}

bool H2Channel::ready() const {
  return session_ && session_->ready();
}

void H2Channel::notify() {
  if (up_.owner) up_.owner->on_upstream_event(EPOLLIN);
}

void H2Channel::on_ready() {
  notify();  // the exchange sees ready() in its turn (connect timer, health, then the request)
}

void H2Channel::on_connect_failed() {
  session_ = nullptr;
  connect_failed_ = true;
  up_.stream.failed = true;
  notify();
}

void H2Channel::on_session_gone(bool refused) {
  session_ = nullptr;
  // A stream nghttp2 closed already (refused by a GOAWAY, reset) keeps what its close said.
  if (!ended_ && !closed_) {
    up_.stream.failed = true;
    refused_ = refused;
  }
  notify();
}

bool H2Channel::flush(std::string_view head, bool chunked, bool done, std::string_view trailers) {
  if (!session_ || !session_->ready()) return false;
  if (stream_id_ <= 0 && !session_->may_open()) return false;  // its SETTINGS first
  done_ = done;
  trailers_out_ = trailers;
  if (stream_id_ <= 0) return submit(head, chunked, done, trailers);
  if (deferred_ && !req_ended_ && (!up_.stream.out.empty() || done)) {
    deferred_ = false;
    nghttp2_session_resume_data(session_->session(), stream_id_);
    session_->schedule();
    return true;
  }
  return false;
}

bool H2Channel::submit(std::string_view head, bool chunked, bool done, std::string_view trailers) {
  // The head the exchange built for HTTP/1.1 (filters, forwarding fields, edits applied),
  // turned into HTTP/2 fields: its own bytes, so it parses.
  http::RequestHead req;
  http::Header storage[256];
  http::Limits limits;
  limits.max_request_line = head.size();
  limits.max_head_bytes = head.size() + 1;
  limits.max_headers = std::size(storage);
  auto r = http::parse_request(head, req, storage, limits);
  if (r.status != http::ParseStatus::Done) {
    log::warn("HTTP/2 upstream: cannot convert the request head: {}", r.error_reason);
    up_.stream.failed = true;
    notify();
    return true;
  }
  // The session's scratch (nghttp2 copies the fields): no allocation per request once warm.
  std::string& names = session_->names_scratch();
  names.clear();
  names.reserve(head.size());  // sized first: the views below point into it
  std::vector<nghttp2_nv>& nva = session_->nv_scratch();
  nva.clear();
  nva.push_back(make_nv(":method", req.method_text));
  nva.push_back(make_nv(":scheme", session_->tls() ? "https" : "http"));
  nva.push_back(make_nv(":authority", req.host));
  nva.push_back(make_nv(":path", req.target));
  for (const auto& h : req.headers) {
    size_t at = names.size();
    lower_into(names, h.name);
    std::string_view lower = std::string_view(names).substr(at, h.name.size());
    if (not_for_h2(lower)) continue;
    nva.push_back(make_nv(lower, h.value));
  }
  // weir forwards trailers both ways, and gRPC servers want to hear it.
  nva.push_back(make_nv("te", "trailers"));
  chunked_ = chunked;
  if (chunked_) chunk_decoder_.reset(http::BodyKind::Chunked, 0);
  bool body = !(done && up_.stream.out.empty() && trailers.empty());
  nghttp2_data_provider prd;
  prd.source.ptr = this;
  prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source* src, void*) -> ssize_t {
    return static_cast<H2Channel*>(src->ptr)->read_body(buf, len, flags);
  };
  int32_t id = nghttp2_submit_request(session_->session(), nullptr, nva.data(), nva.size(),
                                      body ? &prd : nullptr, this);
  if (id < 0) {
    log::debug("HTTP/2 upstream: cannot submit the request: {}", nghttp2_strerror(id));
    up_.stream.failed = true;
    refused_ = true;  // nothing reached the server
    notify();
    return true;
  }
  stream_id_ = id;
  session_->note_opened();
  if (!body) req_ended_ = true;
  session_->schedule();
  return true;
}

size_t H2Channel::take_chunked(uint8_t* buf, size_t len) {
  Buffer& out = up_.stream.out;
  size_t n = 0;
  while (n < len && !chunk_decoder_.done() && !out.empty()) {
    std::string_view avail = out.readable();
    auto st = chunk_decoder_.decode(avail.substr(0, std::min(avail.size(), len - n)));
    if (st.status == http::BodyDecoder::Status::Error) break;  // weir framed it: cannot be
    if (!st.payload.empty()) std::memcpy(buf + n, st.payload.data(), st.payload.size());
    n += st.payload.size();
    out.consume(st.consumed);
    if (st.consumed == 0) break;
  }
  return n;
}

ssize_t H2Channel::read_body(uint8_t* buf, size_t len, uint32_t* flags) {
  Buffer& out = up_.stream.out;
  size_t n = 0;
  if (chunked_) {
    n = take_chunked(buf, len);
  } else if (!out.empty()) {
    n = std::min(len, out.size());
    std::memcpy(buf, out.read_ptr(), n);
    out.consume(n);
  }
  bool end = chunked_ ? chunk_decoder_.done() : done_ && out.empty();
  if (n > 0) notify();  // room for more of the client's body
  if (end) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    req_ended_ = true;
    if (!trailers_out_.empty()) {
      std::string arena;
      std::vector<nghttp2_nv> nva;
      trailer_nva(trailers_out_, arena, nva);
      if (!nva.empty() &&
          nghttp2_submit_trailer(session_->session(), stream_id_, nva.data(), nva.size()) == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return static_cast<ssize_t>(n);
  }
  if (n > 0) return static_cast<ssize_t>(n);
  deferred_ = true;
  return NGHTTP2_ERR_DEFERRED;
}

void H2Channel::begin_fields(bool trailers) {
  block_ = trailers ? Block::Trailers : Block::Head;
  block_bytes_ = 0;
  if (!trailers) {
    arena_.clear();
    spans_.clear();
    arena_.reserve(512);
    spans_.reserve(64);
    has_length_ = false;
    status_ = 0;
  }
}

bool H2Channel::add_field(std::string_view name, std::string_view value) {
  block_bytes_ += name.size() + value.size() + 32;
  if (block_bytes_ > H2Channel::kMaxFieldBlock) return false;
  if (block_ == Block::Trailers) {
    // All of them, as an HTTP/1.1 server's chunked trailers would come: the downstream codec
    // filters what it writes.
    if (!trailer_sink_) return true;
    if (trailer_sink_->size() + name.size() + value.size() + 4 > http::kMaxTrailerBytes)
      return false;
    trailer_sink_->append(name).append(": ").append(value).append("\r\n");
    return true;
  }
  if (name == ":status") {
    unsigned st = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), st);
    if (ec != std::errc() || p != value.data() + value.size() || st < 100 || st > 999) return false;
    status_ = static_cast<uint16_t>(st);
    if (status_ < 200) {
      // Kept aside until the block ends: the exchange may look in between (CONTINUATION).
      if (interim_.size() >= kMaxInterim) return false;
      block_ = Block::Interim;
      pending_interim_.status = status_;
      pending_interim_.fields.clear();
    }
    return true;
  }
  if (!name.empty() && name[0] == ':') return true;  // nghttp2 refuses others already
  if (block_ == Block::Interim) {
    pending_interim_.fields.emplace_back(name, value);
    return true;
  }
  if (name == "content-length") {
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), length_);
    has_length_ = ec == std::errc() && p == value.data() + value.size();
  }
  spans_.push_back(static_cast<uint32_t>(arena_.size()));
  spans_.push_back(static_cast<uint32_t>(name.size()));
  arena_.append(name);
  spans_.push_back(static_cast<uint32_t>(arena_.size()));
  spans_.push_back(static_cast<uint32_t>(value.size()));
  arena_.append(value);
  return true;
}

void H2Channel::end_fields(bool end_stream) {
  if (block_ == Block::Interim) interim_.push_back(std::move(pending_interim_));
  if (block_ == Block::Head && status_ >= 200) {
    head_ready_ = true;
    head_ended_ = end_stream;
  }
  block_ = Block::None;
  if (end_stream) {
    ended_ = true;
    up_.stream.eof = true;
  }
  notify();
}

bool H2Channel::on_data(std::string_view data) {
  Buffer& in = up_.stream.in;
  if (!session_) return false;
  session_->buffers().acquire(in);
  size_t n = in.append(data);
  unacked_ += n;
  notify();
  return n == data.size();  // the window is never larger than the buffer
}

void H2Channel::on_closed(uint32_t error_code) {
  closed_ = true;
  if (!ended_) {
    up_.stream.failed = true;
    refused_ = error_code == NGHTTP2_REFUSED_STREAM;
  }
  notify();
}

void H2Channel::sync_consumed() {
  size_t held = up_.stream.in.size();
  if (!session_ || unacked_ <= held) return;
  size_t n = unacked_ - held;
  unacked_ = held;
  if (closed_) {
    nghttp2_session_consume_connection(session_->session(), n);
  } else {
    nghttp2_session_consume(session_->session(), stream_id_, n);
  }
  session_->schedule();
}

void H2Channel::interim(http::ResponseHead& out, std::span<http::Header> storage) const {
  const Interim& i = interim_.front();
  out = {};
  out.status = i.status;
  size_t n = std::min(storage.size(), i.fields.size());
  for (size_t k = 0; k < n; ++k)
    storage[k] = {i.fields[k].first, i.fields[k].second};
  out.headers = storage.first(n);
}

bool H2Channel::head(http::ResponseHead& out, std::span<http::Header> storage, http::Method method,
                     bool http2_client) const {
  out = {};
  out.status = status_;
  out.version_minor = 1;
  size_t count = spans_.size() / 4;
  if (count > storage.size()) return false;
  std::string_view a(arena_);
  for (size_t k = 0; k < count; ++k) {
    const uint32_t* s = &spans_[k * 4];
    storage[k] = {a.substr(s[0], s[1]), a.substr(s[2], s[3])};
  }
  out.headers = storage.first(count);
  out.keep_alive = true;
  if (method == http::Method::Head || status_ == 204 || status_ == 304) {
    out.body = http::BodyKind::None;
  } else if (has_length_) {
    out.body = http::BodyKind::ContentLength;
    out.content_length = length_;
  } else if (head_ended_) {
    // Nothing follows the head (gRPC's trailers-only answer): HTTP/2 keeps it a single
    // HEADERS frame; HTTP/1.1 needs a length to end it.
    out.body = http2_client ? http::BodyKind::None : http::BodyKind::ContentLength;
    out.content_length = 0;
  } else {
    out.body = http::BodyKind::UntilClose;  // until END_STREAM
  }
  return true;
}

void H2Channel::release(bool complete) {
  H2Session* s = session_;
  if (!s) return;
  session_ = nullptr;
  nghttp2_session* ses = s->session();
  if (ses && stream_id_ > 0) {
    nghttp2_session_set_stream_user_data(ses, stream_id_, nullptr);
    if (!closed_)
      nghttp2_submit_rst_stream(ses, NGHTTP2_FLAG_NONE, stream_id_,
                                complete ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
    // What the exchange left unread goes back to the connection's window.
    if (unacked_ > 0) nghttp2_session_consume_connection(ses, unacked_);
    unacked_ = 0;
  }
  s->detach(this);
}

}  // namespace weir::proxy
