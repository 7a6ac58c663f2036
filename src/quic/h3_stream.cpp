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

nghttp3_nv nv(const char* n, size_t nl, const char* v, size_t vl) {
  return nghttp3_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v)), nl, vl, NGHTTP3_NV_FLAG_NONE};
}

}  // namespace

H3Stream::H3Stream(H3Connection& conn, int64_t id) : MuxStream(conn.worker(), id), conn_(conn) {}

H3Stream::~H3Stream() {
  abandon();
  for (Buffer& b : out_) {
    b.clear();
    w_.buffers().release(b);
  }
}

const proxy::ClientInfo& H3Stream::client() const {
  return conn_.client();
}

uint64_t H3Stream::max_header_bytes() const {
  return conn_.max_header_bytes();
}

uint32_t H3Stream::max_headers() const {
  return conn_.max_headers();
}

void H3Stream::give_window(size_t n) {
  conn_.consumed(id_, n);
}

void H3Stream::schedule() {
  conn_.schedule_turn();
}

void H3Stream::head_too_large() {
  stop_reading(NGHTTP3_H3_EXCESSIVE_LOAD);
  wants_run_ = true;  // the exchange starts and answers 431 on the connection's turn
  conn_.schedule_turn();
}

// A HEADERS frame for a response head: :status, the fields that survive the edits (names
// lower-cased, connection-specific ones dropped), and for a body of known length its length.
int H3Stream::submit(const proxy::ResponseOut& head, bool final_head) {
  std::vector<nghttp3_nv>& nva = conn_.nv_scratch();
  nva.clear();
  char status[4];
  std::to_chars(status, status + 3, head.status);
  char length[24];
  nva.push_back(nv(":status", 7, status, 3));
  proxy::for_each_mux_field(
      head, conn_.names_scratch(), length, [&](std::string_view name, std::string_view value) {
        nva.push_back(nv(name.data(), name.size(), value.data(), value.size()));
      });
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
  std::vector<nghttp3_nv>& nva = conn_.nv_scratch();
  nva.clear();
  proxy::for_each_mux_trailer(
      resp_trailers_, conn_.names_scratch(), [&](std::string_view name, std::string_view value) {
        nva.push_back(nv(name.data(), name.size(), value.data(), value.size()));
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

void H3Stream::exchange_done(bool response_complete, bool) {
  // Called from inside pull_body when the body ends: fill() records the eof once it returns.
  w_.exchanges().give_back_later(ex_);
  ex_ = nullptr;
  drop_request_body();
  if (!response_complete && !local_ && !eof_) reset(NGHTTP3_H3_INTERNAL_ERROR);
  if (!req_ended_ && !closed_) stop_reading(NGHTTP3_H3_NO_ERROR);
  conn_.schedule_turn();
}

void H3Stream::stop_reading(uint64_t code) {
  if (reading_stopped_ || closed_) return;
  reading_stopped_ = true;
  // The rest of the request is not wanted (the answer is complete without it, or refused).
  ngtcp2_conn_shutdown_stream_read(conn_.conn(), id_, code);
}

void H3Stream::reset(uint64_t code) {
  if (answer_ == Answer::Reset || closed_) return;
  answer_ = Answer::Reset;
  reset_ = true;
  ngtcp2_conn_shutdown_stream(conn_.conn(), id_, code);
  conn_.schedule_turn();
}

}  // namespace weir::quic
