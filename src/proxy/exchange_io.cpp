// The bytes of an exchange over the HTTP/1.1 upstream codec: connect events, request head and
// body up (with backpressure), the response head through the filters to the downstream. The
// response body paths are in exchange_body.cpp.
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/log.hpp"
#include "health/passive.hpp"
#include "net/proxy_protocol.hpp"
#include "net/tls/tls.hpp"
#include "proxy/exchange.hpp"

namespace weir::proxy {
namespace {

// Bytes read at a time from a server while its head is awaited for an HTTP/2 stream.
constexpr size_t kHeadStep = 4096;

}  // namespace

void Exchange::on_upstream_event(uint32_t events) {
  if (!up_) return;
  if (up_->h2) {
    // An HTTP/2 stream's news (connection up, head, data, end): looked at in the next pump,
    // never from inside the server session's callbacks.
    ds_->wake();
    return;
  }
  up_->stream.note_events(events);
  if (up_->connecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (net::socket_error(up_->stream.fd) != 0) {
      upstream_failed(Failure::Refused);
      ds_->wake();  // a retry to push, or the 502 to flush
      return;
    }
    on_connected();
  }
  ds_->wake();
}

// `send_proxy_protocol`: the header goes first on the fresh connection, before any TLS byte.
// Nothing was written to the socket yet, so its send buffer takes the whole header at once.
bool Exchange::send_proxy_header() {
  const ClientInfo& c = ds_->client();
  net::SocketAddress src = c.addr().full();
  const net::PeerAddress* local = c.origin.local();
  net::SocketAddress dst = local ? local->full() : net::SocketAddress{};
  std::string header = backend().cfg->send_proxy_protocol == config::ProxyProtocolVersion::V1
                           ? net::proxy_protocol::encode_v1(src, dst)
                           : net::proxy_protocol::encode_v2(src, dst);
  ssize_t n = ::send(up_->stream.fd, header.data(), header.size(), MSG_NOSIGNAL);
  return n == static_cast<ssize_t>(header.size());
}

void Exchange::on_connected() {
  up_->connecting = false;
  if (backend().cfg->send_proxy_protocol != config::ProxyProtocolVersion::Off &&
      !send_proxy_header()) {
    upstream_failed(Failure::Refused);
    return;
  }
  health::connect_success(backend(), server_.index());
  if (tcp_mode_) {
    // Layer 4: the connection is the answer. The downstream relays bytes from now on, and
    // writes the connection's log line when it ends.
    log_.on = false;
    count(0);
    hand_over();
    return;
  }
  touch_wait_timer();
}

bool Exchange::pump() {
  if (phase_ == Phase::Buffering) return buffer_body();
  if (phase_ != Phase::Upstream && phase_ != Phase::Streaming) return false;
  if (sending_local_) return pump_local_body();
  if (up_ && up_->h2 && up_->connecting) return h2_connect_state();
  bool progress = pump_request();
  if (phase_ == Phase::Upstream || phase_ == Phase::Streaming) progress |= pump_response();
  if (up_ && up_->h2) {
    // HTTP/2: the window of what the client took opens again; a request body all sent gives
    // its block back (a stream may live long after: a server stream, a WebSocket).
    up_->h2->sync_consumed();
    if (req_done_ && up_->stream.out.empty()) w_.buffers().release(up_->stream.out);
  }
  if (up_ && waiting_for_client()) {
    // A slow request body: the server connection's empty buffers go back to the pool until
    // more of it comes (or the response starts).
    if (up_->stream.in.empty()) w_.buffers().release(up_->stream.in);
    if (up_->stream.out.empty()) w_.buffers().release(up_->stream.out);
  }
  return progress;
}

// Writes what is due to the server: the rest of the head, then body bytes — from the upstream
// buffer, or `in_place` (the downstream's own bytes; `*in_place_taken` says how many went).
bool Exchange::flush_upstream(std::string_view in_place, size_t* in_place_taken) {
  auto& us = up_->stream;
  if (in_place_taken) *in_place_taken = 0;
  if (up_->h2) {
    // HTTP/2: the head becomes a HEADERS frame once; the body leaves `out` by the stream's
    // data source, as the server's window allows.
    bool moved = up_->h2->flush(fwd_head_, req_chunked_out_, req_done_,
                                req_done_ ? ds_->request_trailers() : std::string_view{});
    if (up_->h2->submitted()) head_sent_ = fwd_head_.size();
    return moved;
  }
  if (us.write_failed || !us.writable) return false;
  if (us.transport) {
    if (head_sent_ >= fwd_head_.size()) return us.flush();
    // TLS to the server: the head, then the buffered body, through the session.
    ssize_t n = us.write_direct(fwd_head_.data() + head_sent_, fwd_head_.size() - head_sent_);
    if (n <= 0) return n == net::kIoError;
    head_sent_ += static_cast<size_t>(n);
    if (head_sent_ >= fwd_head_.size()) us.flush();
    return true;
  }
  // Head and body leave in one writev.
  std::string_view head =
      std::string_view(fwd_head_).substr(std::min(head_sent_, fwd_head_.size()));
  std::string_view body = body_in_place_ ? in_place : us.out.readable();
  if (head.empty() && body.empty()) return false;
  iovec iov[2];
  int count = 0;
  if (!head.empty()) iov[count++] = {const_cast<char*>(head.data()), head.size()};
  if (!body.empty()) iov[count++] = {const_cast<char*>(body.data()), body.size()};
  ssize_t n = net::writev_some(us.fd, iov, count);
  if (n == net::kWouldBlock) {
    us.writable = false;
    return false;
  }
  if (n < 0) {
    us.write_failed = true;
    us.error = errno;
    return true;
  }
  size_t from_head = std::min<size_t>(static_cast<size_t>(n), head.size());
  size_t from_body = static_cast<size_t>(n) - from_head;
  head_sent_ += from_head;
  if (body_in_place_) {
    if (in_place_taken) *in_place_taken = from_body;
  } else {
    us.out.consume(from_body);
  }
  if (static_cast<size_t>(n) < head.size() + body.size()) us.writable = false;
  return true;
}

bool Exchange::pump_request() {
  if (!up_ || up_->connecting) return false;
  bool progress = false;
  if (!req_done_ && !body_in_place_) w_.buffers().acquire(up_->stream.out);
  if (!req_done_ && replay_sent_ < replay_body_.size()) {
    // A buffered or replayed body first, as the server's buffer takes it.
    w_.buffers().acquire(up_->stream.out);
    size_t n = up_->stream.out.append(std::string_view(replay_body_).substr(replay_sent_));
    replay_sent_ += n;
    progress |= n > 0;
    if (replay_sent_ >= replay_body_.size() && body_read_done_) req_done_ = true;
  } else if (!req_done_ && body_read_done_) {
    req_done_ = true;
  } else if (!req_done_ && body_in_place_) {
    std::string_view body;
    BodyRead state = ds_->body_in_place(body);
    if (state == BodyRead::Gone) {
      client_gone();  // the client went away in the middle of its body
      return true;
    }
    size_t taken = 0;
    progress |= flush_upstream(body, &taken);
    if (taken > 0) {
      req_bytes_consumed_ = true;
      log_.bytes_in += taken;
      keep_for_replay(body.substr(0, taken));
      ds_->consume_body(taken);
    }
    if (state == BodyRead::Done && taken == body.size()) req_done_ = body_read_done_ = true;
    if (req_done_) progress |= flush_upstream();  // a head not all sent yet
  } else if (!req_done_) {
    BodySink sink(up_->stream.out, req_chunked_out_);
    size_t before = up_->stream.out.size();
    BodyRead got = ds_->read_body(sink);
    log_.bytes_in += sink.taken();
    switch (got) {
      case BodyRead::Idle:
        break;
      case BodyRead::Progress:
        req_bytes_consumed_ = progress = true;
        break;
      case BodyRead::Done:
        req_bytes_consumed_ = progress = true;
        // The chunked terminator (with the request's trailers), once it fits.
        req_done_ = body_read_done_ = sink.finish(ds_->request_trailers());
        break;
      case BodyRead::Error:
        log::debug("client {}: bad request body", ds_->client().ip);
        release_upstream(false);
        answer(400, "Bad Request\n", true);
        return true;
      case BodyRead::Gone:
        client_gone();  // the client went away in the middle of its body
        return true;
    }
    if (up_->stream.out.size() > before) keep_for_replay(up_->stream.out.readable().substr(before));
  }
  if (!body_in_place_) progress |= flush_upstream();
  if (!replayable() && !fwd_head_.empty() && head_sent_ >= fwd_head_.size()) {
    // Body bytes have left the client: no retry can resend this head any more.
    std::string().swap(fwd_head_);
    head_sent_ = 0;
  }
  auto& us = up_->stream;
  if (us.write_failed && us.transport && !resp_bytes_) {
    const net::Transport* t = us.transport.get();
    if (!t->handshake_done()) {
      // The request never reached the server: safe to try another one.
      log::warn("backend {} server {}: TLS handshake failed: {}", backend().cfg->name,
                backend().server(server_).name, t->last_error());
      upstream_failed(Failure::Refused);
      return true;
    }
  }
  if (progress && phase_ == Phase::Upstream) touch_wait_timer();
  if (ws_over_h2_ && req_done_ && !ws_shut_ && phase_ == Phase::Streaming && us.out.empty()) {
    // The WebSocket client ended its stream: the server sees its side end (as a tunnel's
    // half-close), answers with its own end, and the stream ends both ways.
    ws_shut_ = true;
    if (us.transport) us.transport->shutdown(us.fd);
    ::shutdown(us.fd, SHUT_WR);
    progress = true;
  }
  return progress;
}

bool Exchange::pump_response() {
  if (!up_ || up_->connecting) return false;
  // Given back while a slow request body was awaited.
  if (phase_ == Phase::Upstream && !up_->h2) w_.buffers().acquire(up_->stream.in);
  if (phase_ == Phase::Streaming) {
    if (net::Stream* dst = splice_target()) return splice_body(*dst);
  }
  // HTTP/2 takes body bytes from the socket when the client's window allows: the head is read
  // in small steps so a stalled stream does not hold a whole block of body bytes.
  auto& in = up_->stream.in;
  bool small = phase_ == Phase::Upstream && ds_->pulls_body() && in.size() < 16 * 1024;
  // An HTTP/2 stream's bytes are put in `in` by its session.
  bool progress = !up_->h2 && up_->stream.fill(small ? kHeadStep : SIZE_MAX);
  if (phase_ == Phase::Upstream) {
    if (!handle_response_head()) return progress;
    // The head may have failed instead: a retry then runs on another connection, or an error
    // answer ended the exchange. Either way this attempt's stream is gone.
    if (phase_ != Phase::Streaming || !up_) return true;
    progress = true;
  }
  if (ds_->pulls_body()) {
    // HTTP/2: the stream's data source takes the bytes when the client's window allows, for a
    // body that is its own framing straight from the socket (the buffer is given back once the
    // head has left it).
    auto& us = up_->stream;
    auto kind = resp_body_.kind();
    if (us.in.empty() && !body_filter_ &&
        (kind == http::BodyKind::ContentLength || kind == http::BodyKind::UntilClose))
      w_.buffers().release(us.in);
    if (kind == http::BodyKind::None) {
      // No body, so no data source will ever pull: the exchange ends here.
      response_done();
      return true;
    }
    if (!us.in.empty() || us.readable || us.eof || us.failed) ds_->body_available();
    return progress;
  }
  return push_body() || progress;
}

bool Exchange::handle_response_head() {
  if (up_->h2) return h2_response_head();
  auto& us = up_->stream;
  for (;;) {
    if (us.in.empty()) {
      if (us.eof || us.failed) {
        upstream_failed(resp_bytes_ ? Failure::Garbage : Failure::Reset);
        return true;
      }
      return false;
    }
    resp_bytes_ = true;
    http::ResponseHead resp;
    auto r =
        http::parse_response(us.in.readable(), resp, w_.scratch_headers(), view_->limits, method_);
    if (r.status == http::ParseStatus::NeedMore) {
      if (us.eof || us.failed || us.in.full()) {
        upstream_failed(Failure::Garbage);
        return true;
      }
      return false;
    }
    if (r.status == http::ParseStatus::Error) {
      log::debug("server sent an invalid response head: {}", r.error_reason);
      upstream_failed(Failure::Garbage);
      return true;
    }
    if (resp.status < 200 && resp.status != 101) {
      ds_->send_interim(resp);  // 100 Continue, 103 Early Hints
      us.in.consume(r.consumed);
      continue;
    }
    if (resp.status == 101 && !want_upgrade_) {
      upstream_failed(Failure::Garbage);
      return true;
    }
    return send_response_head(resp, r.consumed);
  }
}

// The final head: latency and passive health first, then the filters, then the client's codec.
bool Exchange::send_response_head(const http::ResponseHead& resp, size_t head_len) {
  const BackendRuntime& b = backend();
  if (log_.on) {
    log_.upstream_ms =
        std::chrono::duration<double, std::milli>(w_.reactor().now() - attempt_start_).count();
    log_.bytes_out += head_len;
  }
  if (caching_ && !head_filtered_ && cache_on_head(resp, head_len)) return true;
  // RFC 8441: the server's 101 is the HTTP/2 client's 200, and the WebSocket's bytes are the
  // stream's DATA both ways until either side ends.
  const bool h2_tunnel = resp.status == 101 && ws_over_h2_;
  ResponseOut head;
  head.status = h2_tunnel ? 200 : resp.status;
  head.reason = resp.reason;
  head.fields = resp.headers;
  head.body = h2_tunnel ? http::BodyKind::UntilClose : resp.body;
  head.content_length = resp.content_length;
  head.edits = &edits_;
  if (!head_filtered_) {
    // Once per head, even when the client's side has no room for it yet and it comes back.
    head_filtered_ = true;
    edits_.clear();
    if (b.sticky && server_ != sticky_server_) {
      // No valid cookie for the server that answered: (re-)stick the client to it.
      std::string& cookie = w_.scratch_string();
      b.sticky->cookie_value(server_.as_int(), ds_->client().tls, cookie);
      edits_.add("Set-Cookie", cookie);
    }
    if (h2_tunnel) edits_.remove("Sec-WebSocket-Accept");
    filters_->on_response(head);
    if (!request_id_.empty()) edits_.set(listener().request_id, request_id_);
    if (caching_) cache_edit_response(edits_, resp.status);
    body_filter_.reset();
    if (head.body != http::BodyKind::None && resp.status != 101) {
      body_filter_ = filters_->on_response_body(head, RequestFacts{method_, accept_encoding_});
      if (body_filter_) {
        edits_.remove("Content-Length");
        w_.buffers().acquire(filtered_);
        filtered_.clear();
        filter_done_ = false;
      }
    }
  }
  // A transformed body's length is not known up front: the codec frames it.
  if (body_filter_) head.body = http::BodyKind::Chunked;
  switch (ds_->send_head(head)) {
    case HeadResult::Sent:
      break;
    case HeadResult::Later:
      return false;  // wait until the previous response drains
    case HeadResult::Refused:
      upstream_failed(Failure::Garbage);  // a head the client's codec cannot carry at all
      return true;
  }
  up_->stream.in.consume(head_len);
  phase_ = Phase::Streaming;
  // Time to first response byte feeds the server's latency average (least_response_time).
  double secs = std::chrono::duration<double>(w_.reactor().now() - attempt_start_).count();
  b.state(server_).observe_latency(secs);
  if (resp.status >= 500) {
    health::passive_failure(b, server_.index(), "status", resp.status);
  } else {
    health::passive_success(b, server_.index());
  }
  view_->balancer(backend_).on_response(server_.as_int(), secs);
  status_ = resp.status;
  resp_keep_alive_ = resp.keep_alive;
  if (grpc_) {
    // A trailers-only answer carries its gRPC status in the head.
    for (const auto& h : resp.headers)
      if (http::iequals(h.name, "grpc-status")) grpc_status_ = parse_grpc_status(h.value);
  }
  if (h2_tunnel) {
    status_ = 200;
    response_timeout_ = listener().timeouts.idle;  // a tunnel's idle time, not a response's
    resp_body_.reset(http::BodyKind::UntilClose, 0);
    touch_response_timer();
    return true;
  }
  if (resp.status == 101) {
    count(101);
    hand_over();
    return true;
  }
  resp_body_.reset(resp.body, resp.content_length);
  touch_response_timer();
  return true;
}

// 101 or a tcp-mode connect: the connection and the server slot go to the downstream's tunnel.
void Exchange::hand_over() {
  timer_.clear();
  timer_kind_ = TimerKind::None;
  UpstreamConn* up = up_;
  up_ = nullptr;
  up->owner = nullptr;
  phase_ = Phase::Done;
  ServerSlot slot{view_, backend_, server_};
  server_ = {};
  bool ok = ds_->upgrade(up, slot);
  if (!ok) {
    slot.release(w_);
    up->close();
  }
  ds_->exchange_done(ok, true);
}

void Exchange::response_done() {
  cache_commit();
  drop_body_state();
  auto& us = up_->stream;
  // HTTP/2: "reusable" means the stream ended cleanly (no RST_STREAM to send).
  bool reusable = up_->h2 ? req_done_ && us.out.empty() && !us.failed
                          : resp_keep_alive_ && req_done_ && head_sent_ >= fwd_head_.size() &&
                                us.out.empty() && us.in.empty() && !us.eof && !us.failed &&
                                !us.write_failed;
  release_upstream(reusable);
  count(status_);
  finish(true);
}

}  // namespace weir::proxy

