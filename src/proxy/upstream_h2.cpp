#include "proxy/upstream_h2.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/log.hpp"
#include "http/fields.hpp"
#include "model/snapshot.hpp"
#include "net/tls/tls.hpp"
#include "proxy/upstream_conn.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

// Bounds of what a server may send per stream: a field block (head or trailers) and the
// number of 1xx heads kept before the final one.
constexpr size_t kMaxFieldBlock = 64 * 1024;
constexpr size_t kMaxInterim = 8;
// Streams per connection whatever the server allows, and what is assumed before its SETTINGS.
constexpr uint32_t kMaxStreams = 1000;
constexpr uint32_t kAssumedStreams = 100;
// `auto`: how long a server's ALPN choice of http/1.1 is remembered.
constexpr Millis kHttp1Memory{60000};

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
  if (!ended_) {
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
  if (block_bytes_ > kMaxFieldBlock) return false;
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

// ------------------------------------------------------------------------------------------
// H2Session

struct H2UpCallbacks {
  static H2Channel* channel(nghttp2_session* s, int32_t id) {
    return static_cast<H2Channel*>(nghttp2_session_get_stream_user_data(s, id));
  }
  static ssize_t send(nghttp2_session*, const uint8_t* data, size_t len, int, void* user) {
    auto* self = static_cast<H2Session*>(user);
    size_t n = self->io_.out.append({reinterpret_cast<const char*>(data), len});
    return n == 0 ? static_cast<ssize_t>(NGHTTP2_ERR_WOULDBLOCK) : static_cast<ssize_t>(n);
  }
  static int begin_headers(nghttp2_session* s, const nghttp2_frame* f, void*) {
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    if (H2Channel* ch = channel(s, f->hd.stream_id))
      ch->begin_fields(f->headers.cat == NGHTTP2_HCAT_HEADERS && ch->head_ready());
    return 0;
  }
  static int header(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name, size_t nlen,
                    const uint8_t* value, size_t vlen, uint8_t, void*) {
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    H2Channel* ch = channel(s, f->hd.stream_id);
    if (!ch) return 0;
    if (!ch->add_field({reinterpret_cast<const char*>(name), nlen},
                       {reinterpret_cast<const char*>(value), vlen}))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets this stream
    return 0;
  }
  static int frame_recv(nghttp2_session* s, const nghttp2_frame* f, void* user) {
    auto* self = static_cast<H2Session*>(user);
    switch (f->hd.type) {
      case NGHTTP2_HEADERS:
        if (H2Channel* ch = channel(s, f->hd.stream_id))
          ch->end_fields(f->hd.flags & NGHTTP2_FLAG_END_STREAM);
        break;
      case NGHTTP2_DATA:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          if (H2Channel* ch = channel(s, f->hd.stream_id)) ch->end_fields(true);
        }
        break;
      case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && !self->settings_received_) {
          self->settings_received_ = true;
          // The streams that waited for the server's limits may go now.
          for (H2Channel* ch : self->channels_)
            if (!ch->submitted()) ch->notify();
        }
        break;
      case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) self->ping_outstanding_ = false;
        break;
      case NGHTTP2_GOAWAY:
        // In-flight streams up to last_stream_id finish; nghttp2 closes the later ones with
        // REFUSED_STREAM; no new stream goes here.
        self->goaway_ = true;
        log::debug("HTTP/2 upstream {}: GOAWAY (last stream {}, error {})", self->name_,
                   f->goaway.last_stream_id, f->goaway.error_code);
        break;
      default:
        break;
    }
    return 0;
  }
  static int data_chunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len,
                        void*) {
    H2Channel* ch = channel(s, id);
    if (!ch) {
      // A stream weir let go: its bytes still count against the connection's window.
      nghttp2_session_consume_connection(s, len);
      return 0;
    }
    if (!ch->on_data({reinterpret_cast<const char*>(data), len}))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
  }
  static int stream_close(nghttp2_session* s, int32_t id, uint32_t error_code, void*) {
    if (H2Channel* ch = channel(s, id)) ch->on_closed(error_code);
    return 0;
  }
  static int not_sent(nghttp2_session* s, const nghttp2_frame* f, int lib_error, void*) {
    // A request HEADERS that could not go (GOAWAY came first): the stream was never seen.
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    if (H2Channel* ch = channel(s, f->hd.stream_id)) {
      log::debug("HTTP/2 upstream: request not sent: {}", nghttp2_strerror(lib_error));
      ch->on_closed(NGHTTP2_REFUSED_STREAM);
    }
    return 0;
  }
};

