#include "proxy/h2_stream.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/log.hpp"
#include "http/fields.hpp"
#include "http/status.hpp"
#include "proxy/exchange.hpp"
#include "proxy/h2_connection.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

// Response fields that mean something only to one HTTP/1.1 connection (RFC 9113 §8.2.2).
bool connection_specific(std::string_view lower) {
  return lower == "connection" || lower == "keep-alive" || lower == "proxy-connection" ||
         lower == "transfer-encoding" || lower == "upgrade";
}

}  // namespace

H2Stream::H2Stream(H2Connection& conn, int32_t id)
    : conn_(conn), id_(id), body_(conn.worker().buffers()) {}

H2Stream::~H2Stream() {
  abandon();
}

const ClientInfo& H2Stream::client() const {
  return conn_.client();
}

void H2Stream::add_field(std::string_view name, std::string_view value) {
  if (!head_fields_.add(name, value, conn_.max_header_bytes(), conn_.max_headers()))
    head_ = Head::TooLarge;  // answered 431 once the block ends; the rest is only counted
}

void H2Stream::end_head(bool end_stream) {
  if (head_ == Head::Receiving) head_ = Head::Complete;
  wants_run_ = true;
  if (end_stream) req_ended_ = true;
}

void H2Stream::append_data(std::string_view data) {
  if (data.empty()) return;
  if (!ex_ && started_) {
    // The exchange is over: nobody will read it.
    nghttp2_session_consume(conn_.session(), id_, data.size());
    return;
  }
  body_.append(data);
  unconsumed_ += data.size();
  wants_run_ = true;
}

void H2Stream::add_trailer(std::string_view name, std::string_view value) {
  if (trailers_refused_) return;
  trailer_bytes_ += name.size() + value.size() + 32;
  if (++trailer_count_ > conn_.max_headers() || trailer_bytes_ > conn_.max_header_bytes() ||
      req_trailers_.size() + name.size() + value.size() + 4 > http::kMaxTrailerBytes) {
    log::debug("client {}: HTTP/2 stream {}: trailer section too large", client().ip, id_);
    trailers_refused_ = true;
    std::string().swap(req_trailers_);
    reset(NGHTTP2_ENHANCE_YOUR_CALM);
    return;
  }
  // nghttp2 has checked the name (lower case token, no pseudo-field) and the value.
  req_trailers_.append(name).append(": ").append(value).append("\r\n");
}

void H2Stream::end_request() {
  if (trailers_refused_) return;  // reset: the body never ends
  req_ended_ = true;
  wants_run_ = true;
}

bool H2Stream::carries_websocket() const {
  return ex_ && ex_->websocket_over_h2();
}

