// An exchange's life: start (route, filters, affinity, forwarded head), weir's own answers,
// the end, the pool. Timers: exchange_timers.cpp; upstream picking/retrying: exchange_pick.cpp;
// bytes: exchange_io.cpp.
#include "proxy/exchange.hpp"
#include "proxy/exchange_cache.hpp"

#include <algorithm>

#include "balance/hash.hpp"
#include "core/log.hpp"
#include "http/status.hpp"
#include "model/hash_key.hpp"
#include "net/cidr_set.hpp"
#include "proxy/admission.hpp"
#include "proxy/forward.hpp"
#include "proxy/router.hpp"

namespace weir::proxy {

Exchange::Exchange(Worker& w) : w_(w) {
  timer_.set_callback([this] { on_timer(); });
}

Exchange::~Exchange() {
  close_local_body();
}

const config::Listener& Exchange::listener() const {
  return *view_->snap->listeners[view_->slot_listener[ds_->client().slot()]].cfg;
}

void Exchange::reset_state(Downstream& ds) {
  ds_ = &ds;
  view_ = w_.view();
  cache_release();
  // Until a route matches, weir's own answers go through the listener's filters (HSTS...).
  filters_ = &view_->filters[view_->slot_listener[ds.client().slot()]].listener;
  phase_ = Phase::Upstream;
  timer_kind_ = TimerKind::None;
  backend_ = {};
  server_ = {};
  sticky_server_ = {};
  method_ = http::Method::Get;
  tcp_mode_ = false;
  idempotent_ = true;
  want_upgrade_ = false;
  ws_over_h2_ = false;
  ws_shut_ = false;
  has_key_hash_ = false;
  key_hash_ = 0;
  fwd_head_.clear();
  head_sent_ = 0;
  req_chunked_out_ = false;
  req_done_ = true;
  req_bytes_consumed_ = false;
  replay_body_.clear();
  replay_limit_ = kReplayMax;
  replay_sent_ = 0;
  replay_ok_ = true;
  body_read_done_ = false;
  buffer_max_ = 0;
  route_buffering_.reset();
  rewrite_ = nullptr;
  body_in_place_ = false;
  edits_.clear();
  tried_ = {};
  attempts_ = 0;
  retried_stale_ = false;
  unprocessed_retries_ = 0;
  grpc_ = false;
  grpc_status_ = -1;
  grpc_timeout_ = Millis(0);
  last_failure_ = Failure::Refused;
  request_start_ = w_.reactor().now();
  attempt_start_ = {};
  queue_deadline_ = {};
  up_ = nullptr;
  resp_bytes_ = false;
  head_filtered_ = false;
  status_ = 0;
  resp_keep_alive_ = false;
  resp_trailers_.clear();
  request_id_.clear();
  own_answer_ = false;
  slot_ = ds.client().slot();
  begin_log(ds);
}

void Exchange::start(Downstream& ds, const http::RequestHead& req) {
  reset_state(ds);
  method_ = req.method;
  idempotent_ = req.method == http::Method::Get || req.method == http::Method::Head ||
                req.method == http::Method::Options || req.method == http::Method::Trace ||
                req.method == http::Method::Put || req.method == http::Method::Delete;
  // Upgrade: h2c is never forwarded; any other Upgrade becomes a tunnel after the server's 101.
  want_upgrade_ = req.upgrade && !http::list_contains(req.upgrade_protocol, "h2c");
  // An HTTP/2 extended CONNECT (RFC 8441): its body runs until the stream ends, both ways.
  ws_over_h2_ = want_upgrade_ && req.body == http::BodyKind::UntilClose;
  req_chunked_out_ = req.body == http::BodyKind::Chunked;
  req_done_ = req.body == http::BodyKind::None;
  note_request(req);
  note_grpc(req);  // before any answer: weir's own answers to gRPC are gRPC's
  if (!background_ && !admit(req)) return;
  note_request_id(req);
  if (req.method == http::Method::Connect) {
    answer(405, "Method Not Allowed\n", true);
    return;
  }
  std::string_view target, authority;
  split_absolute_target(req.target, target, authority);
  std::string_view host = authority.empty() ? req.host : authority;
  char host_buf[256];
  std::string_view route_host = normalize_host(host, host_buf, sizeof host_buf);
  if (!route_and_filter(req, target, route_host)) return;
  // HTTP/2 frames the body itself: no chunked framing to build and take apart again (`auto`
  // may still turn out HTTP/1.1, so it keeps the client's framing).
  if (req_chunked_out_ && h2_backend()) req_chunked_out_ = false;
  if (ws_over_h2_ && backend().cfg->protocol != config::UpstreamProtocol::Http1) {
    // RFC 8441: an HTTP/2 stream asking for a WebSocket becomes an HTTP/1.1 Upgrade (its
    // Sec-WebSocket-Key is added with the forwarded head); HTTP/2 servers are not asked.
    answer(501, "Not Implemented\n");
    return;
  }
  response_timeout_ = backend().cfg->timeouts.response;
  if (grpc_timeout_ > Millis(0) && grpc_timeout_ < response_timeout_)
    response_timeout_ = grpc_timeout_;
  choose_affinity(req);
  view_->budget(backend_).on_request();
  if (rewrite_) {
    // strip_prefix, then add_prefix, on the path; the query stays as it was.
    size_t qpos = target.find('?');
    std::string_view path = target.substr(0, qpos);
    std::string_view query =
        qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos);
    const std::string& strip = rewrite_->strip_prefix;
    if (!strip.empty() && path.starts_with(strip) &&
        (path.size() == strip.size() || path[strip.size()] == '/' || strip.back() == '/'))
      path.remove_prefix(strip.size());
    rewritten_.assign(rewrite_->add_prefix);
    if (!rewritten_.empty() && rewritten_.back() == '/' && path.starts_with('/'))
      rewritten_.pop_back();
    if (!path.empty() && path.front() != '/') rewritten_.push_back('/');
    rewritten_.append(path);
    if (rewritten_.empty()) rewritten_ = "/";
    rewritten_.append(query);
    target = rewritten_;
  }
  if (!build_forward_head(req, target, host, route_host)) return;
  if (!req_done_ && !ws_over_h2_) {
    // request_buffering (the route's, else the backend's): the body first, then a server.
    const auto& route_rb = route_buffering_;
    const auto& rb = route_rb ? route_rb : backend().cfg->request_buffering;
    if (rb) {
      buffer_max_ = rb->max;
      replay_limit_ = std::max<size_t>(kReplayMax, rb->max + w_.buffers().block_size());
      // Read by the next pump: the head may still lie in front of the body in the client's
      // buffer during this call.
      phase_ = Phase::Buffering;
      touch_body_timer();
      return;
    }
  }
  if (cache_wait()) return;  // another request for the same key is on its way to a server
  start_attempt();
}