H2Session::H2Session(H2Pool& pool, Worker& w, const model::ServerRuntime& srv,
                     config::UpstreamProtocol proto)
    : pool_(pool),
      w_(w),
      uid_(srv.uid),
      name_(srv.address_text),
      addr_(srv.addr),
      tls_(srv.tls),
      proto_(proto) {
  idle_timer_.set_callback([this] { on_idle_timer(); });
}

H2Session::~H2Session() {
  if (session_) nghttp2_session_del(session_);
}

BufferPool& H2Session::buffers() {
  return w_.buffers();
}

bool H2Session::start() {
  int fd = net::connect_nonblocking(addr_);
  if (fd < 0) {
    log::debug("HTTP/2 upstream {}: connect failed: {}", name_, strerror(errno));
    return false;
  }
  io_.fd = fd;
  io_.writable = false;
  if (tls_) io_.transport = std::make_unique<net::tls::TlsTransport>(tls_->new_session());
  w_.reactor().add(fd, this);
  return true;
}

bool H2Session::accepting() const {
  if (state_ == State::Dead || goaway_) return false;
  uint32_t limit = kAssumedStreams;
  if (session_ && settings_received_)
    limit = std::min(kMaxStreams, nghttp2_session_get_remote_settings(
                                      session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
  return channels_.size() < limit;
}

void H2Session::attach(H2Channel* ch) {
  channels_.push_back(ch);
  ch->attach(this);
  idle_since_ = {};
  idle_timer_.clear();
}

void H2Session::detach(H2Channel* ch) {
  auto it = std::find(channels_.begin(), channels_.end(), ch);
  if (it != channels_.end()) {
    *it = channels_.back();
    channels_.pop_back();
  }
  schedule();  // RST_STREAM / WINDOW_UPDATE to send, or the connection is idle now
}

void H2Session::schedule() {
  if (scheduled_ || state_ == State::Dead) return;
  scheduled_ = true;
  w_.reactor().defer([this] {
    scheduled_ = false;
    turn();
  });
}

void H2Session::on_event(uint32_t events) {
  if (state_ == State::Dead) return;
  io_.note_events(events);
  if (state_ == State::Connecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (int err = net::socket_error(io_.fd); err != 0) {
      log::debug("HTTP/2 upstream {}: connect failed: {}", name_, strerror(err));
      fail(false);
      return;
    }
    if (io_.transport) {
      state_ = State::Handshake;
      io_.readable = io_.writable = true;
    } else if (!setup_session()) {
      return;
    }
  }
  turn();
}

void H2Session::turn() {
  if (state_ == State::Handshake && !handshake()) return;
  if (state_ == State::Ready) io();
  if (state_ == State::Ready && channels_.empty()) check_idle();
}

// TLS: the handshake runs inside the reads; ALPN must have chosen h2.
bool H2Session::handshake() {
  w_.buffers().acquire(io_.in);
  io_.fill();
  auto* t = io_.transport.get();
  if (!t->handshake_done()) {
    if (io_.failed || io_.eof || io_.write_failed) {
      log::warn("HTTP/2 upstream {}: TLS handshake failed: {}", name_, t->last_error());
      fail(false);
    }
    return false;
  }
  if (t->alpn() != "h2") {
    if (proto_ == config::UpstreamProtocol::Auto) {
      // HTTP/1.1 it is: the requests waiting here go again, on HTTP/1.1 connections.
      pool_.note_http1(uid_);
      log::debug("HTTP/2 upstream {}: ALPN chose {}", name_,
                 t->alpn().empty() ? "nothing" : t->alpn());
      fail(true);
    } else {
      log::warn("HTTP/2 upstream {}: the server did not choose h2 in ALPN (got \"{}\")", name_,
                t->alpn());
      fail(false);
    }
    return false;
  }
  return setup_session();
}

bool H2Session::setup_session() {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_send_callback(cb, &H2UpCallbacks::send);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &H2UpCallbacks::begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, &H2UpCallbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &H2UpCallbacks::frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &H2UpCallbacks::data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &H2UpCallbacks::stream_close);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, &H2UpCallbacks::not_sent);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Windows open only as the exchanges take bytes (sync_consumed).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_peer_max_concurrent_streams(opt, kAssumedStreams);
  nghttp2_option_set_max_reserved_remote_streams(opt, 0);
  int rv = nghttp2_session_client_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) {
    log::error("HTTP/2 upstream {}: cannot create a session: {}", name_, nghttp2_strerror(rv));
    fail(false);
    return false;
  }
  // A stream's window is one buffer block: what a server may send ahead of the exchange
  // always fits in the stream's buffer. The connection's window is wide: the streams' windows
  // bound memory.
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(w_.buffers().block_size())},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxFieldBlock},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, (1 << 30));
  state_ = State::Ready;
  // Copy: a channel told may let go at once.
  std::vector<H2Channel*> waiting = channels_;
  for (H2Channel* ch : waiting)
    ch->on_ready();
  return true;
}