bool H2Stream::run_exchange() {
  if (closed_ || answer_ == Answer::Reset) return false;
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

void H2Stream::start_exchange() {
  started_ = true;
  Worker& w = conn_.worker();
  ex_ = w.exchanges().take();
  if (head_ == Head::TooLarge) {
    // Answered here: the head never reaches the proxy logic.
    ex_->start_error(*this, 431);
    return;
  }
  // The request head as HTTP/1.1 would have parsed it, checked by the same rules.
  http::RequestHead req;
  auto r = head_fields_.build(req, w.scratch_headers(), req_ended_);
  if (r.status == http::ParseStatus::Error) {
    ++w.stats().parse_errors;
    log::debug("client {}: HTTP/2 stream {}: bad request: {}", client().ip, id_, r.error_reason);
    ex_->start_error(*this, r.error_status);
    return;
  }
  ex_->start(*this, req);
  head_fields_ = H2RequestHead{};  // the exchange keeps what it needs (the forwarded head)
}

BodyRead H2Stream::read_body(BodySink& sink) {
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

// The first contiguous run of the body (one block); Done once END_STREAM came and it is all
// there is.
BodyRead H2Stream::body_in_place(std::string_view& bytes) {
  bytes = body_.front();
  if (req_ended_ && bytes.size() == body_.size()) return BodyRead::Done;
  if (closed_ && !req_ended_) return BodyRead::Gone;
  return bytes.empty() ? BodyRead::Idle : BodyRead::Progress;
}

void H2Stream::consume_body(size_t n) {
  if (n == 0) return;
  body_.consume(n);  // emptied blocks go back to the pool at once
  // The window opens only for what the server took: a slow server slows its client's stream.
  unconsumed_ -= n;
  if (!closed_) nghttp2_session_consume(conn_.session(), id_, n);
  conn_.schedule_turn();  // a WINDOW_UPDATE to send
}

// HEADERS for a response head: :status, the fields that survive the edits (names lower-cased,
// fields that belong to one HTTP/1.1 connection dropped), and for weir's own answers the
// length. A final head with a body gets the stream's data source.
int H2Stream::submit(const ResponseOut& head, bool final_head) {
  std::string& names = conn_.names_scratch();
  std::vector<nghttp2_nv>& nva = conn_.nv_scratch();
  // Names lower-cased into one buffer sized up front, so the pointers stay valid.
  size_t total = 0;
  head.for_each_field([&](std::string_view name, std::string_view) { total += name.size(); });
  names.resize(total);
  nva.clear();
  char status[4];
  std::to_chars(status, status + 3, head.status);
  char length[24];
  auto nv = [](const char* n, size_t nl, const char* v, size_t vl) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v)), nl, vl,
                      NGHTTP2_NV_FLAG_NONE};
  };
  nva.push_back(nv(":status", 7, status, 3));
  size_t at = 0;
  const bool own_length = head.local || head.body == http::BodyKind::ContentLength;
  head.for_each_field([&](std::string_view name, std::string_view value) {
    char* lower = names.data() + at;
    for (size_t i = 0; i < name.size(); ++i)
      lower[i] = name[i] >= 'A' && name[i] <= 'Z' ? static_cast<char>(name[i] | 0x20) : name[i];
    at += name.size();
    if (connection_specific(std::string_view(lower, name.size()))) return;
    // A body of known length: the length written below is the one that holds (a stored
    // response answered with a range, a file), not the field as received.
    if (own_length && std::string_view(lower, name.size()) == "content-length") return;
    nva.push_back(nv(lower, name.size(), value.data(), value.size()));
  });
  if (own_length) {
    auto [end, ec] = std::to_chars(length, length + sizeof length, head.content_length);
    (void)ec;
    nva.push_back(nv("content-length", 14, length, static_cast<size_t>(end - length)));
  }
  nghttp2_session* ses = conn_.session();
  if (!final_head)
    return nghttp2_submit_headers(ses, NGHTTP2_FLAG_NONE, id_, nullptr, nva.data(), nva.size(),
                                  nullptr);
  answer_ = Answer::Streaming;
  if (head.body == http::BodyKind::None || (head.local && head.local_body.empty()))
    return nghttp2_submit_response(ses, id_, nva.data(), nva.size(), nullptr);
  nghttp2_data_provider prd;
  prd.source.ptr = this;
  prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source* src, void*) -> ssize_t {
    return static_cast<H2Stream*>(src->ptr)->read_response(buf, len, flags);
  };
  return nghttp2_submit_response(ses, id_, nva.data(), nva.size(), &prd);
}

void H2Stream::send_interim(const http::ResponseHead& head) {
  if (closed_ || answer_ != Answer::Pending) return;
  ResponseOut out;
  out.status = head.status;
  out.fields = head.headers;
  if (submit(out, false) == 0) conn_.schedule_turn();
}

HeadResult H2Stream::send_head(const ResponseOut& head) {
  if (closed_ || answer_ != Answer::Pending) return HeadResult::Refused;
  if (head.local) {
    local_ = true;
    local_body_.assign(head.local_body);  // read after the exchange is gone
    local_read_ = 0;
  }
  int rv = submit(head, true);
  if (rv != 0) {
    log::debug("HTTP/2 stream {}: cannot submit response: {}", id_, nghttp2_strerror(rv));
    return HeadResult::Refused;
  }
  conn_.schedule_turn();
  return HeadResult::Sent;
}

