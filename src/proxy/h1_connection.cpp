#include "proxy/h1_connection.hpp"

#include <charconv>

#include "core/log.hpp"
#include "http/fields.hpp"
#include "http/status.hpp"
#include "net/tls/tls.hpp"
#include "proxy/exchange.hpp"
#include "proxy/h2_connection.hpp"
#include "proxy/tunnel.hpp"

namespace weir::proxy {

// An idle keep-alive connection costs its H1Connection, from a 64-byte slab class: one more byte
// than 448 costs 64 per connection (tests/e2e/test_memory_bounds.py measures the total).
static_assert(sizeof(H1Connection) <= 448, "H1Connection outgrew its 448-byte slab class");

namespace {

// Room kept free in an output buffer for chunk framing around a payload piece.
constexpr size_t kFramingRoom = 32;

void append_chunk(Buffer& out, std::string_view payload) {
  char hex[20];
  auto [p, ec] = std::to_chars(hex, hex + sizeof hex - 2, payload.size(), 16);
  (void)ec;
  *p++ = '\r';
  *p++ = '\n';
  out.append(std::string_view(hex, static_cast<size_t>(p - hex)));
  out.append(payload);
  out.append("\r\n");
}

// Bytes of the trailer fields that may be forwarded, as the last chunk carries them. A section
// that cannot fit `out` even empty is dropped rather than waited for forever (only near 16 KiB
// with the smallest buffer_size): 0.
size_t forwarded_trailer_bytes(const Buffer& out, std::string_view trailers) {
  size_t size = 0;
  http::for_each_field_line(trailers, [&](std::string_view name, std::string_view value) {
    if (http::trailer_field_allowed(name)) size += name.size() + value.size() + 4;
  });
  return size + 5 > out.capacity() ? 0 : size;
}

// The last chunk: "0\r\n", the trailer fields that may be forwarded, the final CRLF; all at
// once or nothing (false: no room yet).
bool append_last_chunk(Buffer& out, std::string_view trailers) {
  size_t size = forwarded_trailer_bytes(out, trailers);
  if (size == 0 && !trailers.empty())
    log::debug("{} bytes of trailers dropped (no field allowed, or too large)", trailers.size());
  if (out.free_space() < size + 5) return false;
  out.append("0\r\n");
  if (size > 0) {
    http::for_each_field_line(trailers, [&](std::string_view name, std::string_view value) {
      if (!http::trailer_field_allowed(name)) return;
      out.append(name);
      out.append(": ");
      out.append(value);
      out.append("\r\n");
    });
  }
  out.append("\r\n");
  return true;
}

}  // namespace

size_t BodySink::room() const {
  size_t free = out_.free_space();
  if (!chunked_) return free;
  return free > 2 * kFramingRoom ? free - kFramingRoom : 0;
}

void BodySink::put(std::string_view payload) {
  taken_ += payload.size();
  if (chunked_)
    append_chunk(out_, payload);
  else
    out_.append(payload);
}

bool BodySink::can_finish(std::string_view trailers) const {
  return !chunked_ || out_.free_space() >= forwarded_trailer_bytes(out_, trailers) + 5;
}

bool BodySink::finish(std::string_view trailers) {
  if (!chunked_) return true;  // Content-Length framing: no place for trailers
  return append_last_chunk(out_, trailers);
}

H1Connection::H1Connection(Worker& w, int fd, ClientOrigin origin)
    : ClientConn(w, fd, std::move(origin), false) {}

H1Connection::~H1Connection() = default;

void H1Connection::start() {
  w_.reactor().add(io_.fd, this);
  const WorkerView& v = *w_.view();
  if (const auto& ctx = v.snap->listeners[v.slot_listener[client_.origin.slot]].tls) {
    // The handshake runs inside the first reads, under the header timeout.
    io_.transport = std::make_unique<net::tls::TlsTransport>(ctx->new_session());
    client_.tls = true;
    phase_ = Phase::Handshake;
  }
  // The first request head must arrive within the header timeout (slowloris).
  arm(TimerKind::Header);
  run();
}

void H1Connection::arm(TimerKind kind) {
  timer_kind_ = kind;
  const auto& t = listener().timeouts;
  arm_timer(kind == TimerKind::Header ? t.header : t.idle);
}

void H1Connection::begin_drain() {
  draining_ = true;
  if ((phase_ == Phase::Head || phase_ == Phase::Handshake) && !ex_ && io_.in.empty() &&
      io_.out.empty()) {
    if (served_) {
      close();  // kept alive between requests: nothing in flight
      return;
    }
    // Accepted just now: its first request is most likely on its way (a client that connected
    // as the drain began must not see its connection closed unanswered). A short wait for it;
    // it is answered with Connection: close.
    timer_kind_ = TimerKind::Header;
    arm_timer(std::min<Millis>(listener().timeouts.header, Millis(1000)));
  }
}

bool H1Connection::idle() const {
  if (phase_ == Phase::Head) return ex_ == nullptr;
  return phase_ == Phase::Exchange && ex_ != nullptr && ex_->waiting_for_client();
}

bool H1Connection::turn() {
  switch (phase_) {
    case Phase::Handshake:
      return check_handshake();
    case Phase::Head:
      return handle_head();
    case Phase::Exchange:
      return ex_->pump();
    case Phase::Tunnel: {
      bool progress = tunnel_->pump(io_);
      if (tunnel_->finished()) {
        close();
        return true;
      }
      if (progress) arm(TimerKind::Tunnel);
      return progress;
    }
  }
  return false;
}

// TLS: once the handshake is done, ALPN says which codec the connection speaks.
bool H1Connection::check_handshake() {
  if (!io_.transport->handshake_done()) {
    if (io_.eof) close();  // gone before the handshake ended (a port probe, a scanner)
    return io_.eof;
  }
  std::string_view v = io_.transport->version();
  client_.tls_version = v == "TLSv1.3"   ? 13
                        : v == "TLSv1.2" ? 12
                        : v == "TLSv1.1" ? 11
                        : v == "TLSv1"   ? 10
                                         : 0;
  if (io_.transport->alpn() == "h2") {
    if (client_.origin.refuse() != 0) {
      close();  // refused on accept (access, max_connections): HTTP/2 gets no 403 of its own
      return true;
    }
    hand_over_to(new H2Connection(w_, std::move(client_.origin), true));
    return true;
  }
  phase_ = Phase::Head;
  return true;
}

void H1Connection::on_read_failed() {
  if (phase_ == Phase::Handshake) {
    ++w_.stats().tls_handshake_failures;
    log::debug("client {}: TLS handshake failed: {}", client_.ip, io_.transport->last_error());
  }
}

// h2c with prior knowledge: the client opens with the HTTP/2 preface instead of a request.
bool H1Connection::h2c_preface(bool& wait) const {
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::string_view in = io_.in.readable();
  size_t n = std::min(in.size(), kPreface.size());
  if (in.substr(0, n) != kPreface.substr(0, n)) return false;
  if (n < kPreface.size()) {
    wait = !io_.eof;
    return false;
  }
  return true;
}

bool H1Connection::handle_head() {
  if (client_.origin.refuse() != 0) {
    // Refused on accept: the answer goes out before anything the client sent is read.
    keep_alive_ = false;
    phase_ = Phase::Exchange;
    cancel_timer();
    timer_kind_ = TimerKind::None;
    ex_ = w_.exchanges().take();
    ex_->start_refusal(*this, client_.origin.refuse(), client_.origin.extras->retry_after);
    return true;
  }
  if (io_.in.empty()) {
    if (io_.eof) close_after_flush(true);
    return false;
  }
  if (timer_kind_ == TimerKind::Idle) arm(TimerKind::Header);
  if (listener().h2c) {
    bool wait = false;
    if (h2c_preface(wait)) {
      hand_over_to(new H2Connection(w_, std::move(client_.origin), false));
      return true;
    }
    if (wait) return false;
  }
  http::RequestHead req;
  auto r = http::parse_request(io_.in.readable(), req, w_.scratch_headers(), w_.view()->limits);
  switch (r.status) {
    case http::ParseStatus::NeedMore:
      if (io_.in.full()) {
        reject(431);
        return true;
      }
      if (io_.eof) {
        close_after_flush(false);
        return true;
      }
      return false;
    case http::ParseStatus::Error:
      ++w_.stats().parse_errors;
      log::debug("client {}: bad request: {} at byte {}", client_.ip, r.error_reason,
                 r.error_offset);
      reject(r.error_status);
      return true;
    case http::ParseStatus::Done:
      break;
  }
  version_minor_ = req.version_minor;
  keep_alive_ = req.keep_alive && !draining_ && !w_.draining();
  req_body_.reset(req.body, req.content_length);
  req_trailers_.reset();
  cancel_timer();
  timer_kind_ = TimerKind::None;
  phase_ = Phase::Exchange;
  ex_ = w_.exchanges().take();
  ex_->start(*this, req);
  io_.in.consume(r.consumed);  // the parsed views are dead from here on
  return true;
}

void H1Connection::reject(uint16_t status) {
  keep_alive_ = false;
  phase_ = Phase::Exchange;
  ex_ = w_.exchanges().take();
  ex_->start_error(*this, status);
}

BodyRead H1Connection::read_body(BodySink& sink) {
  bool moved = false;
  while (!req_body_.done() && !io_.in.empty()) {
    size_t room = sink.room();
    if (room == 0) break;
    std::string_view avail = io_.in.readable();
    if (avail.size() > room) avail = avail.substr(0, room);
    auto st = req_body_.decode(avail);
    if (st.status == http::BodyDecoder::Status::Error) return BodyRead::Error;
    if (!st.payload.empty()) sink.put(st.payload);
    if (!st.trailer.empty()) {
      // Rare, so kept out of line: an idle connection pays 8 bytes for it.
      if (!req_trailers_) req_trailers_ = std::make_unique<std::string>();
      req_trailers_->append(st.trailer);  // the decoder bounds it (max_trailer_bytes)
    }
    io_.in.consume(st.consumed);
    if (st.consumed == 0) break;
    moved = true;
  }
  // Done once the last chunk fits too: the exchange calls BodySink::finish right after Done, and
  // again at once when it fails (a busy loop while the server does not read).
  if (req_body_.done() && sink.can_finish(request_trailers())) return BodyRead::Done;
  if (!req_body_.done() && io_.in.empty() && io_.eof) return BodyRead::Gone;
  return moved ? BodyRead::Progress : BodyRead::Idle;
}

void H1Connection::send_interim(const http::ResponseHead& head) {
  buffers().acquire(io_.out);  // given back while the request body was awaited
  // HTTP/1.0 clients know no interim answers; 1.1 clients get a bare status line.
  if (version_minor_ != 1 || io_.out.free_space() < 64) return;
  std::string& s = w_.scratch_string();
  s.assign("HTTP/1.1 ").append(std::to_string(head.status)).append(" ");
  s.append(http::reason_phrase(head.status)).append("\r\n\r\n");
  io_.out.append(s);
}

HeadResult H1Connection::send_head(const ResponseOut& head) {
  buffers().acquire(io_.out);  // an answer may come from a timer, outside a turn
  OutFraming framing = OutFraming::None;
  switch (head.body) {
    case http::BodyKind::None:
      break;
    case http::BodyKind::ContentLength:
      framing = OutFraming::ContentLength;
      break;
    case http::BodyKind::Chunked:
    case http::BodyKind::UntilClose:
      framing = version_minor_ == 1 ? OutFraming::Chunked : OutFraming::Close;
      break;
  }
  if (framing == OutFraming::Close || head.last || draining_ || w_.draining()) keep_alive_ = false;
  std::string& s = w_.scratch_string();
  s.clear();
  build_response_head(head, framing, !keep_alive_ && head.status != 101,
                      keep_alive_ && version_minor_ == 0, s);
  if (head.local) s.append(head.local_body);
  if (io_.out.free_space() < s.size())
    return io_.out.empty() ? HeadResult::Refused : HeadResult::Later;
  io_.out.append(s);
  framing_ = head.local ? OutFraming::None : framing;
  return HeadResult::Sent;
}

size_t H1Connection::send_body(std::string_view payload) {
  buffers().acquire(io_.out);
  Buffer& out = io_.out;
  if (framing_ == OutFraming::Chunked) {
    size_t free = out.free_space();
    if (free <= 2 * kFramingRoom) return 0;
    size_t n = std::min(payload.size(), free - kFramingRoom);
    append_chunk(out, payload.substr(0, n));
    return n;
  }
  size_t taken = 0;
  // Nothing queued before these bytes and no TLS: straight from the server's buffer to the
  // client's socket, one copy fewer. (A TLS write that blocked must be retried with at least
  // the bytes it was first given, which only a buffer that grows at its end guarantees.)
  if (!io_.transport && out.empty() && io_.writable && !io_.write_failed) {
    ssize_t n = io_.write_direct(payload.data(), payload.size());
    if (n == net::kIoError) return 0;  // the driver closes the connection
    if (n > 0) taken = static_cast<size_t>(n);
  }
  return taken + out.append(payload.substr(taken));
}

net::Stream* H1Connection::splice_target() {
  if (io_.transport || !io_.out.empty() || io_.write_failed) return nullptr;
  if (framing_ != OutFraming::ContentLength && framing_ != OutFraming::Close) return nullptr;
  return &io_;
}

bool H1Connection::finish_body(std::string_view trailers) {
  buffers().acquire(io_.out);
  // Content-Length or close framing: no place for trailers.
  if (framing_ != OutFraming::Chunked) return true;
  return append_last_chunk(io_.out, trailers);
}

bool H1Connection::upgrade(UpstreamConn* up, ServerSlot& slot) {
  tunnel_ = std::make_unique<Tunnel>(w_, *this, up, std::move(slot));
  phase_ = Phase::Tunnel;
  arm(TimerKind::Tunnel);
  return true;
}

void H1Connection::exchange_done(bool response_complete, bool request_complete) {
  served_ = true;
  w_.exchanges().give_back_later(ex_);
  ex_ = nullptr;
  req_trailers_.reset();
  if (phase_ == Phase::Tunnel) {
    schedule_turn();  // bytes may wait on both sides already
    return;
  }
  phase_ = Phase::Head;
  if (!response_complete) {
    close();  // part of an answer went out: closing is the only honest signal left
    return;
  }
  if (!request_complete) keep_alive_ = false;  // the rest of the body was never read
  if (!keep_alive_) {
    close_after_flush(request_complete);
  } else {
    arm(TimerKind::Idle);
  }
}

void H1Connection::on_timeout() {
  TimerKind kind = timer_kind_;
  timer_kind_ = TimerKind::None;
  if (kind == TimerKind::Header && phase_ == Phase::Head && !io_.in.empty() && io_.out.empty()) {
    reject(408);
    return;
  }
  close();
}

void H1Connection::on_close() {
  if (ex_) {
    ex_->cancel();  // the client is gone
    w_.exchanges().give_back_later(ex_);
    ex_ = nullptr;
  }
  tunnel_.reset();
  ClientConn::on_close();
}

}  // namespace weir::proxy