void H2Session::io() {
  for (int round = 0; round < 16; ++round) {
    bool moved = false;
    w_.buffers().acquire(io_.in);
    moved |= io_.fill();
    if (!io_.in.empty()) {
      std::string_view in = io_.in.readable();
      ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()),
                                            in.size());
      if (rv < 0) {
        log::warn("HTTP/2 upstream {}: {}", name_, nghttp2_strerror(static_cast<int>(rv)));
        fail(false);
        return;
      }
      io_.in.consume(static_cast<size_t>(rv));
      moved = true;
    }
    w_.buffers().acquire(io_.out);
    size_t before = io_.out.size();
    if (nghttp2_session_want_write(session_)) {
      int rv = nghttp2_session_send(session_);
      if (rv != 0) {
        log::warn("HTTP/2 upstream {}: {}", name_, nghttp2_strerror(rv));
        fail(false);
        return;
      }
    }
    moved |= io_.out.size() != before;
    moved |= io_.flush();
    if (io_.failed || io_.write_failed) {
      log::debug("HTTP/2 upstream {}: connection reset", name_);
      fail(false);
      return;
    }
    if (io_.eof && io_.in.empty()) {
      log::debug("HTTP/2 upstream {}: the server closed the connection", name_);
      fail(false);
      return;
    }
    if (!moved) break;
    if (round == 15) schedule();  // more to do: after the others had their turn
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_) &&
      io_.out.empty()) {
    close();  // both sides said GOAWAY and nothing is in flight
    return;
  }
  if (io_.in.empty()) w_.buffers().release(io_.in);
  if (io_.out.empty()) w_.buffers().release(io_.out);
}

// The connection is gone: streams the server never saw are refused (they go again elsewhere);
// the others failed. `refused`: every stream is (auto found HTTP/1.1).
void H2Session::fail(bool refused) {
  if (state_ == State::Dead) return;
  bool was_ready = state_ == State::Ready;
  std::vector<H2Channel*> chans;
  chans.swap(channels_);
  State before = state_;
  state_ = State::Dead;  // no turn from here on
  for (H2Channel* ch : chans) {
    if (!was_ready && !refused) {
      ch->on_connect_failed();
    } else {
      ch->on_session_gone(refused || !ch->submitted());
    }
  }
  (void)before;
  close();
}

void H2Session::close() {
  if (closed_) return;
  closed_ = true;
  if (state_ != State::Dead) {
    state_ = State::Dead;
    std::vector<H2Channel*> chans;
    chans.swap(channels_);
    for (H2Channel* ch : chans)
      ch->on_session_gone(!ch->submitted());
  }
  pool_.remove(this);
  idle_timer_.clear();
  if (io_.transport) io_.transport->shutdown(io_.fd);
  io_.in.clear();
  io_.out.clear();
  w_.buffers().release(io_.in);
  w_.buffers().release(io_.out);
  net::close_fd(io_.fd);
  io_.fd = -1;
  w_.reactor().defer([this] { delete this; });
}