void Exchange::start_error(Downstream& ds, uint16_t status) {
  reset_state(ds);
  local_body_.assign(http::reason_phrase(status)).append("\n");
  answer(status, local_body_, true);
}

void Exchange::start_refusal(Downstream& ds, uint16_t status, uint32_t retry_after) {
  reset_state(ds);
  if (status == 429) edits_.set("Retry-After", std::to_string(std::max<uint32_t>(1, retry_after)));
  local_body_.assign(http::reason_phrase(status)).append("\n");
  answer(status, local_body_, true);
}

// client_limits.rate: over it, 429 with Retry-After; the connection stays usable.
bool Exchange::admit(const http::RequestHead& req) {
  const model::ListenerRuntime& lr = w_.listener_runtime(ds_->client().slot());
  if (!lr.clients) return true;
  uint32_t retry_after = 1;
  if (admit_request(w_, lr, ds_->client().addr(), req, retry_after) == Refusal::None) return true;
  edits_.set("Retry-After", std::to_string(retry_after));
  local_body_.assign(http::reason_phrase(429)).append("\n");
  answer(429, local_body_);
  return false;
}

// `request_id`: the client's own value is kept (when it is a sane one), else weir makes one:
// unique across workers and restarts (the worker's random prefix, then its counter).
void Exchange::note_request_id(const http::RequestHead& req) {
  const std::string& name = listener().request_id;
  if (name.empty()) return;
  for (const auto& h : req.headers) {
    if (http::iequals(h.name, name) && !h.value.empty() && h.value.size() <= 200) {
      request_id_.assign(h.value);
      return;
    }
  }
  w_.next_request_id(request_id_);
}

