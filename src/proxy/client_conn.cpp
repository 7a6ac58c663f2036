// Client side of a connection: reading and parsing request heads, routing, answers weir gives
// itself (errors, 404, 503), timeouts and closing. The upstream side is in exchange.cpp.
#include "proxy/client_conn.hpp"

#include <sys/socket.h>

#include <algorithm>

#include "balance/hash.hpp"
#include "core/log.hpp"
#include "http/status.hpp"
#include "net/address.hpp"
#include "net/tls/tls.hpp"
#include "proxy/h2_session.hpp"
#include "proxy/router.hpp"
#include "proxy/upstream_conn.hpp"

namespace weir::proxy {

ClientConn::ClientConn(Worker& w, int fd, const sockaddr_storage& peer, size_t slot)
    : w_(w), slot_(slot) {
  client_.fd = fd;
  client_.readable = true;  // bytes may already wait: accept raced with the client's send
  client_ip_ = net::peer_ip(peer);
  timer_.set_callback([this] { on_timer(); });
}

ClientConn::ClientConn(Worker& w, const ClientConn& connection,
                       std::unique_ptr<net::Transport> pipe, H2Stream* stream)
    : w_(w), client_ip_(connection.client_ip_), slot_(connection.slot_) {
  h2_stream_ = stream;
  client_.transport = std::move(pipe);
  client_.readable = true;
  tls_ = connection.tls_;
  stream_mode_ = true;
  timer_.set_callback([this] { on_timer(); });
}

ClientConn::~ClientConn() = default;

const config::Listener& ClientConn::listener_cfg() const {
  const WorkerView& v = *w_.view();
  return *v.snap->listeners[listener_index(v)].cfg;
}

void ClientConn::start() {
  w_.reactor().add(client_.fd, this);
  if (listener_cfg().mode == config::ListenerMode::Tcp) {
    start_tcp();
    return;
  }
  const WorkerView& v = *w_.view();
  if (const auto& ctx = v.snap->listeners[listener_index(v)].tls) {
    // The handshake runs inside the first reads, under the header timeout.
    client_.transport = std::make_unique<net::tls::TlsTransport>(ctx->new_session());
    tls_ = true;
  }
  // The first request head must arrive within the header timeout (slowloris).
  arm(TimerKind::Header, listener_cfg().timeouts.header);
  run();
}

void ClientConn::start_tcp() {
  // Layer 4: pick a server, connect (retrying elsewhere on failure), then relay bytes both
  // ways. The client's first bytes wait in its buffer until the connection stands.
  tcp_mode_ = true;
  w_.retry_budget().on_request();
  view_ = w_.view();
  request_start_ = w_.reactor().now();
  const auto& routes = view_->snap->listeners[listener_index(*view_)].cfg->routes;
  backend_ = static_cast<int>(routes.front().backend_index);
  idempotent_ = true;
  req_done_ = true;
  fwd_head_.clear();  // nothing to send first: bytes flow once connected
  phase_ = Phase::Exchange;
  start_attempt();
  run();
}

void ClientConn::start_stream() {
  run();
}

void ClientConn::on_pipe_ready() {
  if (phase_ == Phase::Closed) return;
  client_.readable = true;
  client_.writable = true;
  run();
}

void ClientConn::schedule_turn() {
  if (turn_pending_ || phase_ == Phase::Closed) return;
  turn_pending_ = true;
  ++pending_turns_;
  w_.reactor().defer([this] {
    turn_pending_ = false;
    finish_turn();
  });
}

void ClientConn::finish_turn() {
  --pending_turns_;
  if (phase_ == Phase::Closed) {
    if (pending_turns_ == 0) delete this;  // close() left the freeing to the last pending turn
    return;
  }
  run();
}

void ClientConn::on_new_config() {
  if (h2_) {
    h2_->goaway();
    schedule_turn();
  }
}

void ClientConn::ensure_buffers() {
  w_.buffers().acquire(client_.in);
  w_.buffers().acquire(client_.out);
}

void ClientConn::arm(TimerKind kind, Millis after) {
  timer_kind_ = kind;
  timer_.arm(w_.reactor().timers(), w_.reactor().now() + after);
}

void ClientConn::on_event(uint32_t events) {
  if (phase_ == Phase::Closed) return;
  client_.note_events(events);
  run();
}

void ClientConn::on_upstream_event(uint32_t events) {
  if (phase_ == Phase::Closed || !up_) return;
  up_->stream.note_events(events);
  if (up_->connecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (net::socket_error(up_->stream.fd) != 0) {
      upstream_failed(Failure::Refused);
      run();
      return;
    }
    up_->connecting = false;
    if (tcp_mode_) {
      finish_exchange_bookkeeping(0, backend_);
      phase_ = Phase::Tunnel;
      arm(TimerKind::Tunnel, listener_cfg().timeouts.idle);
    } else {
      arm(TimerKind::Response, view_->snap->backends[backend_].cfg->timeouts.response);
    }
  }
  run();
}

// Work done for one connection before the others get their turn (Reactor::yield: after the next
// poll for events), so one big transfer cannot hold a worker while fifty others wait. 32 turns
// (~0.5 MiB) measured best on bench scenario 3: 8 halved the tail but doubled CPU per request.
constexpr int kMaxTurns = 32;

void ClientConn::run() {
  if (phase_ == Phase::H2) {
    run_h2();
    return;
  }
  for (int turn = 0; turn < kMaxTurns && phase_ != Phase::Closed; ++turn) {
    bool progress = false;
    if (phase_ == Phase::Lingering) {
      // Half-closed after a final answer: read and drop what the client still sends, so the
      // close does not reset the connection before the client has read our answer.
      ensure_buffers();
      for (int reads = 0; reads < 16 && client_.readable && !client_.eof && !client_.failed;
           ++reads) {
        client_.in.clear();
        if (!client_.fill()) break;
      }
      if (client_.eof || client_.failed) close();
      return;
    }
    ensure_buffers();
    progress |= client_.fill();
    if (client_.failed) {
      if (tls_ && !alpn_checked_ && !stream_mode_) {
        ++w_.stats().tls_handshake_failures;
        log::debug("client {}: TLS handshake failed: {}", client_ip_,
                   static_cast<net::tls::TlsTransport*>(client_.transport.get())->last_error());
      }
      close();
      return;
    }
    switch (phase_) {
      case Phase::Head:
        if (tls_ && !alpn_checked_ && !stream_mode_ && !check_alpn()) break;  // handshaking
        if (phase_ == Phase::H2) {
          run_h2();
          return;
        }
        progress |= handle_head();
        if (phase_ == Phase::H2) {
          run_h2();
          return;
        }
        break;
      case Phase::Exchange:
        progress |= pump_request();
        if (phase_ == Phase::Exchange) progress |= pump_response();
        break;
      case Phase::Tunnel:
        progress |= pump_tunnel();
        break;
      default:
        break;
    }
    if (phase_ == Phase::Closed) return;
    progress |= client_.flush();
    if (client_.write_failed) {
      close();
      return;
    }
    if (close_after_flush_ && phase_ == Phase::Head && client_.out.empty()) {
      if (stream_mode_) {
        // The stream's exchange is over and its last bytes are in the pipe, which keeps what
        // the client has not taken yet.
        if (h2_stream_) h2_stream_->response_complete = true;
        close();
        return;
      }
      if (clean_end_ && client_.in.empty() && !client_.readable) {
        // The last request was read whole and nothing followed it: closing now cannot reset
        // an answer the client has not read yet, so no lingering is needed.
        close();
        return;
      }
      ::shutdown(client_.fd, SHUT_WR);
      phase_ = Phase::Lingering;
      arm(TimerKind::Linger, Millis(2000));
      client_.readable = true;
      continue;
    }
    if (!progress) break;
    if (turn == kMaxTurns - 1) {
      // Still moving bytes (a big body with both sockets ready): give the other connections
      // their turn and continue after this batch. No readiness edge would wake us otherwise.
      if (!yield_pending_) {
        yield_pending_ = true;
        ++pending_turns_;
        w_.reactor().yield([this] {
          yield_pending_ = false;
          finish_turn();
        });
      }
      break;
    }
  }
  if (phase_ == Phase::Head && client_.in.empty() && client_.out.empty()) {
    // Idle keep-alive connections hold no buffers.
    w_.buffers().release(client_.in);
    w_.buffers().release(client_.out);
    fwd_head_.clear();
    w_.buffers().release(fwd_head_);
  }
}

bool ClientConn::handle_head() {
  if (close_after_flush_) return false;
  if (client_.in.empty()) {
    if (client_.eof) {
      if (client_.out.empty())
        close();
      else
        close_after_flush_ = true;
      return true;
    }
    return false;
  }
  if (timer_kind_ == TimerKind::Idle) arm(TimerKind::Header, listener_cfg().timeouts.header);
  if (!stream_mode_ && listener_cfg().h2c) {
    bool wait = false;
    if (check_h2c_preface(wait)) {
      become_h2();
      return true;
    }
    if (wait) return false;
  }
  http::RequestHead req;
  auto r = http::parse_request(client_.in.readable(), req, w_.scratch_headers(), w_.view()->limits);
  switch (r.status) {
    case http::ParseStatus::NeedMore:
      if (client_.in.full()) {
        backend_ = -1;
        send_local(431, "Request Header Fields Too Large\n", true);
        return true;
      }
      if (client_.eof) {
        close_after_flush_ = true;
        return true;
      }
      return false;
    case http::ParseStatus::Error:
      ++w_.stats().parse_errors;
      backend_ = -1;
      log::debug("client {}: bad request: {} at byte {}", client_ip_, r.error_reason,
                 r.error_offset);
      send_local(r.error_status, std::string(http::reason_phrase(r.error_status)) + "\n", true);
      return true;
    case http::ParseStatus::Done:
      begin_request(req, r.consumed);
      return true;
  }
  return false;
}

void ClientConn::begin_request(const http::RequestHead& req, size_t head_len) {
  view_ = w_.view();
  request_start_ = w_.reactor().now();
  clean_end_ = false;
  method_ = req.method;
  version_minor_ = req.version_minor;
  keep_alive_ = req.keep_alive && !draining_ && !w_.draining() && !stream_mode_;
  idempotent_ = req.method == http::Method::Get || req.method == http::Method::Head ||
                req.method == http::Method::Options || req.method == http::Method::Trace ||
                req.method == http::Method::Put || req.method == http::Method::Delete;
  // Upgrade: h2c is never forwarded; any other Upgrade becomes a tunnel after the server's 101.
  want_upgrade_ = req.upgrade && !http::list_contains(req.upgrade_protocol, "h2c");
  req_body_.reset(req.body, req.content_length);
  req_chunked_out_ = req.body == http::BodyKind::Chunked;
  req_done_ = req.body == http::BodyKind::None;
  req_body_forwarded_ = 0;
  req_bytes_consumed_ = false;
  tried_ = {};
  attempts_ = 0;
  queue_deadline_ = {};
  retried_stale_ = false;
  backend_ = -1;

  if (req.method == http::Method::Connect) {
    client_.in.consume(head_len);
    send_local(405, "Method Not Allowed\n", true);
    return;
  }

  std::string_view target, authority;
  split_absolute_target(req.target, target, authority);
  std::string_view host = authority.empty() ? req.host : authority;
  char host_buf[256];
  std::string_view route_host = normalize_host(host, host_buf, sizeof host_buf);
  std::string_view path = target.substr(0, target.find('?'));

  const auto& lr = view_->snap->listeners[listener_index(*view_)];
  if (lr.cfg->redirect_https != 0) {
    redirect_https(route_host, target, head_len);
    return;
  }
  backend_ = match_route(lr.cfg->routes, route_host, path);
  if (backend_ < 0) {
    client_.in.consume(head_len);
    if (!req_done_) keep_alive_ = false;  // the body is not read: the connection is unusable
    send_local(404, "Not Found\n", !keep_alive_);
    return;
  }
  choose_affinity(req);
  w_.retry_budget().on_request();

  RequestForward fwd;
  fwd.target = target;
  fwd.host = host;
  fwd.client_ip = client_ip_;
  fwd.trusted_client = std::find(lr.cfg->trusted_proxies.begin(), lr.cfg->trusted_proxies.end(),
                                 client_ip_) != lr.cfg->trusted_proxies.end();
  fwd.upgrade = want_upgrade_;
  fwd.proto = tls_ ? "https" : "http";
  std::string& head = w_.scratch_string();
  head.clear();
  build_request_head(req, fwd, head);
  w_.buffers().acquire(fwd_head_);
  fwd_head_.clear();
  if (head.size() > fwd_head_.capacity()) {
    client_.in.consume(head_len);
    send_local(431, "Request Header Fields Too Large\n", true);
    return;
  }
  fwd_head_.append(head);
  client_.in.consume(head_len);  // the parsed views are dead from here on
  phase_ = Phase::Exchange;
  timer_.cancel();
  timer_kind_ = TimerKind::None;
  start_attempt();
}

// What the hashing strategies and sticky sessions read from the request, taken while its head
// is still parsed (a retry happens after the views are gone).
void ClientConn::choose_affinity(const http::RequestHead& req) {
  const BackendRuntime& b = view_->snap->backends[static_cast<size_t>(backend_)];
  std::string_view key;
  has_key_hash_ = model::extract_key(b.hash_key, req, client_ip_, key);
  key_hash_ = has_key_hash_ ? balance::hash_key(key) : 0;
  sticky_server_ = -1;
  if (b.sticky) {
    model::KeySpec cookie{model::KeySpec::Kind::Cookie, b.sticky->cookie};
    std::string_view token;
    if (model::extract_key(cookie, req, client_ip_, token)) sticky_server_ = b.sticky->find(token);
  }
}

void ClientConn::send_local(uint16_t status, std::string_view body, bool close,
                            std::string_view extra_headers) {
  leave_queue();
  if (tcp_mode_) {
    // No server could be reached: layer 4 has no way to say so but closing.
    finish_exchange_bookkeeping(status, backend_);
    this->close();
    return;
  }
  if (!req_done_) close = true;  // an unread request body leaves no way to find the next head
  if (draining_ || w_.draining()) close = true;
  std::string extra;
  if (tls_ && listener_cfg().tls && listener_cfg().tls->hsts) {
    extra.assign(extra_headers);
    append_hsts(extra);
    extra_headers = extra;
  }
  std::string& s = w_.scratch_string();
  s.clear();
  build_local_response(status, body, close, extra_headers, s);
  client_.out.clear();  // nothing of this exchange's response was sent yet
  client_.out.append(s);
  finish_exchange_bookkeeping(status, backend_);
  phase_ = Phase::Head;
  if (close) {
    keep_alive_ = false;
    close_after_flush_ = true;
  } else {
    arm(TimerKind::Idle, listener_cfg().timeouts.idle);
  }
}

void ClientConn::finish_exchange_bookkeeping(uint16_t status, int backend) {
  const ViewPtr& v = view_ ? view_ : w_.view();
  v->counts(listener_index(*v), backend)->add(status);
  auto elapsed = w_.reactor().refresh_now() - request_start_;
  if (request_start_ != TimePoint{})
    w_.stats().latency.observe(std::chrono::duration<double>(elapsed).count());
  request_start_ = {};
}

void ClientConn::close_after_flush() {
  close_after_flush_ = true;
}

void ClientConn::begin_drain() {
  draining_ = true;
  if (h2_) {
    h2_->goaway();  // open streams finish; no new ones
    schedule_turn();
    return;
  }
  if (phase_ == Phase::Head && client_.in.empty() && client_.out.empty()) close();
}

void ClientConn::on_timer() {
  TimerKind kind = timer_kind_;
  timer_kind_ = TimerKind::None;
  switch (kind) {
    case TimerKind::Header:
      if (!client_.in.empty() && client_.out.empty()) {
        backend_ = -1;
        send_local(408, "Request Timeout\n", true);
        run();
      } else {
        close();
      }
      return;
    case TimerKind::Idle:
      if (h2_) {
        h2_->goaway();  // no stream for the idle timeout: say goodbye, then close
        run();
        return;
      }
      close();
      return;
    case TimerKind::Linger:
    case TimerKind::Tunnel:
      close();
      return;
    case TimerKind::Connect:
      upstream_failed(Failure::Timeout);
      run();
      return;
    case TimerKind::Queue:
      queue_tick();
      run();
      return;
    case TimerKind::Response:
      if (!resp_head_done_) {
        upstream_failed(Failure::Timeout);
        run();
      } else {
        abort_exchange();
      }
      return;
    case TimerKind::None:
      return;
  }
}

void ClientConn::close() {
  if (phase_ == Phase::Closed) return;
  leave_queue();
  if (up_) release_upstream(false);
  phase_ = Phase::Closed;
  timer_.cancel();
  client_.in.clear();
  client_.out.clear();
  w_.buffers().release(client_.in);
  w_.buffers().release(client_.out);
  fwd_head_.clear();
  w_.buffers().release(fwd_head_);
  if (h2_) h2_->abort_all();  // every stream's exchange closes with its connection
  if (client_.transport) client_.transport->shutdown(client_.fd);  // TLS close_notify; pipe
  net::close_fd(client_.fd);
  client_.fd = -1;
  if (!stream_mode_) w_.connection_closed(this, slot_);
  if (pending_turns_ == 0) w_.reactor().defer([this] { delete this; });
}

}  // namespace weir::proxy

