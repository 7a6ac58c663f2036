// Upstream side of a request: choosing a server, connecting or reusing a pooled connection,
// retrying elsewhere, streaming the request body up and the response back with backpressure.
#include <sys/uio.h>

#include <charconv>

#include "core/log.hpp"
#include "http/status.hpp"
#include "net/tls/tls.hpp"
#include "proxy/client_conn.hpp"
#include "proxy/h2_session.hpp"
#include "health/passive.hpp"
#include "proxy/upstream_conn.hpp"

namespace weir::proxy {
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

// Moves decoded body bytes from `in` to `out`, re-framed, as far as `out` has room.
// Returns {progress, error}.
struct PumpResult {
  bool progress = false;
  bool error = false;
};
PumpResult pump_body(Buffer& in, http::BodyDecoder& dec, Buffer& out, bool chunked_out,
                     uint64_t* forwarded) {
  PumpResult res;
  while (!dec.done() && !in.empty() && out.free_space() > 2 * kFramingRoom) {
    std::string_view avail = in.readable();
    size_t cap = out.free_space() - kFramingRoom;
    if (avail.size() > cap) avail = avail.substr(0, cap);
    auto st = dec.decode(avail);
    if (st.status == http::BodyDecoder::Status::Error) {
      res.error = true;
      return res;
    }
    if (!st.payload.empty()) {
      if (chunked_out)
        append_chunk(out, st.payload);
      else
        out.append(st.payload);
      if (forwarded) *forwarded += st.payload.size();
    }
    in.consume(st.consumed);
    if (st.consumed == 0) break;
    res.progress = true;
  }
  return res;
}

// Body bytes that pass unchanged (Content-Length, close-delimited) go from the source buffer
// straight to the destination socket when nothing is queued before them: one copy fewer.
// Only what the socket takes is consumed; the rest waits in the source buffer (backpressure).
// Not for TLS: a TLS write that blocked must be retried with at least the bytes it was first
// given, which only a buffer that grows at its end (Stream::out) guarantees.
bool write_body_direct(Buffer& src, http::BodyDecoder& dec, net::Stream& dst) {
  if (dst.transport || !dst.out.empty() || !dst.writable || dst.write_failed || src.empty() ||
      dec.done())
    return false;
  std::string_view avail = src.readable();
  if (dec.kind() == http::BodyKind::ContentLength && dec.remaining() < avail.size())
    avail = avail.substr(0, dec.remaining());
  ssize_t n = dst.write_direct(avail.data(), avail.size());
  if (n <= 0) return n == net::kIoError;
  auto st = dec.decode(avail.substr(0, static_cast<size_t>(n)));
  src.consume(st.consumed);
  return true;
}

}  // namespace

// The balancer's choice among servers not yet tried and not at max_active_per_server.
// `saw_full` tells whether some server was skipped for being at its limit.
int ClientConn::pick_server(bool& saw_full) {
  const BackendRuntime& b = view_->snap->backends[static_cast<size_t>(backend_)];
  uint32_t max_active = b.cfg->limits.max_active_per_server;
  balance::PickContext ctx{client_ip_, {}, key_hash_, has_key_hash_};
  balance::TriedSet skip = tried_;
  saw_full = false;
  for (int i = 0; i < 16; ++i) {
    int idx = view_->balancers[static_cast<size_t>(backend_)]->pick(ctx, skip);
    if (idx < 0) return -1;
    if (max_active == 0 || b.servers[static_cast<size_t>(idx)].state->active.load(
                               std::memory_order_relaxed) < static_cast<int64_t>(max_active)) {
      return idx;
    }
    saw_full = true;
    skip.add(idx);
  }
  return -1;
}

void ClientConn::start_attempt() {
  bool saw_full = false;
  int idx = -1;
  if (sticky_server_ >= 0 && attempts_ == 0 && sticky_usable(sticky_server_)) {
    idx = sticky_server_;  // a valid cookie wins over the strategy while its server can serve
  } else {
    idx = pick_server(saw_full);
  }
  if (idx < 0) {
    if (saw_full) {
      enqueue();
    } else if (attempts_ == 0) {
      send_local(503, "Service Unavailable\n", false, "Retry-After: 1\r\n");
    } else if (last_failure_ == Failure::Timeout) {
      send_local(504, "Gateway Timeout\n", false);
    } else {
      send_local(502, "Bad Gateway\n", false);
    }
    return;
  }
  tried_.add(idx);
  ++attempts_;
  use_server(idx, !tcp_mode_);
}