// What the body filters will need once the response comes: the request's views are gone then.
void Exchange::note_request_facts(const http::RequestHead& req) {
  accept_encoding_.clear();
  for (const auto& h : req.headers) {
    if (!http::iequals(h.name, "accept-encoding")) continue;
    // Bounded: choose_encoding looks at 64 elements at most anyway.
    if (accept_encoding_.size() + h.value.size() > kMaxAcceptEncoding) break;
    if (!accept_encoding_.empty()) accept_encoding_.append(", ");
    accept_encoding_.append(h.value);
  }
}

// 16 random bytes in base64 (RFC 6455 4.1): 24 characters into `out`.
void Exchange::websocket_key(uint64_t a, uint64_t b, char* out) {
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint8_t raw[18] = {};
  for (int i = 0; i < 8; ++i) {
    raw[i] = static_cast<uint8_t>(a >> (8 * i));
    raw[8 + i] = static_cast<uint8_t>(b >> (8 * i));
  }
  for (int i = 0; i < 6; ++i) {
    uint32_t v = (uint32_t{raw[3 * i]} << 16) | (uint32_t{raw[3 * i + 1]} << 8) | raw[3 * i + 2];
    for (int k = 0; k < 4; ++k)
      out[4 * i + k] = kB64[(v >> (18 - 6 * k)) & 63];
  }
  out[22] = out[23] = '=';  // 16 bytes: the last group holds one byte
  out[24] = 0;
}

void Exchange::start_tcp(Downstream& ds, BackendId backend) {
  reset_state(ds);
  tcp_mode_ = true;
  backend_ = backend;
  view_->budget(backend_).on_request();
  start_attempt();
}

// Route → filters.on_request. False if the request was answered here.
bool Exchange::route_and_filter(const http::RequestHead& req, std::string_view target,
                                std::string_view route_host) {
  std::string_view path = target.substr(0, target.find('?'));
  size_t li = view_->slot_listener[ds_->client().slot()];
  const auto& lr = view_->snap->listeners[li];
  const ListenerFilters& lf = view_->filters[li];
  size_t q = target.find('?');
  std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  int route = find_route(lr.cfg->routes, RouteRequest{route_host, path, query, &req});
  filters_ = route < 0 ? &lf.listener : &lf.routes[static_cast<size_t>(route)];
  RequestView rv{req, route_host, target, path, ds_->client()};
  LocalAnswer a;
  a.edits = &edits_;
  if (filters_->on_request(rv, a) == FilterStatus::Answered) {
    answer(a.status, a.body, a.close);
    return false;
  }
  if (route < 0) {
    answer(404, "Not Found\n");
    return false;
  }
  const config::Route& r = lr.cfg->routes[static_cast<size_t>(route)];
  if (r.access && !access_allows(*r.access, ds_->client().addr())) {
    count_refusal(w_, *lr.cfg, Refusal::Access);
    edits_.clear();
    answer(403, "Forbidden\n");
    return false;
  }
  if (r.static_files) return serve_static(req, static_cast<size_t>(route), path);
  if (!r.forwards()) return route_action(r, target);
  if (filters_->body_filters) note_request_facts(req);
  backend_ = BackendId(r.backend_index);
  route_buffering_ = r.request_buffering;
  rewrite_ = r.rewrite ? &*r.rewrite : nullptr;
  if (!r.cache.empty() && !cache_begin(req, r, route_host, target)) return false;
  return true;
}

// A route that answers itself: `redirect` or `respond`. Always false (answered).
bool Exchange::route_action(const config::Route& r, std::string_view target) {
  own_answer_ = true;
  if (r.redirect) {
    const auto& rd = *r.redirect;
    std::string& loc = w_.scratch_string();
    loc.assign(rd.to);
    if (rd.keep_path) {
      if (!loc.empty() && loc.back() == '/' && !target.empty() && target.front() == '/')
        loc.pop_back();
      loc.append(target);
    }
    edits_.clear();  // request edits of the route's filters have no place on weir's answer
    edits_.set("Location", loc);
    local_body_.assign(http::reason_phrase(rd.status)).append("\n");
    answer(rd.status, local_body_);
    return false;
  }
  const auto& rs = *r.respond;
  edits_.clear();
  answer(rs.status, rs.body, false, rs.content_type);
  return false;
}