namespace weir::proxy {

// TLS: once the handshake is done, ALPN says which codec the connection speaks. False while
// the handshake is still running.
bool ClientConn::check_alpn() {
  auto* t = static_cast<net::tls::TlsTransport*>(client_.transport.get());
  if (!t->handshake_done()) return false;
  alpn_checked_ = true;
  if (t->alpn() == "h2") become_h2();
  return true;
}

// h2c with prior knowledge: the client opens with the HTTP/2 preface instead of a request.
bool ClientConn::check_h2c_preface(bool& wait) {
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::string_view in = client_.in.readable();
  size_t n = std::min(in.size(), kPreface.size());
  if (in.substr(0, n) != kPreface.substr(0, n)) return false;
  if (n < kPreface.size()) {
    wait = !client_.eof;
    return false;
  }
  return true;
}

void ClientConn::become_h2() {
  ensure_buffers();
  h2_ = std::make_unique<H2Session>(w_, *this, client_);
  if (!h2_->start(w_.view()->snap->config->limits)) {
    log::error("client {}: cannot start an HTTP/2 session", client_ip_);
    close();
    return;
  }
  ++w_.stats().h2_connections;
  phase_ = Phase::H2;
  arm(TimerKind::Idle, listener_cfg().timeouts.idle);
}

void ClientConn::run_h2() {
  for (int turn = 0; turn < kMaxTurns && phase_ == Phase::H2; ++turn) {
    ensure_buffers();
    bool progress = client_.fill();
    if (client_.failed) {
      close();
      return;
    }
    progress |= h2_->pump();
    if (phase_ != Phase::H2) return;
    progress |= client_.flush();
    if (client_.write_failed || (h2_->finished() && client_.out.empty()) ||
        (client_.eof && client_.in.empty())) {
      close();
      return;
    }
    if (!progress) break;
    if (turn == kMaxTurns - 1 && !yield_pending_) {
      yield_pending_ = true;
      ++pending_turns_;
      w_.reactor().yield([this] {
        yield_pending_ = false;
        finish_turn();
      });
    }
  }
  if (phase_ != Phase::H2) return;
  // The idle timeout runs while no stream is open; an idle connection holds no buffers.
  if (h2_->open_streams() == 0) {
    if (timer_kind_ != TimerKind::Idle) arm(TimerKind::Idle, listener_cfg().timeouts.idle);
    if (client_.in.empty() && client_.out.empty()) {
      w_.buffers().release(client_.in);
      w_.buffers().release(client_.out);
    }
  } else if (timer_kind_ == TimerKind::Idle) {
    timer_.cancel();
    timer_kind_ = TimerKind::None;
  }
}

// A plain listener with redirect_https answers every request with 308 to the HTTPS URL.
bool ClientConn::redirect_https(std::string_view host, std::string_view target, size_t head_len) {
  client_.in.consume(head_len);
  if (host.empty()) {
    send_local(400, "Bad Request\n", true);
    return true;
  }
  uint16_t port = listener_cfg().redirect_https;
  std::string extra = "Location: https://";
  extra.append(host);
  if (port != 443) extra.append(":").append(std::to_string(port));
  extra.append(target.empty() ? "/" : target).append("\r\n");
  send_local(308, "Permanent Redirect\n", false, extra);
  return true;
}

void ClientConn::append_hsts(std::string& out) const {
  const auto& t = listener_cfg().tls;
  if (!tls_ || !t || !t->hsts) return;
  out.append("Strict-Transport-Security: max-age=")
      .append(std::to_string(std::chrono::duration_cast<std::chrono::seconds>(*t->hsts).count()))
      .append("\r\n");
}

}  // namespace weir::proxy
