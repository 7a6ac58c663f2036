// An exchange's one timer and what its kinds mean: the response's inactivity, a stalled request
// body, the wait for a server slot (queue), and the queue's wake-up.
#include "core/log.hpp"
#include "proxy/exchange.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {

void Exchange::arm(TimerKind kind, Millis after) {
  timer_kind_ = kind;
  timer_.set(w_.reactor().timers(), w_.reactor().now() + after);
}

// Inactivity of the response: every bit of progress pushes the deadline, but the timer in the
// heap moves only when it fires early (no heap update per read or write).
void Exchange::touch_response_timer() {
  timer_kind_ = TimerKind::Response;
  timer_.set(w_.reactor().timers(), w_.reactor().now() + response_timeout_);
}

void Exchange::touch_body_timer() {
  timer_kind_ = TimerKind::Body;
  timer_.set(w_.reactor().timers(), w_.reactor().now() + listener().timeouts.body);
}

// The client's turn while its body is incomplete and nothing of it waits to go to the server;
// otherwise the server's.
bool Exchange::waiting_for_client() const {
  if (body_read_done_ || req_done_) return false;
  if (phase_ == Phase::Buffering) return true;
  return phase_ == Phase::Upstream && up_ && !up_->connecting && up_->stream.out.empty() &&
         replay_sent_ >= replay_body_.size() && head_sent_ >= fwd_head_.size();
}

void Exchange::touch_wait_timer() {
  if (waiting_for_client())
    touch_body_timer();
  else
    touch_response_timer();
}

void Exchange::on_body_timeout() {
  if (!waiting_for_client()) {
    touch_response_timer();  // the server is the one not reading
    return;
  }
  log::debug("client {}: no request body byte for {} ms: 408", ds_->client().ip,
             listener().timeouts.body.count());
  leave_queue();
  release_upstream(false);  // the server has part of a request: that connection is done
  answer(408, "Request Timeout\n", true);
}

void Exchange::on_timer() {
  TimerKind kind = timer_kind_;
  timer_kind_ = TimerKind::None;
  switch (kind) {
    case TimerKind::Connect:
      upstream_failed(Failure::ConnectTimeout);
      break;
    case TimerKind::Queue:
      queue_tick();
      break;
    case TimerKind::Body:
      on_body_timeout();
      break;
    case TimerKind::Coalesce:
      on_coalesce_timeout();
      break;
    case TimerKind::Response:
      if (phase_ == Phase::Upstream)
        upstream_failed(Failure::Timeout);
      else
        abort();
      break;
    case TimerKind::None:
      return;
  }
  if (ds_) ds_->wake();  // to move on, or to flush the answer the exchange ended with
}

void Exchange::on_queue_wake() {
  if (phase_ != Phase::Queued) return;
  queue_tick();
  ds_->wake();
}

}  // namespace weir::proxy