// Every server is at max_active_per_server: wait in the backend's FIFO queue for a slot, up to
// queue_timeout; a full queue answers 503 at once.
bool ClientConn::sticky_usable(int idx) const {
  const BackendRuntime& b = view_->snap->backends[static_cast<size_t>(backend_)];
  if (static_cast<size_t>(idx) >= b.servers.size()) return false;
  const auto& st = *b.servers[static_cast<size_t>(idx)].state;
  // A weight-0 server keeps its sessions (draining it), but a down or full one does not.
  uint32_t max_active = b.cfg->limits.max_active_per_server;
  return st.in_rotation() &&
         (max_active == 0 || st.active.load(std::memory_order_relaxed) < max_active);
}

void ClientConn::enqueue() {
  const BackendRuntime& b = view_->snap->backends[static_cast<size_t>(backend_)];
  const auto& lim = b.cfg->limits;
  if (!queued_) {
    if (b.queued->load(std::memory_order_relaxed) >= static_cast<int64_t>(lim.queue_size)) {
      send_local(503, "Service Unavailable\n", false, "Retry-After: 1\r\n");
      return;
    }
    b.queued->fetch_add(1, std::memory_order_relaxed);
    queued_ = true;
    WaitQueue& q = view_->queues[static_cast<size_t>(backend_)];
    queue_prev = q.tail;
    queue_next = nullptr;
    if (q.tail)
      q.tail->queue_next = this;
    else
      q.head = this;
    q.tail = this;
    if (queue_deadline_ == TimePoint{}) queue_deadline_ = w_.reactor().now() + lim.queue_timeout;
  }
  // A slot freed on another worker is not announced here: look again every few milliseconds.
  // Rounded up, so the last look comes at or after the deadline and not in a loop before it.
  auto left = std::chrono::ceil<Millis>(queue_deadline_ - w_.reactor().now());
  arm(TimerKind::Queue, std::max(Millis(1), std::min(Millis(5), left)));
}

void ClientConn::leave_queue() {
  if (!queued_) return;
  queued_ = false;
  WaitQueue& q = view_->queues[static_cast<size_t>(backend_)];
  if (queue_prev)
    queue_prev->queue_next = queue_next;
  else
    q.head = queue_next;
  if (queue_next)
    queue_next->queue_prev = queue_prev;
  else
    q.tail = queue_prev;
  queue_prev = queue_next = nullptr;
  view_->snap->backends[static_cast<size_t>(backend_)].queued->fetch_sub(1,
                                                                         std::memory_order_relaxed);
}

void ClientConn::queue_tick() {
  if (!queued_) return;
  bool saw_full = false;
  int idx = pick_server(saw_full);
  if (idx >= 0) {
    leave_queue();
    tried_.add(idx);
    ++attempts_;
    use_server(idx, !tcp_mode_);
    return;
  }
  if (w_.reactor().now() >= queue_deadline_ || !saw_full) {
    // Waited too long, or the servers went away while waiting.
    send_local(503, "Service Unavailable\n", false, "Retry-After: 1\r\n");
    return;
  }
  enqueue();  // re-arms the timer; keeps the place in the queue
}

void ClientConn::on_queue_wake() {
  if (phase_ == Phase::Closed || !queued_) return;
  queue_tick();
  run();
}

void ClientConn::use_server(int idx, bool allow_pooled) {
  const BackendRuntime& b = view_->snap->backends[static_cast<size_t>(backend_)];
  server_ = idx;
  attempt_start_ = w_.reactor().now();
  const ServerRuntime& srv = b.servers[static_cast<size_t>(idx)];
  srv.state->active.fetch_add(1, std::memory_order_relaxed);
  view_->balancers[static_cast<size_t>(backend_)]->on_taken(idx);
  auto& counts = w_.stats().server_requests;
  if (counts.size() <= srv.uid) counts.resize(srv.uid + 1);
  ++counts[srv.uid];

  UpstreamConn* up = allow_pooled ? w_.pool().take(srv.uid) : nullptr;
  if (up) {
    ++w_.stats().upstream_reuses;
    attach_upstream(up, false);
    return;
  }
  int fd = net::connect_nonblocking(srv.addr);
  if (fd < 0) {
    log::debug("connect to server {}/{} failed: {}", b.cfg->name, srv.name, strerror(errno));
    upstream_failed(Failure::Refused);
    return;
  }
  ++w_.stats().upstream_connects;
  up = new UpstreamConn(w_, fd, srv.uid);
  if (srv.tls)
    up->stream.transport = std::make_unique<net::tls::TlsTransport>(srv.tls->new_session());
  w_.reactor().add(fd, up);
  attach_upstream(up, true);
}

