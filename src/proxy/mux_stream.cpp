#include "proxy/mux_stream.hpp"

#include <algorithm>

#include "core/log.hpp"
#include "proxy/exchange.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {

bool connection_specific(std::string_view lower) {
  return lower == "connection" || lower == "keep-alive" || lower == "proxy-connection" ||
         lower == "transfer-encoding" || lower == "upgrade";
}

MuxStream::MuxStream(Worker& w, int64_t id) : w_(w), id_(id), body_(w.buffers()) {}

// The subclasses call abandon() in their destructors: cancelling an exchange may call back
// into the Downstream, which must still be whole then.
MuxStream::~MuxStream() = default;

void MuxStream::add_field(std::string_view name, std::string_view value) {
  if (head_ == Head::TooLarge) return;  // the rest is not even counted
  if (!head_fields_.add(name, value, max_header_bytes(), max_headers())) {
    head_ = Head::TooLarge;  // answered 431 (once the block ends, or now: head_too_large())
    head_too_large();
  }
}

void MuxStream::end_head(bool end_stream) {
  if (head_ == Head::Receiving) head_ = Head::Complete;
  wants_run_ = true;
  if (end_stream) req_ended_ = true;
}

void MuxStream::append_data(std::string_view data) {
  if (data.empty()) return;
  if (!ex_ && started_) {
    give_window(data.size());  // the exchange is over: nobody will read it
    return;
  }
  body_.append(data);
  unconsumed_ += data.size();
  wants_run_ = true;
}

void MuxStream::add_trailer(std::string_view name, std::string_view value) {
  if (trailers_refused_) return;
  trailer_bytes_ += name.size() + value.size() + 32;
  if (++trailer_count_ > max_headers() || trailer_bytes_ > max_header_bytes() ||
      req_trailers_.size() + name.size() + value.size() + 4 > http::kMaxTrailerBytes) {
    log::debug("client {}: {} stream {}: trailer section too large", client().ip,
               to_string(client().proto), id_);
    trailers_refused_ = true;
    std::string().swap(req_trailers_);
    refuse_trailers();
    return;
  }
  // The codec has checked the name (lower case token, no pseudo-field) and the value.
  req_trailers_.append(name).append(": ").append(value).append("\r\n");
}

void MuxStream::end_request() {
  if (trailers_refused_) return;  // reset: the body never ends
  req_ended_ = true;
  wants_run_ = true;
}

bool MuxStream::run_exchange() {
  if (closed_ || reset_) return false;
  bool moved = false;
  if (!started_ && (head_ == Head::Complete || head_ == Head::TooLarge) && wants_run_) {
    start_exchange();
    wants_run_ = ex_ != nullptr;  // a pooled server connection waits for our first write
    moved = true;
  } else if (wants_run_ && ex_) {
    wants_run_ = false;
    moved = ex_->pump();
    // It moved: it may move more without a new event (a socket that stayed writable).
    if (moved && ex_) wants_run_ = true;
  }
  return moved;
}

void MuxStream::start_exchange() {
  started_ = true;
  ex_ = w_.exchanges().take();
  if (head_ == Head::TooLarge) {
    // Answered here: the head never reaches the proxy logic.
    ex_->start_error(*this, 431);
    return;
  }
  // The request head as HTTP/1.1 would have parsed it, checked by the same rules.
  http::RequestHead req;
  auto r = head_fields_.build(req, w_.scratch_headers(), req_ended_);
  if (r.status == http::ParseStatus::Error) {
    ++w_.stats().parse_errors;
    log::debug("client {}: {} stream {}: bad request: {}", client().ip, to_string(client().proto),
               id_, r.error_reason);
    ex_->start_error(*this, r.error_status);
    return;
  }
  ex_->start(*this, req);
  head_fields_ = H2RequestHead{};  // the exchange keeps what it needs (the forwarded head)
}

BodyRead MuxStream::read_body(BodySink& sink) {
  bool moved = false;
  std::string_view avail;
  BodyRead state = body_in_place(avail);
  while (!avail.empty() && sink.room() > 0) {
    size_t n = std::min(avail.size(), sink.room());
    sink.put(avail.substr(0, n));
    consume_body(n);
    moved = true;
    state = body_in_place(avail);
  }
  // Done once the last chunk fits too (see H1Connection::read_body).
  if (state == BodyRead::Done && body_.empty() && sink.can_finish(req_trailers_))
    return BodyRead::Done;
  if (state == BodyRead::Gone) return BodyRead::Gone;
  return moved ? BodyRead::Progress : BodyRead::Idle;
}

// The first contiguous run of the body (one block); Done once the request ended and it is all
// there is.
BodyRead MuxStream::body_in_place(std::string_view& bytes) {
  bytes = body_.front();
  if (req_ended_ && bytes.size() == body_.size()) return BodyRead::Done;
  if (closed_ && !req_ended_) return BodyRead::Gone;
  return bytes.empty() ? BodyRead::Idle : BodyRead::Progress;
}

void MuxStream::consume_body(size_t n) {
  if (n == 0) return;
  body_.consume(n);  // emptied blocks go back to the pool at once
  // The window opens only for what the server took: a slow server slows its client's stream.
  unconsumed_ -= n;
  if (!closed_) give_window(n);
}

void MuxStream::drop_request_body() {
  if (unconsumed_ > 0 && !closed_) give_window(unconsumed_);
  unconsumed_ = 0;
  body_.clear();
}

void MuxStream::wake() {
  wants_run_ = true;
  schedule();
}

void MuxStream::abandon() {
  if (!ex_) return;
  Exchange* ex = ex_;
  ex_ = nullptr;
  ex->cancel();
  w_.exchanges().give_back_later(ex);
}

}  // namespace weir::proxy