// What the hashing strategies and sticky sessions read from the request, taken while its head
// is still parsed (a retry happens after the views are gone).
void Exchange::choose_affinity(const http::RequestHead& req) {
  const BackendRuntime& b = backend();
  std::string_view key;
  has_key_hash_ = model::extract_key(b.hash_key, req, ds_->client().ip, key);
  key_hash_ = has_key_hash_ ? balance::hash_key(key) : 0;
  sticky_server_ = {};
  if (b.sticky) {
    model::KeySpec cookie{model::KeySpec::Kind::Cookie, b.sticky->cookie};
    std::string_view token;
    if (model::extract_key(cookie, req, ds_->client().ip, token))
      sticky_server_ = ServerId::from_int(b.sticky->find(token));
  }
}

// The head that goes upstream (kept for retries): filters.on_upstream_request edits it.
bool Exchange::build_forward_head(const http::RequestHead& req, std::string_view target,
                                  std::string_view host, std::string_view route_host) {
  const config::Listener& l = listener();
  const ClientInfo& c = ds_->client();
  RequestView rv{req, route_host, target, target.substr(0, target.find('?')), c};
  edits_.clear();
  filters_->on_upstream_request(rv, edits_);
  if (!request_id_.empty()) edits_.set(l.request_id, request_id_);
  if (ws_over_h2_) {
    // HTTP/2 clients send no Sec-WebSocket-Key; the HTTP/1.1 server needs one (its Accept is
    // not passed back).
    char key[25];
    websocket_key(w_.random(), w_.random(), key);
    edits_.set("Sec-WebSocket-Key", std::string_view(key, 24));
  }
  if (caching_) cache_edit_request(edits_);
  RequestForward fwd;
  fwd.target = target;
  fwd.host = host;
  fwd.client_ip = c.ip;
  fwd.trusted_client = l.trusted_proxies && l.trusted_proxies->contains(c.addr());
  fwd.upgrade = want_upgrade_;
  fwd.proto = c.tls ? "https" : "http";
  fwd.edits = edits_.empty() ? nullptr : &edits_;
  // Built in the worker's scratch, then copied: the kept head takes only its own size (measured
  // cheaper than building in place, 12.4k vs 12.7k instructions per request in bench s1).
  std::string& head = w_.scratch_string();
  head.clear();
  build_request_head(req, fwd, head);
  fwd_head_.assign(head);
  edits_.clear();  // the response's edits start afresh
  if (fwd_head_.size() > w_.buffers().block_size()) {
    answer(431, "Request Header Fields Too Large\n", true);
    return false;
  }
  return true;
}

// weir's own answer (errors, 404, 503, redirects): through the response filters like any other.
void Exchange::answer(uint16_t status, std::string_view body, bool close,
                      std::string_view content_type) {
  // No server could answer: a stored response that allows it does (RFC 5861 4).
  if (caching_ && status >= 500 && cache_serve_stale(status)) return;
  leave_queue();
  release_upstream(false);
  timer_.clear();
  timer_kind_ = TimerKind::None;
  if (tcp_mode_) {
    // No server could be reached: layer 4 has no way to say so but closing.
    note_end(termination_for(status));
    count(status);
    phase_ = Phase::Done;
    ds_->exchange_done(false, true);
    return;
  }
  if (grpc_ && status >= 400) grpc_answer(status, body, content_type);
  if (!own_answer_ && status >= 400) {
    const auto& pages = listener().error_pages;
    if (auto it = pages.find(status); it != pages.end()) {
      body = it->second.body;
      content_type = it->second.content_type;
    }
  }
  ResponseOut head;
  head.status = status;
  head.local = true;
  // HEAD: the length of the body a GET would get, and no body (RFC 9110 9.3.2).
  head.local_body = method_ == http::Method::Head ? std::string_view{} : body;
  head.body = status == 204 || status == 304 ? http::BodyKind::None : http::BodyKind::ContentLength;
  head.content_length = body.size();
  head.edits = &edits_;
  if (head.body != http::BodyKind::None) edits_.set("Content-Type", content_type);
  if (filters_) filters_->on_response(head);
  if (!request_id_.empty()) edits_.set(listener().request_id, request_id_);
  if (close) req_done_ = false;  // the connection must not be reused
  head.last = !req_done_;        // an unread request body leaves no way to find the next head
  status_ = status;
  note_end(termination_for(status));
  log_.bytes_out += head.local_body.size() + 120;  // the head, roughly
  count(status);
  phase_ = Phase::Done;
  // Nothing of this exchange's answer was sent yet, so the head always fits.
  bool sent = ds_->send_head(head) == HeadResult::Sent;
  ds_->exchange_done(sent, req_done_);
}