void ClientConn::attach_upstream(UpstreamConn* up, bool fresh) {
  up_ = up;
  up->owner = this;
  w_.buffers().acquire(up->stream.in);
  w_.buffers().acquire(up->stream.out);
  up->stream.out.clear();
  head_sent_ = 0;
  resp_head_done_ = false;
  resp_bytes_ = false;
  const auto& t = view_->snap->backends[static_cast<size_t>(backend_)].cfg->timeouts;
  if (fresh) {
    arm(TimerKind::Connect, t.connect);
  } else {
    arm(TimerKind::Response, t.response);
  }
}

bool ClientConn::flush_upstream() {
  auto& us = up_->stream;
  if (us.write_failed || !us.writable) return false;
  if (head_sent_ >= fwd_head_.size()) return us.flush();
  if (us.transport) {
    // TLS to the server: the head, then the buffered body, through the session.
    ssize_t n = us.write_direct(fwd_head_.read_ptr() + head_sent_, fwd_head_.size() - head_sent_);
    if (n <= 0) return n == net::kIoError;
    head_sent_ += static_cast<size_t>(n);
    if (head_sent_ >= fwd_head_.size()) us.flush();
    return true;
  }
  // Head and whatever body is buffered leave in one writev.
  iovec iov[2];
  iov[0].iov_base = const_cast<char*>(fwd_head_.read_ptr()) + head_sent_;
  iov[0].iov_len = fwd_head_.size() - head_sent_;
  auto body = us.out.readable();
  iov[1].iov_base = const_cast<char*>(body.data());
  iov[1].iov_len = body.size();
  ssize_t n = net::writev_some(us.fd, iov, body.empty() ? 1 : 2);
  if (n == net::kWouldBlock) {
    us.writable = false;
    return false;
  }
  if (n < 0) {
    us.write_failed = true;
    us.error = errno;
    return true;
  }
  size_t total = iov[0].iov_len + iov[1].iov_len;
  size_t from_head = std::min<size_t>(static_cast<size_t>(n), iov[0].iov_len);
  head_sent_ += from_head;
  us.out.consume(static_cast<size_t>(n) - from_head);
  if (static_cast<size_t>(n) < total) us.writable = false;
  return true;
}

bool ClientConn::pump_request() {
  if (!up_ || up_->connecting) return false;
  bool progress = false;
  if (!req_done_) {
    auto r =
        pump_body(client_.in, req_body_, up_->stream.out, req_chunked_out_, &req_body_forwarded_);
    req_bytes_consumed_ |= r.progress;
    progress |= r.progress;
    if (r.error) {
      log::debug("client {}: bad request body", client_ip_);
      release_upstream(false);
      send_local(400, "Bad Request\n", true);
      return true;
    }
    if (req_body_.done()) {
      if (req_chunked_out_) up_->stream.out.append("0\r\n\r\n");
      req_done_ = true;
    } else if (client_.in.empty() && client_.eof) {
      abort_exchange();  // the client went away in the middle of its body
      return true;
    }
  }
  progress |= flush_upstream();
  if (up_->stream.write_failed && up_->stream.transport && !resp_bytes_) {
    auto* t = static_cast<net::tls::TlsTransport*>(up_->stream.transport.get());
    if (!t->handshake_done()) {
      // The request never reached the server: safe to try another one.
      const BackendRuntime& b = view_->snap->backends[static_cast<size_t>(backend_)];
      log::warn("backend {} server {}: TLS handshake failed: {}", b.cfg->name,
                b.servers[static_cast<size_t>(server_)].name, t->last_error());
      upstream_failed(Failure::Refused);
      return true;
    }
  }
  if (progress && resp_head_done_ == false)
    arm(TimerKind::Response,
        view_->snap->backends[static_cast<size_t>(backend_)].cfg->timeouts.response);
  return progress;
}