namespace weir::proxy {

bool Exchange::h2_backend() const {
  auto p = backend().cfg->protocol;
  return p == config::UpstreamProtocol::H2 || p == config::UpstreamProtocol::H2c;
}

// An HTTP/2 stream waiting for its connection: up (the request may go), or failed.
bool Exchange::h2_connect_state() {
  H2Channel& ch = *up_->h2;
  if (ch.ready()) {
    on_connected();
    return true;
  }
  if (ch.refused()) {
    upstream_failed(Failure::Unprocessed);  // `auto` found HTTP/1.1: again, that way
    return true;
  }
  if (ch.connect_failed()) {
    upstream_failed(Failure::Refused);
    return true;
  }
  return false;
}

// The server's head came as HTTP/2 fields: 1xx heads first, then the final one, made into the
// head an HTTP/1.1 server's bytes would have parsed into.
bool Exchange::h2_response_head() {
  H2Channel& ch = *up_->h2;
  auto& us = up_->stream;
  while (ch.has_interim()) {
    http::ResponseHead r;
    ch.interim(r, w_.scratch_headers());
    if (r.status != 101) ds_->send_interim(r);
    ch.pop_interim();
  }
  if (!ch.head_ready()) {
    if (ch.refused()) {
      upstream_failed(Failure::Unprocessed);
      return true;
    }
    if (us.failed || us.eof) {
      upstream_failed(resp_bytes_ ? Failure::Garbage : Failure::Reset);
      return true;
    }
    return false;
  }
  resp_bytes_ = true;
  http::ResponseHead resp;
  if (!ch.head(resp, w_.scratch_headers(), method_, ds_->pulls_body())) {
    log::debug("HTTP/2 server sent more header fields than limits.max_headers");
    upstream_failed(Failure::Garbage);
    return true;
  }
  return send_response_head(resp, 0);
}

}  // namespace weir::proxy