ssize_t H2Stream::read_response(uint8_t* buf, size_t len, uint32_t* flags) {
  if (local_) {
    size_t n = std::min(len, local_body_.size() - local_read_);
    if (n > 0) std::memcpy(buf, local_body_.data() + local_read_, n);
    local_read_ += n;
    if (local_read_ == local_body_.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
  if (!ex_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // the exchange ended mid-body
  bool eof = false;
  ssize_t n = ex_->pull_body(reinterpret_cast<char*>(buf), len, eof);
  if (n < 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // the server failed mid-body
  if (eof) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    // Trailers: END_STREAM goes on the HEADERS frame that carries them, after this DATA.
    if (!resp_trailers_.empty() && submit_trailers()) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return n;
  }
  if (n > 0) return n;
  deferred_ = true;
  return NGHTTP2_ERR_DEFERRED;
}

bool H2Stream::finish_body(std::string_view trailers) {
  resp_trailers_.assign(trailers);  // read_response sends them once the exchange is gone
  return true;
}

// The response's trailer fields as a trailing HEADERS frame (nghttp2 copies them): names
// lower-cased, those that may not travel in trailers left out. False if none was submitted.
bool H2Stream::submit_trailers() {
  std::string& names = conn_.names_scratch();
  std::vector<nghttp2_nv>& nva = conn_.nv_scratch();
  names.resize(resp_trailers_.size());  // every name fits: the lines hold them
  nva.clear();
  size_t at = 0;
  http::for_each_field_line(resp_trailers_, [&](std::string_view name, std::string_view value) {
    if (!http::trailer_field_allowed(name)) return;
    char* lower = names.data() + at;
    for (size_t i = 0; i < name.size(); ++i)
      lower[i] = http::chars::lower(name[i]);
    at += name.size();
    nva.push_back({reinterpret_cast<uint8_t*>(lower),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                   value.size(), NGHTTP2_NV_FLAG_NONE});
  });
  int rv = nva.empty() ? -1 : nghttp2_submit_trailer(conn_.session(), id_, nva.data(), nva.size());
  if (rv < 0 && !nva.empty())
    log::debug("HTTP/2 stream {}: cannot submit trailers: {}", id_, nghttp2_strerror(rv));
  std::string().swap(resp_trailers_);  // copied by nghttp2
  return rv == 0;
}

void H2Stream::body_available() {
  if (!deferred_ || answer_ != Answer::Streaming) return;
  deferred_ = false;
  nghttp2_session_resume_data(conn_.session(), id_);
  conn_.schedule_turn();
}

void H2Stream::wake() {
  wants_run_ = true;
  conn_.schedule_turn();
}

void H2Stream::exchange_done(bool response_complete, bool) {
  conn_.worker().exchanges().give_back_later(ex_);
  ex_ = nullptr;
  // What the exchange left unread will not be read: its window goes back.
  if (unconsumed_ > 0 && !closed_) nghttp2_session_consume(conn_.session(), id_, unconsumed_);
  unconsumed_ = 0;
  body_.clear();
  if (!response_complete && !local_) reset(NGHTTP2_INTERNAL_ERROR);
  conn_.schedule_turn();
}

void H2Stream::reset(uint32_t code) {
  if (answer_ == Answer::Reset || closed_) return;
  answer_ = Answer::Reset;
  nghttp2_submit_rst_stream(conn_.session(), NGHTTP2_FLAG_NONE, id_, code);
  conn_.schedule_turn();
}

void H2Stream::on_closed() {
  closed_ = true;
}

void H2Stream::abandon() {
  if (!ex_) return;
  Exchange* ex = ex_;
  ex_ = nullptr;
  ex->cancel();
  conn_.worker().exchanges().give_back_later(ex);
}

}  // namespace weir::proxy