// No stream left: kept for the next requests (PING checks it stays alive) unless it is going
// away, the worker drains, or enough connections to this server are idle already.
void H2Session::check_idle() {
  if (goaway_ || w_.draining() || pool_.idle_beyond_limit(this)) {
    close();
    return;
  }
  if (idle_since_ != TimePoint{}) return;
  idle_since_ = w_.reactor().now();
  ping_outstanding_ = false;
  idle_timer_.set(w_.reactor().timers(), idle_since_ + ping_interval());
}

Millis H2Session::ping_interval() const {
  return std::max(Millis(1000), pool_.idle_timeout() / 3);
}

void H2Session::on_idle_timer() {
  if (state_ != State::Ready || !channels_.empty()) return;
  TimePoint now = w_.reactor().now();
  if (now - idle_since_ >= pool_.idle_timeout()) {
    close();
    return;
  }
  if (ping_outstanding_) {
    log::debug("HTTP/2 upstream {}: no PING answer: closing the idle connection", name_);
    close();
    return;
  }
  ping_outstanding_ = true;
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
  schedule();
  idle_timer_.set(w_.reactor().timers(), now + ping_interval());
}

// ------------------------------------------------------------------------------------------
// H2Pool

H2Pool::~H2Pool() {
  close_all();
}

UpstreamConn* H2Pool::open(const model::ServerRuntime& srv, config::UpstreamProtocol proto,
                           bool& fresh) {
  if (srv.uid >= lists_.size()) lists_.resize(srv.uid + 1);
  List& l = lists_[srv.uid];
  H2Session* s = nullptr;
  for (H2Session* c = l.head; c; c = c->pool_next) {
    if (c->accepting()) {
      s = c;
      break;
    }
  }
  fresh = s == nullptr;
  if (!s) {
    s = new H2Session(*this, w_, srv, proto);
    if (!s->start()) {
      delete s;
      return nullptr;
    }
    s->pool_next = l.head;
    if (l.head) l.head->pool_prev = s;
    l.head = s;
    ++l.size;
  }
  auto* up = new UpstreamConn(w_, -1, srv.uid);
  up->h2 = std::make_unique<H2Channel>(*up);
  up->reused = s->ready();
  up->connecting = !s->ready();
  up->stream.writable = true;
  s->attach(up->h2.get());
  return up;
}

bool H2Pool::speaks_http1(uint32_t uid) const {
  return uid < http1_until_.size() && http1_until_[uid] > w_.reactor().now();
}

void H2Pool::note_http1(uint32_t uid) {
  if (uid >= http1_until_.size()) http1_until_.resize(uid + 1);
  http1_until_[uid] = w_.reactor().now() + kHttp1Memory;
}

bool H2Pool::idle_beyond_limit(const H2Session* s) const {
  if (s->server_uid() >= lists_.size()) return false;
  uint32_t idle = 0;
  for (H2Session* c = lists_[s->server_uid()].head; c; c = c->pool_next) {
    if (c != s && c->streams() == 0) ++idle;
  }
  return idle >= max_idle_;
}

void H2Pool::remove(H2Session* s) {
  if (s->server_uid() >= lists_.size()) return;
  List& l = lists_[s->server_uid()];
  bool linked = s->pool_prev || l.head == s;
  if (!linked) return;
  if (s->pool_prev)
    s->pool_prev->pool_next = s->pool_next;
  else
    l.head = s->pool_next;
  if (s->pool_next) s->pool_next->pool_prev = s->pool_prev;
  s->pool_prev = s->pool_next = nullptr;
  --l.size;
}

void H2Pool::close_all() {
  for (auto& l : lists_) {
    while (l.head)
      l.head->close();  // unlinks itself
  }
}

void H2Pool::close_idle() {
  for (auto& l : lists_) {
    for (H2Session* c = l.head; c;) {
      H2Session* next = c->pool_next;
      if (c->streams() == 0) c->close();
      c = next;
    }
  }
}

size_t H2Pool::connections() const {
  size_t n = 0;
  for (const auto& l : lists_)
    n += l.size;
  return n;
}

}  // namespace weir::proxy