bool ClientConn::pump_response() {
  if (!up_ || up_->connecting) return false;
  bool progress = up_->stream.fill();
  if (!resp_head_done_) {
    if (!handle_response_head()) return progress;
    // The head may have failed instead: a retry then runs on another connection, or an error
    // answer ended the exchange. Either way this attempt's stream is gone.
    if (!resp_head_done_ || phase_ != Phase::Exchange || !up_) return true;
    progress = true;
  }
  auto& us = up_->stream;
  if (resp_framing_ == OutFraming::ContentLength || resp_framing_ == OutFraming::Close) {
    progress |= write_body_direct(us.in, resp_body_, client_);
    if (client_.write_failed) return progress;  // run() closes the connection
  }
  auto r = pump_body(us.in, resp_body_, client_.out, resp_framing_ == OutFraming::Chunked, nullptr);
  if (r.error) {
    log::debug("server response body invalid; aborting client {}", client_ip_);
    abort_exchange();
    return true;
  }
  progress |= r.progress;
  if (r.progress)
    arm(TimerKind::Response,
        view_->snap->backends[static_cast<size_t>(backend_)].cfg->timeouts.response);
  if (!resp_body_.done() && us.in.empty()) {
    if (us.eof && resp_body_.finish_eof()) {
      // close-delimited body complete
    } else if (us.eof || us.failed) {
      abort_exchange();  // truncated: the client must not take it for a whole response
      return true;
    }
  }
  if (resp_body_.done()) {
    if (resp_framing_ == OutFraming::Chunked) {
      if (client_.out.free_space() < 8) return progress;
      client_.out.append("0\r\n\r\n");
    }
    response_done();
    return true;
  }
  return progress;
}

bool ClientConn::handle_response_head() {
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
      // Interim answers (100 Continue, 103) go to HTTP/1.1 clients as a bare status line.
      if (h2_stream_) {
        h2_stream_->session->submit_interim(*h2_stream_, resp);
      } else if (version_minor_ == 1) {
        if (client_.out.free_space() < 64) return false;
        std::string& s = w_.scratch_string();
        s.clear();
        s.append("HTTP/1.1 ").append(std::to_string(resp.status)).append(" ");
        s.append(http::reason_phrase(resp.status)).append("\r\n\r\n");
        client_.out.append(s);
      }
      us.in.consume(r.consumed);
      continue;
    }
    if (resp.status == 101 && !want_upgrade_) {
      upstream_failed(Failure::Garbage);
      return true;
    }
    OutFraming framing = OutFraming::None;
    switch (resp.body) {
      case http::BodyKind::None:
        framing = OutFraming::None;
        break;
      case http::BodyKind::ContentLength:
        framing = OutFraming::ContentLength;
        break;
      case http::BodyKind::Chunked:
      case http::BodyKind::UntilClose:
        framing = version_minor_ == 1 ? OutFraming::Chunked : OutFraming::Close;
        break;
    }
    if (framing == OutFraming::Close || draining_ || w_.draining()) keep_alive_ = false;
    std::string& s = w_.scratch_string();
    s.clear();
    std::string& extra = w_.scratch_header();
    extra.clear();
    const BackendRuntime& b = view_->snap->backends[static_cast<size_t>(backend_)];
    if (b.sticky && server_ != sticky_server_) {
      // No valid cookie for the server that answered: (re-)stick the client to it.
      b.sticky->append_set_cookie(server_, tls_, extra);
    }
    if (tls_) append_hsts(extra);
    if (h2_stream_) {
      // HTTP/2 stream: the parsed head becomes HEADERS at once; the body follows through the
      // pipe as raw payload bytes (no HTTP/1.1 framing to add and parse again).
      if (framing == OutFraming::Chunked) framing = OutFraming::Close;
      if (!h2_stream_->session->submit_parsed_head(*h2_stream_, resp, extra)) {
        abort_exchange();
        return true;
      }
    } else {
      build_response_head(resp, framing, !keep_alive_ && resp.status != 101,
                          keep_alive_ && version_minor_ == 0, s, extra);
    }
    if (client_.out.free_space() < s.size()) {
      if (client_.out.empty()) {
        upstream_failed(Failure::Garbage);  // a head larger than our buffer
        return true;
      }
      return false;  // wait until the previous response drains
    }
    client_.out.append(s);
    us.in.consume(r.consumed);
    resp_head_done_ = true;
    {
      // Time to first response byte feeds the server's latency average (least_response_time).
      double secs = std::chrono::duration<double>(w_.reactor().now() - attempt_start_).count();
      const auto& srv = view_->snap->backends[static_cast<size_t>(backend_)]
                            .servers[static_cast<size_t>(server_)];
      srv.state->observe_latency(secs);
      const BackendRuntime& br = view_->snap->backends[static_cast<size_t>(backend_)];
      if (resp.status >= 500) {
        health::passive_failure(br, static_cast<size_t>(server_), "status", resp.status);
      } else {
        health::passive_success(br, static_cast<size_t>(server_));
      }
      view_->balancers[static_cast<size_t>(backend_)]->on_response(server_, secs);
    }
    resp_status_ = resp.status;
    resp_keep_alive_ = resp.keep_alive;
    resp_framing_ = framing;
    if (resp.status == 101) {
      finish_exchange_bookkeeping(101, backend_);
      phase_ = Phase::Tunnel;
      arm(TimerKind::Tunnel, listener_cfg().timeouts.idle);
      return true;
    }
    resp_body_.reset(resp.body, resp.content_length);
    arm(TimerKind::Response,
        view_->snap->backends[static_cast<size_t>(backend_)].cfg->timeouts.response);
    return true;
  }
}

