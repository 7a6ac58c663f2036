// An exchange's access log line (proxy.md "Access log"): what it needs is copied while the
// request's views live (begin_log, note_request), the first cause of its end is noted
// (note_end, termination_for), and the line is written when the exchange goes back to its pool.
#include <ctime>

#include "http/parser.hpp"
#include "proxy/exchange.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {

void Exchange::begin_log(Downstream& ds) {
  log_.on = w_.access_log() != nullptr && w_.listener_runtime(slot_).log_destination >= 0;
  log_.server = {};  // also what count() charges per server, logged or not
  if (!log_.on) return;
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  log_.start_ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
  log_start_ = w_.reactor().now();
  if (!log_.text) log_.text = std::make_unique<LogText>();
  LogText& t = *log_.text;
  t.client = ds.client().addr().to_string();
  t.method.clear();
  t.host.clear();
  t.path.clear();
  t.user_agent.clear();
  t.referer.clear();
  log_.proto = to_string(ds.client().proto);
  log_.tls = tls_version_name(ds.client().tls_version);
  log_.bytes_in = log_.bytes_out = 0;
  log_.upstream_ms = -1;
  log_.server = {};
  log_.ended = false;
  log_.termination = Termination::Ok;
}

void Exchange::note_request(const http::RequestHead& req) {
  if (!log_.on) return;
  log_.text->method.assign(req.method_text);
  log_.text->host.assign(req.host);
  log_.text->path.assign(req.target);
  if (req.version_minor == 0 && log_.proto == "HTTP/1.1") log_.proto = "HTTP/1.0";
  // The head's size as HTTP/1.1 writes it (the same for both codecs).
  uint64_t n = req.method_text.size() + req.target.size() + 12;
  const bool combined = w_.listener_runtime(slot_).log_combined;
  for (const auto& h : req.headers) {
    n += h.name.size() + h.value.size() + 4;
    if (!combined) continue;
    if (h.name.size() == 10 && http::iequals(h.name, "user-agent"))
      log_.text->user_agent.assign(h.value);
    if (h.name.size() == 7 && http::iequals(h.name, "referer")) log_.text->referer.assign(h.value);
  }
  log_.bytes_in = n + 2;
}

Termination Exchange::termination_for(uint16_t status) const {
  if (own_answer_) return Termination::Local;
  switch (status) {
    case 400:
    case 405:
    case 413:
    case 414:
    case 431:
      return Termination::BadRequest;
    case 403:
      return Termination::Denied;
    case 408:
      return Termination::ClientTimeout;
    case 429:
      return Termination::RateLimited;
    case 502:
    case 504:
      switch (last_failure_) {
        case Failure::Refused:
        case Failure::Unprocessed:
          return Termination::UpstreamRefused;
        case Failure::ConnectTimeout:
        case Failure::Timeout:
          return Termination::UpstreamTimeout;
        case Failure::Reset:
        case Failure::Garbage:
          return Termination::UpstreamReset;
      }
      return Termination::UpstreamReset;
    case 503:
      return Termination::NoServer;
    default:
      return Termination::Local;
  }
}

// One line per request, when the exchange goes back to the pool: everything it needs is its
// own by then (the downstream may be gone).
void Exchange::write_access_log() {
  if (!log_.on || !view_) return;
  log_.on = false;
  const model::ListenerRuntime& lr = view_->snap->listeners[view_->slot_listener[slot_]];
  AccessRecord r;
  r.time_unix_ms = log_.start_ms;
  r.listener = lr.cfg->name;
  r.client = log_.text->client;
  r.method = log_.text->method;
  r.host = log_.text->host;
  r.path = log_.text->path;
  r.proto = log_.proto;
  r.status = status_;
  r.bytes_in = log_.bytes_in;
  r.bytes_out = log_.bytes_out;
  r.duration_ms =
      std::chrono::duration<double, std::milli>(w_.reactor().refresh_now() - log_start_).count();
  if (backend_.valid()) {
    r.backend = backend().cfg->name;
    if (log_.server.valid()) r.server = backend().server(log_.server).name;
  }
  r.upstream_ms = log_.upstream_ms;
  r.retries = attempts_ > 1 ? attempts_ - 1 : 0;
  r.request_id = request_id_;
  r.tls = log_.tls;
  r.termination = log_.termination;
  r.user_agent = log_.text->user_agent;
  r.referer = log_.text->referer;
  w_.access_log()->log(lr.log_destination, lr.log_combined ? LogFormat::Combined : LogFormat::Json,
                       r);
}

}  // namespace weir::proxy
