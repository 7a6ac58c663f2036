// Choosing a server, waiting for a slot, connecting or reusing a pooled connection, and what a
// failure before the response head leads to: a retry elsewhere, or 502/503/504.
#include <cerrno>
#include <cstring>

#include "core/log.hpp"
#include "health/passive.hpp"
#include "net/tls/tls.hpp"
#include "proxy/exchange.hpp"

namespace weir::proxy {

// The balancer's choice among servers not yet tried and not at max_active_per_server.
// `saw_full` tells whether some server was skipped for being at its limit.
ServerId Exchange::pick_server(bool& saw_full) {
  const BackendRuntime& b = backend();
  uint32_t max_active = b.cfg->limits.max_active_per_server;
  balance::PickContext ctx{ds_->client().ip, {}, key_hash_, has_key_hash_};
  balance::TriedSet skip = tried_;
  saw_full = false;
  for (int i = 0; i < 16; ++i) {
    ServerId id = ServerId::from_int(view_->balancer(backend_).pick(ctx, skip));
    if (!id.valid()) return b.active_priority >= 0 ? pick_standby(skip, saw_full) : id;
    if (max_active == 0 ||
        b.state(id).active.load(std::memory_order_relaxed) < static_cast<int64_t>(max_active)) {
      return id;
    }
    saw_full = true;
    skip.add(id.as_int());
  }
  return {};
}

// discovery.srv: the serving priority has no server left (the last one just went down); until
// the discovery thread rebuilds the snapshot with the next priority serving (within ~100 ms),
// a server of the lowest priority that has one in rotation takes the request, chosen at random.
ServerId Exchange::pick_standby(const balance::TriedSet& skip, bool& saw_full) {
  const BackendRuntime& b = backend();
  uint32_t max_active = b.cfg->limits.max_active_per_server;
  int best = -1;
  size_t count = 0;
  for (size_t i = 0; i < b.servers.size(); ++i) {
    const auto& s = b.servers[i];
    if (static_cast<int>(s.priority) == b.active_priority || skip.contains(static_cast<int>(i)) ||
        !s.state->takes_new())
      continue;
    if (max_active != 0 && s.state->active.load(std::memory_order_relaxed) >= max_active) {
      saw_full = true;
      continue;
    }
    if (best < 0 || s.priority < best) {
      best = s.priority;
      count = 0;
    }
    if (s.priority == best) ++count;
  }
  if (best < 0) return {};
  size_t nth = static_cast<size_t>(w_.random() % count);
  for (size_t i = 0; i < b.servers.size(); ++i) {
    const auto& s = b.servers[i];
    if (s.priority != best || static_cast<int>(s.priority) == b.active_priority ||
        skip.contains(static_cast<int>(i)) || !s.state->takes_new() ||
        (max_active != 0 && s.state->active.load(std::memory_order_relaxed) >= max_active))
      continue;
    if (nth-- == 0) return ServerId::from_int(static_cast<int>(i));
  }
  return {};
}

// A valid sticky cookie wins over the strategy while its server can serve: a weight-0 server or
// one set to drain keeps its sessions, but a down, full or maintenance one does not.
bool Exchange::sticky_usable(ServerId id) const {
  const BackendRuntime& b = backend();
  if (!b.has(id)) return false;
  const auto& st = b.state(id);
  uint32_t max_active = b.cfg->limits.max_active_per_server;
  return st.takes_known() &&
         (max_active == 0 || st.active.load(std::memory_order_relaxed) < max_active);
}

void Exchange::start_attempt() {
  phase_ = Phase::Upstream;
  bool saw_full = false;
  ServerId id;
  if (sticky_server_.valid() && attempts_ == 0 && sticky_usable(sticky_server_)) {
    id = sticky_server_;
  } else {
    id = pick_server(saw_full);
  }
  if (!id.valid()) {
    if (saw_full) {
      enqueue();
    } else if (attempts_ == 0) {
      edits_.set("Retry-After", "1");
      answer(503, "Service Unavailable\n");
    } else if (last_failure_ == Failure::Timeout || last_failure_ == Failure::ConnectTimeout) {
      answer(504, "Gateway Timeout\n");
    } else {
      answer(502, "Bad Gateway\n");
    }
    return;
  }
  tried_.add(id.as_int());
  ++attempts_;
  use_server(id, !tcp_mode_);
}

// Every server is at max_active_per_server: wait in the backend's FIFO queue for a slot, up to
// queue_timeout; a full queue answers 503 at once.
void Exchange::enqueue() {
  const BackendRuntime& b = backend();
  const auto& lim = b.cfg->limits;
  if (phase_ != Phase::Queued) {
    if (b.queued->load(std::memory_order_relaxed) >= static_cast<int64_t>(lim.queue_size)) {
      note_end(Termination::QueueFull);
      edits_.set("Retry-After", "1");
      answer(503, "Service Unavailable\n");
      return;
    }
    b.queued->fetch_add(1, std::memory_order_relaxed);
    phase_ = Phase::Queued;
    WaitQueue& q = view_->queue(backend_);
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

void Exchange::leave_queue() {
  if (phase_ != Phase::Queued) return;
  phase_ = Phase::Upstream;
  WaitQueue& q = view_->queue(backend_);
  if (queue_prev)
    queue_prev->queue_next = queue_next;
  else
    q.head = queue_next;
  if (queue_next)
    queue_next->queue_prev = queue_prev;
  else
    q.tail = queue_prev;
  queue_prev = queue_next = nullptr;
  backend().queued->fetch_sub(1, std::memory_order_relaxed);
}

void Exchange::queue_tick() {
  if (phase_ != Phase::Queued) return;
  bool saw_full = false;
  ServerId id = pick_server(saw_full);
  if (id.valid()) {
    leave_queue();
    tried_.add(id.as_int());
    ++attempts_;
    use_server(id, !tcp_mode_);
    return;
  }
  if (w_.reactor().now() >= queue_deadline_ || !saw_full) {
    // Waited too long, or the servers went away while waiting.
    note_end(Termination::QueueTimeout);
    edits_.set("Retry-After", "1");
    answer(503, "Service Unavailable\n");
    return;
  }
  enqueue();  // re-arms the timer; keeps the place in the queue
}

void Exchange::use_server(ServerId id, bool allow_pooled) {
  const BackendRuntime& b = backend();
  server_ = id;
  log_.server = id;
  attempt_start_ = w_.reactor().now();
  const ServerRuntime& srv = b.server(id);
  srv.state->active.fetch_add(1, std::memory_order_relaxed);
  view_->balancer(backend_).on_taken(id.as_int());
  ++w_.stats().server(srv.uid).requests;

  const auto proto = b.cfg->protocol;
  if (proto != config::UpstreamProtocol::Http1 && !tcp_mode_ &&
      !(proto == config::UpstreamProtocol::Auto && w_.h2pool().speaks_http1(srv.uid))) {
    // HTTP/2: a stream on a pooled connection (a new connection when none has room).
    bool fresh = false;
    UpstreamConn* up = w_.h2pool().open(srv, proto, fresh);
    if (!up) {
      upstream_failed(Failure::Refused);
      return;
    }
    ++(fresh ? w_.stats().upstream_connects : w_.stats().upstream_reuses);
    attach_upstream(up, up->connecting);
    return;
  }
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

void Exchange::attach_upstream(UpstreamConn* up, bool fresh) {
  up_ = up;
  up->owner = this;
  // An HTTP/2 stream's `in` is taken by its session when DATA comes (many responses have none
  // beyond the head, or a few bytes).
  if (!up->h2) w_.buffers().acquire(up->stream.in);
  // The head goes from fwd_head_ itself: an output buffer only for a request body that is not
  // written from where the downstream holds it (HTTP/2 DATA with a content-length, plain TCP).
  // A retry (or a buffered body) sends the body bytes taken so far from the replay copy, the
  // rest as they come.
  bool replay = !replay_body_.empty();
  replay_sent_ = 0;
  if (replay) req_done_ = false;  // done again once the copy is all in the server's buffer
  body_in_place_ = !replay && !req_done_ && !req_chunked_out_ && ds_->has_body_in_place() &&
                   !up->stream.transport && !up->h2;
  resp_trailers_.clear();
  if (up->h2) up->h2->set_trailer_sink(&resp_trailers_);
  if (replay || (!req_done_ && !body_in_place_)) w_.buffers().acquire(up->stream.out);
  up->stream.out.clear();
  head_sent_ = 0;
  resp_bytes_ = false;
  head_filtered_ = false;
  const auto& t = backend().cfg->timeouts;
  if (fresh)
    arm(TimerKind::Connect, t.connect);
  else
    touch_wait_timer();
}

void ServerSlot::release(Worker& w) {
  if (!server.valid() || !view) return;
  const BackendRuntime& b = view->snap->backend(backend);
  b.state(server).active.fetch_sub(1, std::memory_order_relaxed);
  view->balancer(backend).on_released(server.as_int());
  // A slot is free: the first request waiting for this backend may take it.
  // Looked up when the deferred call runs: the waiting exchange may be gone by then.
  if (view->queue(backend).head) {
    w.reactor().defer([v = view, id = backend] {
      if (Exchange* waiting = v->queue(id).head) waiting->on_queue_wake();
    });
  }
  server = {};
}

void Exchange::release_upstream(bool reusable) {
  if (server_.valid() && view_ && backend_.valid()) {
    ServerSlot slot{view_, backend_, server_};
    slot.release(w_);
  }
  server_ = {};
  if (!up_) return;
  UpstreamConn* up = up_;
  up_ = nullptr;
  up->owner = nullptr;
  if (up->h2) {
    // A stream, not a connection: ended (RST_STREAM if it has not ended both ways).
    up->h2->release(reusable);
    up->close();
    return;
  }
  // A connection that began with a PROXY header names its client: no one else may use it.
  if (reusable && backend_.valid() && view_ &&
      backend().cfg->send_proxy_protocol != config::ProxyProtocolVersion::Off)
    reusable = false;
  if (reusable) {
    w_.pool().put(up);
  } else {
    up->close();
  }
}

void Exchange::upstream_failed(Failure why) {
  last_failure_ = why;
  bool reused = up_ && up_->reused;
  bool sent = up_ && head_sent_ > 0;  // some of the request reached the server's socket
  ServerId server = server_;
  const BackendRuntime& b = backend();
  if (server.valid()) {
    static constexpr std::string_view kReasons[] = {"connection refused", "connect timeout",
                                                    "connection reset",   "timeout",
                                                    "invalid response",   "stream refused"};
    std::string_view reason = kReasons[static_cast<size_t>(why)];
    // A pooled connection the server closed while idle says nothing about the server's health;
    // a fresh one that fails before any response byte says it cannot be reached.
    if (why == Failure::Refused || why == Failure::ConnectTimeout ||
        (why == Failure::Reset && !reused))
      health::connect_failure(b, server.index(), reason);
    if (!(reused && why == Failure::Reset) && why != Failure::Unprocessed)
      health::passive_failure(b, server.index(), reason);
  }
  release_upstream(false);
  if (phase_ == Phase::Streaming) {
    abort();
    return;
  }
  // The request can go out again only if weir still has every body byte it sent.
  bool replayable = this->replayable() && why != Failure::Garbage && !w_.draining();
  if (replayable && reused && why == Failure::Reset && !retried_stale_) {
    // A reused connection closed or reset before any response byte: the server had closed it
    // as the request arrived and never took the request (RFC 9112 §9.3.1). Once per request,
    // whatever the method, on a fresh connection; not counted against `retries`.
    retried_stale_ = true;
    ++w_.stats().retries_unseen;
    if (b.has(server) && b.state(server).takes_known()) {
      use_server(server, false);
    } else {
      --attempts_;  // the server went out meanwhile: another one, as the same try
      start_attempt();
    }
    return;
  }
  if (replayable && why == Failure::Unprocessed && unprocessed_retries_ < 3) {
    // An HTTP/2 server refused the stream or was going away (GOAWAY): it never processed the
    // request, so it goes again at once, without spending `retries`: on a connection that takes
    // streams (after a GOAWAY, a new one).
    ++unprocessed_retries_;
    ++w_.stats().retries_unseen;
    if (b.has(server) && b.state(server).takes_known()) {
      use_server(server, true);
    } else {
      --attempts_;
      start_attempt();
    }
    return;
  }
  // Connect-level failures: no server saw the request, any method may go elsewhere, bounded by
  // `retries` alone. Otherwise the server may have seen it: idempotent requests only, within
  // the retry budget too.
  bool unseen = why == Failure::Refused || why == Failure::ConnectTimeout ||
                why == Failure::Unprocessed || (why == Failure::Reset && !sent);
  if (replayable && (unseen || idempotent_) && attempts_ <= b.cfg->retries) {
    if (unseen) {
      ++w_.stats().retries_unseen;
      start_attempt();
      return;
    }
    if (view_->budget(backend_).try_spend()) {
      ++w_.stats().retries_resent;
      start_attempt();
      return;
    }
    ++w_.stats().retries_refused_by_budget;
    log::debug("backend {}: retry budget spent, not retrying", b.cfg->name);
  }
  bool timeout = why == Failure::Timeout || why == Failure::ConnectTimeout;
  answer(timeout ? 504 : 502, timeout ? "Gateway Timeout\n" : "Bad Gateway\n");
}

// Bytes just taken from the client and already on their way to the server (the copy is all
// sent by then: new client bytes are read only after it).
void Exchange::keep_for_replay(std::string_view bytes) {
  if (!replay_ok_) return;
  if (replay_body_.size() + bytes.size() > replay_limit_) {
    replay_ok_ = false;
    replay_body_.clear();
    replay_sent_ = 0;
    return;
  }
  replay_body_.append(bytes);
  replay_sent_ = replay_body_.size();
}

// request_buffering: moves what the client sent into the body copy; once the body is complete
// or `buffer_max_` is reached, a server is picked and the copy goes first.
bool Exchange::buffer_body() {
  Buffer staging;  // one pooled block for this call
  w_.buffers().acquire(staging);
  bool progress = false;
  BodyRead r = BodyRead::Idle;
  while (!body_read_done_ && replay_body_.size() < buffer_max_) {
    BodySink sink(staging, req_chunked_out_);
    r = ds_->read_body(sink);
    log_.bytes_in += sink.taken();
    if (r == BodyRead::Error || r == BodyRead::Gone) break;
    if (r == BodyRead::Done) body_read_done_ = sink.finish(ds_->request_trailers());
    if (!staging.empty()) {
      req_bytes_consumed_ = progress = true;
      replay_body_.append(staging.readable());
      staging.clear();
    }
    if (r == BodyRead::Idle) break;
  }
  w_.buffers().release(staging);
  if (r == BodyRead::Error) {
    log::debug("client {}: bad request body", ds_->client().ip);
    answer(400, "Bad Request\n", true);
    return true;
  }
  if (r == BodyRead::Gone) {
    client_gone();
    return true;
  }
  if (body_read_done_ || replay_body_.size() >= buffer_max_) {
    if (replay_body_.size() > replay_limit_) replay_ok_ = false;
    start_attempt();
    return true;
  }
  if (progress) touch_body_timer();
  return progress;
}

void Exchange::client_closed() {
  note_end(Termination::ClientClosed);
  auto& st = w_.stats();
  if (phase_ == Phase::Streaming) {
    ++st.client_closed_response;
    count(status_);
  } else {
    ++(req_done_ ? st.client_closed_waiting : st.client_closed_request);
    count(499);
  }
  log::debug("client {} closed the connection before the response was complete (client_closed)",
             ds_->client().ip);
}

void Exchange::client_gone() {
  client_closed();
  drop_body_state();
  leave_queue();
  release_upstream(false);
  finish(false);
}

// Part of the response already reached the client (or the body cannot complete): the only
// honest signal left is ending the client's connection or stream.
void Exchange::abort() {
  note_end(Termination::UpstreamReset);
  drop_body_state();
  release_upstream(false);
  count(phase_ == Phase::Streaming ? status_ : 502);
  finish(false);
}

}  // namespace weir::proxy