void ClientConn::response_done() {
  auto& us = up_->stream;
  bool reusable = resp_keep_alive_ && req_done_ && head_sent_ >= fwd_head_.size() &&
                  us.out.empty() && us.in.empty() && !us.eof && !us.failed && !us.write_failed;
  release_upstream(reusable);
  finish_exchange_bookkeeping(resp_status_, backend_);
  if (!req_done_) keep_alive_ = false;  // the rest of the request body was never read
  clean_end_ = req_done_;
  phase_ = Phase::Head;
  if (!keep_alive_) {
    close_after_flush_ = true;
  } else {
    arm(TimerKind::Idle, listener_cfg().timeouts.idle);
  }
}

void ClientConn::release_upstream(bool reusable) {
  if (server_ >= 0 && view_ && backend_ >= 0) {
    const auto& b = view_->snap->backends[static_cast<size_t>(backend_)];
    b.servers[static_cast<size_t>(server_)].state->active.fetch_sub(1, std::memory_order_relaxed);
    view_->balancers[static_cast<size_t>(backend_)]->on_released(server_);
    // A slot is free: the first request waiting for this backend may take it.
    if (ClientConn* waiting = view_->queues[static_cast<size_t>(backend_)].head) {
      w_.reactor().defer([waiting] { waiting->on_queue_wake(); });
    }
  }
  server_ = -1;
  if (!up_) return;
  UpstreamConn* up = up_;
  up_ = nullptr;
  up->owner = nullptr;
  if (reusable) {
    w_.pool().put(up);
  } else {
    up->close();
  }
}

void ClientConn::upstream_failed(Failure why) {
  last_failure_ = why;
  bool was_reused = up_ && up_->reused;
  int server = server_;
  // A pooled connection the server closed while idle says nothing about the server's health.
  if (server >= 0 && !(was_reused && why == Failure::Reset)) {
    static constexpr std::string_view kReasons[] = {"connection refused", "connection reset",
                                                    "timeout", "invalid response"};
    health::passive_failure(view_->snap->backends[static_cast<size_t>(backend_)],
                    static_cast<size_t>(server), kReasons[static_cast<size_t>(why)]);
  }
  release_upstream(false);
  if (resp_head_done_) {
    abort_exchange();
    return;
  }
  // The request can go out again only if no byte of its body was taken from the client.
  bool replayable = !req_bytes_consumed_;
  if (replayable && was_reused && idempotent_ && why != Failure::Timeout && !retried_stale_) {
    // A pooled connection the server had closed meanwhile: one fresh connection to the same
    // server, not counted as a retry.
    retried_stale_ = true;
    use_server(server, false);
    return;
  }
  const auto& b = *view_->snap->backends[static_cast<size_t>(backend_)].cfg;
  bool retry = replayable && why != Failure::Garbage && (idempotent_ || why == Failure::Refused) &&
               attempts_ <= b.retries && !w_.draining();
  if (retry && !w_.retry_budget().try_spend()) {
    log::debug("backend {}: retry budget spent, not retrying", b.name);
    retry = false;
  }
  if (retry) {
    start_attempt();
    return;
  }
  uint16_t status = why == Failure::Timeout ? 504 : 502;
  send_local(status, status == 504 ? "Gateway Timeout\n" : "Bad Gateway\n", false);
}

void ClientConn::abort_exchange() {
  // Part of the response already reached the client (or the client vanished): the only honest
  // signal left is closing the connection.
  release_upstream(false);
  finish_exchange_bookkeeping(resp_head_done_ ? resp_status_ : 502, backend_);
  close();
}

}  // namespace weir::proxy
