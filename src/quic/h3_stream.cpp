#include "quic/h3_stream.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/log.hpp"
#include "http/fields.hpp"
#include "proxy/exchange.hpp"
#include "proxy/worker.hpp"
#include "quic/h3_connection.hpp"

namespace weir::quic {
namespace {

// Response fields that mean something only to one HTTP/1.1 connection (RFC 9114 §4.2).
bool connection_specific(std::string_view lower) {
  return lower == "connection" || lower == "keep-alive" || lower == "proxy-connection" ||
         lower == "transfer-encoding" || lower == "upgrade";
}

nghttp3_nv nv(const char* n, size_t nl, const char* v, size_t vl) {
  return nghttp3_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v)), nl, vl, NGHTTP3_NV_FLAG_NONE};
}

}  // namespace

H3Stream::H3Stream(H3Connection& conn, int64_t id)
    : conn_(conn), id_(id), body_(conn.worker().buffers()) {}

H3Stream::~H3Stream() {
  abandon();
  for (Buffer& b : out_) {
    b.clear();
    conn_.worker().buffers().release(b);
  }
}

const proxy::ClientInfo& H3Stream::client() const {
  return conn_.client();
}

void H3Stream::add_field(std::string_view name, std::string_view value) {
  if (!head_fields_.add(name, value, conn_.max_header_bytes(), conn_.max_headers()))
    head_ = Head::TooLarge;
}

void H3Stream::end_head(bool fin) {
  if (head_ == Head::Receiving) head_ = Head::Complete;
  wants_run_ = true;
  if (fin) req_ended_ = true;
}

void H3Stream::append_data(std::string_view data) {
  if (data.empty()) return;
  if ((!ex_ && started_) || reading_stopped_) {
    conn_.consumed(id_, data.size());  // nobody will read it
    return;
  }
  body_.append(data);
  unconsumed_ += data.size();
  wants_run_ = true;
}

void H3Stream::add_trailer(std::string_view name, std::string_view value) {
  if (trailers_refused_) return;
  trailer_bytes_ += name.size() + value.size() + 32;
  if (++trailer_count_ > conn_.max_headers() || trailer_bytes_ > conn_.max_header_bytes() ||
      req_trailers_.size() + name.size() + value.size() + 4 > http::kMaxTrailerBytes) {
    log::debug("client {}: HTTP/3 stream {}: trailer section too large", client().ip, id_);
    trailers_refused_ = true;
    std::string().swap(req_trailers_);
    reset(NGHTTP3_H3_EXCESSIVE_LOAD);
    return;
  }
  req_trailers_.append(name).append(": ").append(value).append("\r\n");
}

void H3Stream::end_request() {
  if (trailers_refused_) return;
  req_ended_ = true;
  wants_run_ = true;
}

bool H3Stream::run_exchange() {
  if (closed_ || answer_ == Answer::Reset) return false;
  bool moved = false;
  if (!started_ && (head_ == Head::Complete || head_ == Head::TooLarge) && wants_run_) {
    start_exchange();
    wants_run_ = ex_ != nullptr;
    moved = true;
  } else if (wants_run_ && ex_) {
    wants_run_ = false;
    moved = ex_->pump();
    if (moved && ex_) wants_run_ = true;
  }
  return moved;
}

void H3Stream::start_exchange() {
  started_ = true;
  proxy::Worker& w = conn_.worker();
  ex_ = w.exchanges().take();
  if (head_ == Head::TooLarge) {
    ex_->start_error(*this, 431);
    return;
  }
  http::RequestHead req;
  auto r = head_fields_.build(req, w.scratch_headers(), req_ended_);
  if (r.status == http::ParseStatus::Error) {
    ++w.stats().parse_errors;
    log::debug("client {}: HTTP/3 stream {}: bad request: {}", client().ip, id_, r.error_reason);
    ex_->start_error(*this, r.error_status);
    return;
  }
  ex_->start(*this, req);
  head_fields_ = proxy::H2RequestHead{};
}

proxy::BodyRead H3Stream::read_body(proxy::BodySink& sink) {
  bool moved = false;
  std::string_view avail;
  proxy::BodyRead state = body_in_place(avail);
  while (!avail.empty() && sink.room() > 0) {
    size_t n = std::min(avail.size(), sink.room());
    sink.put(avail.substr(0, n));
    consume_body(n);
    moved = true;
    state = body_in_place(avail);
  }
  if (state == proxy::BodyRead::Done && body_.empty() && sink.can_finish(req_trailers_))
    return proxy::BodyRead::Done;
  if (state == proxy::BodyRead::Gone) return proxy::BodyRead::Gone;
  return moved ? proxy::BodyRead::Progress : proxy::BodyRead::Idle;
}

proxy::BodyRead H3Stream::body_in_place(std::string_view& bytes) {
  bytes = body_.front();
  if (req_ended_ && bytes.size() == body_.size()) return proxy::BodyRead::Done;
  if (closed_ && !req_ended_) return proxy::BodyRead::Gone;
  return bytes.empty() ? proxy::BodyRead::Idle : proxy::BodyRead::Progress;
}