void Exchange::count(uint16_t status) {
  const ViewPtr& v = view_ ? view_ : w_.view();
  size_t li = v->slot_listener[ds_->client().slot()];
  if (grpc_ && grpc_status_ < 0 && !resp_trailers_.empty()) note_grpc_status(resp_trailers_);
  if (grpc_ && grpc_status_ >= 0) {
    v->counts(li, backend_.as_int())->add_grpc(status, static_cast<uint8_t>(grpc_status_));
  } else {
    v->counts(li, backend_.as_int())->add(status);
  }
  // Per server: the last one tried (the dashboard's error rate and latency).
  ServerCounts* per_server = nullptr;
  if (log_.server.valid() && backend_.valid()) {
    const BackendRuntime& b = v->snap->backend(backend_);
    if (b.has(log_.server)) per_server = &w_.stats().server(b.server(log_.server).uid);
  }
  if (per_server && status >= 500) ++per_server->errors;
  if (request_start_ != TimePoint{}) {
    auto elapsed = w_.reactor().refresh_now() - request_start_;
    double secs = std::chrono::duration<double>(elapsed).count();
    size_t bucket = LatencyHistogram::bucket(secs);
    w_.stats().latency.observe_in(bucket, secs);
    if (per_server) per_server->latency.observe_in(bucket, secs);
  }
  request_start_ = {};
}

// The end of a proxied exchange. `response_complete`: the client got the whole answer.
void Exchange::finish(bool response_complete) {
  timer_.clear();
  timer_kind_ = TimerKind::None;
  phase_ = Phase::Done;
  ds_->exchange_done(response_complete, req_done_);
}

void Exchange::cancel() {
  timer_.clear();
  timer_kind_ = TimerKind::None;
  drop_body_state();
  if (phase_ == Phase::Idle || phase_ == Phase::Done) return;
  client_closed();
  cache_release();
  leave_queue();
  release_upstream(false);
  phase_ = Phase::Done;
}

ExchangePool::~ExchangePool() {
  while (later_) {
    Exchange* e = later_;
    later_ = e->pool_next;
    delete e;
  }
  while (free_) {
    Exchange* e = free_;
    free_ = e->pool_next;
    delete e;
  }
}

void ExchangePool::trim(size_t keep) {
  while (cached_ > keep && free_) {
    Exchange* e = free_;
    free_ = e->pool_next;
    --cached_;
    delete e;
  }
}

Exchange* ExchangePool::take() {
  if (!free_) return new Exchange(w_);
  Exchange* e = free_;
  free_ = e->pool_next;
  e->pool_next = nullptr;
  --cached_;
  return e;
}

void Exchange::recycle() {
  cancel();
  cache_release();  // before the view (and with it the store) may go
  background_ = false;
  write_access_log();
  phase_ = Phase::Idle;
  view_.reset();  // an old snapshot is not kept alive by a pooled exchange
  ds_ = nullptr;
  filters_ = nullptr;
}

void ExchangePool::give_back_later(Exchange* e) {
  if (!e) return;
  // One deferred call per event batch gives back every exchange that ended in it.
  e->pool_next = later_;
  later_ = e;
  if (later_scheduled_) return;
  later_scheduled_ = true;
  w_.reactor().defer([this] {
    later_scheduled_ = false;
    while (later_) {
      Exchange* x = later_;
      later_ = x->pool_next;
      give_back(x);
    }
  });
}

void ExchangePool::give_back(Exchange* e) {
  e->recycle();
  if (cached_ >= kMaxCached) {
    delete e;
    return;
  }
  e->pool_next = free_;
  free_ = e;
  ++cached_;
}

}  // namespace weir::proxy