void H3Stream::consume_body(size_t n) {
  if (n == 0) return;
  body_.consume(n);
  unconsumed_ -= n;
  if (!closed_) conn_.consumed(id_, n);  // the window opens only for what the server took
}

// A HEADERS frame for a response head: :status, the fields that survive the edits (names
// lower-cased, connection-specific ones dropped), and for a body of known length its length.
int H3Stream::submit(const proxy::ResponseOut& head, bool final_head) {
  std::string& names = conn_.names_scratch();
  std::vector<nghttp3_nv>& nva = conn_.nv_scratch();
  size_t total = 0;
  head.for_each_field([&](std::string_view name, std::string_view) { total += name.size(); });
  names.resize(total);
  nva.clear();
  char status[4];
  std::to_chars(status, status + 3, head.status);
  char length[24];
  nva.push_back(nv(":status", 7, status, 3));
  size_t at = 0;
  const bool own_length = head.local || head.body == http::BodyKind::ContentLength;
  head.for_each_field([&](std::string_view name, std::string_view value) {
    char* lower = names.data() + at;
    for (size_t i = 0; i < name.size(); ++i)
      lower[i] = http::chars::lower(name[i]);
    at += name.size();
    std::string_view l(lower, name.size());
    if (connection_specific(l)) return;
    if (own_length && l == "content-length") return;
    nva.push_back(nv(lower, name.size(), value.data(), value.size()));
  });
  if (own_length) {
    auto [end, ec] = std::to_chars(length, length + sizeof length, head.content_length);
    (void)ec;
    nva.push_back(nv("content-length", 14, length, static_cast<size_t>(end - length)));
  }
  nghttp3_conn* h3 = conn_.h3();
  if (!final_head) return nghttp3_conn_submit_info(h3, id_, nva.data(), nva.size());
  answer_ = Answer::Streaming;
  if (head.body == http::BodyKind::None || (head.local && head.local_body.empty()))
    return nghttp3_conn_submit_response(h3, id_, nva.data(), nva.size(), nullptr);
  nghttp3_data_reader dr;
  dr.read_data = [](nghttp3_conn*, int64_t, nghttp3_vec* vec, size_t veccnt, uint32_t* flags, void*,
                    void* su) -> nghttp3_ssize {
    if (!su) return NGHTTP3_ERR_CALLBACK_FAILURE;
    return static_cast<H3Stream*>(su)->read_data(vec, veccnt, flags);
  };
  return nghttp3_conn_submit_response(h3, id_, nva.data(), nva.size(), &dr);
}

void H3Stream::send_interim(const http::ResponseHead& head) {
  if (closed_ || answer_ != Answer::Pending) return;
  proxy::ResponseOut out;
  out.status = head.status;
  out.fields = head.headers;
  if (submit(out, false) == 0) conn_.schedule_turn();
}

proxy::HeadResult H3Stream::send_head(const proxy::ResponseOut& head) {
  if (closed_ || answer_ != Answer::Pending) return proxy::HeadResult::Refused;
  if (head.local) {
    local_ = true;
    local_body_.assign(head.local_body);
    local_given_ = 0;
  }
  int rv = submit(head, true);
  if (rv != 0) {
    log::debug("HTTP/3 stream {}: cannot submit response: {}", id_, nghttp3_strerror(rv));
    return proxy::HeadResult::Refused;
  }
  conn_.schedule_turn();
  return proxy::HeadResult::Sent;
}

// Pulls what the exchange has into the send blocks while unacknowledged bytes stay under the
// cap. Blocks are only appended to at their tail (never compacted): nghttp3 and ngtcp2 keep
// pointers into them until the client acknowledges the bytes.
void H3Stream::fill() {
  if (!ex_ || eof_) return;
  BufferPool& pool = conn_.worker().buffers();
  while (out_bytes_ < conn_.send_cap()) {
    if (out_.empty() || out_.back().tail_room() == 0) {
      out_.emplace_back();
      pool.acquire(out_.back());
    }
    Buffer& b = out_.back();
    auto tail = b.writable();
    size_t room = std::min<uint64_t>(tail.size(), conn_.send_cap() - out_bytes_);
    bool eof = false;
    ssize_t n = ex_->pull_body(tail.data(), room, eof);
    if (n < 0) {
      reset(NGHTTP3_H3_INTERNAL_ERROR);  // the server failed mid-body
      return;
    }
    b.commit(static_cast<size_t>(n));
    out_bytes_ += static_cast<uint64_t>(n);
    if (eof) {
      eof_ = true;
      return;
    }
    if (n == 0) return;
    if (!ex_) return;
  }
}

nghttp3_ssize H3Stream::read_data(nghttp3_vec* vec, size_t veccnt, uint32_t* flags) {
  if (local_) {
    if (local_given_ == local_body_.size()) {
      *flags |= NGHTTP3_DATA_FLAG_EOF;
      return 0;
    }
    vec[0].base = reinterpret_cast<uint8_t*>(local_body_.data());
    vec[0].len = local_body_.size();
    local_given_ = local_body_.size();
    *flags |= NGHTTP3_DATA_FLAG_EOF;
    return 1;
  }
  if (answer_ == Answer::Reset) return NGHTTP3_ERR_CALLBACK_FAILURE;
  fill();
  if (answer_ == Answer::Reset) return NGHTTP3_ERR_CALLBACK_FAILURE;
  // The blocks' bytes nghttp3 does not have yet, after the `given_` it has.
  size_t cnt = 0;
  uint64_t skip = given_;
  for (Buffer& b : out_) {
    if (cnt == veccnt) break;
    auto r = b.readable();
    if (skip >= r.size()) {
      skip -= r.size();
      continue;
    }
    vec[cnt].base = reinterpret_cast<uint8_t*>(const_cast<char*>(r.data() + skip));
    vec[cnt].len = r.size() - skip;
    given_ += vec[cnt].len;
    skip = 0;
    ++cnt;
  }
  bool all_given = given_ == out_bytes_;
  if (eof_ && all_given && !eof_given_) {
    eof_given_ = true;
    *flags |= NGHTTP3_DATA_FLAG_EOF;
    if (!resp_trailers_.empty() && submit_trailers()) *flags |= NGHTTP3_DATA_FLAG_NO_END_STREAM;
    answer_ = Answer::Done;
    return static_cast<nghttp3_ssize>(cnt);
  }
  if (cnt > 0) return static_cast<nghttp3_ssize>(cnt);
  if (!ex_ && !eof_) return NGHTTP3_ERR_CALLBACK_FAILURE;  // the exchange ended mid-body
  deferred_ = true;
  return NGHTTP3_ERR_WOULDBLOCK;
}

void H3Stream::acked(uint64_t n) {
  if (local_) return;
  BufferPool& pool = conn_.worker().buffers();
  n = std::min(n, given_);
  given_ -= n;
  out_bytes_ -= n;
  while (n > 0 && !out_.empty()) {
    Buffer& b = out_.front();
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, b.size()));
    b.consume(k);
    n -= k;
    // A block is done once read to its end and full (its tail will take no more bytes).
    if (b.empty() && (b.tail_room() == 0 || out_.size() > 1)) {
      b.clear();
      pool.release(b);
      out_.pop_front();
    }
  }
  if (deferred_ && !closed_) {
    deferred_ = false;
    nghttp3_conn_resume_stream(conn_.h3(), id_);
    conn_.schedule_turn();
  }
}

bool H3Stream::finish_body(std::string_view trailers) {
  resp_trailers_.assign(trailers);
  return true;
}

bool H3Stream::submit_trailers() {
  std::string& names = conn_.names_scratch();
  std::vector<nghttp3_nv>& nva = conn_.nv_scratch();
  names.resize(resp_trailers_.size());
  nva.clear();
  size_t at = 0;
  http::for_each_field_line(resp_trailers_, [&](std::string_view name, std::string_view value) {
    if (!http::trailer_field_allowed(name)) return;
    char* lower = names.data() + at;
    for (size_t i = 0; i < name.size(); ++i)
      lower[i] = http::chars::lower(name[i]);
    at += name.size();
    nva.push_back(nv(lower, name.size(), value.data(), value.size()));
  });
  int rv = nva.empty() ? -1 : nghttp3_conn_submit_trailers(conn_.h3(), id_, nva.data(), nva.size());
  std::string().swap(resp_trailers_);
  return rv == 0;
}

void H3Stream::body_available() {
  if (!deferred_ || answer_ != Answer::Streaming) return;
  deferred_ = false;
  nghttp3_conn_resume_stream(conn_.h3(), id_);
  conn_.schedule_turn();
}

void H3Stream::wake() {
  wants_run_ = true;
  conn_.schedule_turn();
}

void H3Stream::exchange_done(bool response_complete, bool) {
  // Called from inside pull_body when the body ends: fill() records the eof once it returns.
  conn_.worker().exchanges().give_back_later(ex_);
  ex_ = nullptr;
  if (unconsumed_ > 0 && !closed_) conn_.consumed(id_, unconsumed_);
  unconsumed_ = 0;
  body_.clear();
  if (!response_complete && !local_ && !eof_) reset(NGHTTP3_H3_INTERNAL_ERROR);
  if (!req_ended_ && !closed_) stop_reading();
  conn_.schedule_turn();
}

void H3Stream::stop_reading() {
  if (reading_stopped_) return;
  reading_stopped_ = true;
  // The rest of the request body is not wanted (the answer is complete without it).
  ngtcp2_conn_shutdown_stream_read(conn_.conn(), id_, NGHTTP3_H3_NO_ERROR);
}

void H3Stream::reset(uint64_t code) {
  if (answer_ == Answer::Reset || closed_) return;
  answer_ = Answer::Reset;
  ngtcp2_conn_shutdown_stream(conn_.conn(), id_, code);
  conn_.schedule_turn();
}

void H3Stream::abandon() {
  if (!ex_) return;
  proxy::Exchange* ex = ex_;
  ex_ = nullptr;
  ex->cancel();
  conn_.worker().exchanges().give_back_later(ex);
}

}  // namespace weir::quic
