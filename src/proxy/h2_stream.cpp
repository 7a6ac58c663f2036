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

H2Stream::H2Stream(H2Connection& conn, int32_t id) : MuxStream(conn.worker(), id), conn_(conn) {}

H2Stream::~H2Stream() {
  abandon();
}

const ClientInfo& H2Stream::client() const {
  return conn_.client();
}

uint64_t H2Stream::max_header_bytes() const {
  return conn_.max_header_bytes();
}

uint32_t H2Stream::max_headers() const {
  return conn_.max_headers();
}

void H2Stream::give_window(size_t n) {
  nghttp2_session_consume(conn_.session(), id(), n);
  conn_.schedule_turn();  // a WINDOW_UPDATE to send
}

void H2Stream::schedule() {
  conn_.schedule_turn();
}

bool H2Stream::carries_websocket() const {
  return ex_ && ex_->websocket_over_h2();
}

// HEADERS for a response head: :status, the fields that survive the edits, and for weir's own
// answers the length. A final head with a body gets the stream's data source.
int H2Stream::submit(const ResponseOut& head, bool final_head) {
  std::vector<nghttp2_nv>& nva = conn_.nv_scratch();
  nva.clear();
  char status[4];
  std::to_chars(status, status + 3, head.status);
  char length[24];
  auto nv = [](std::string_view n, std::string_view v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                      NGHTTP2_NV_FLAG_NONE};
  };
  nva.push_back(nv(":status", std::string_view(status, 3)));
  for_each_mux_field(
      head, conn_.names_scratch(), length,
      [&](std::string_view name, std::string_view value) { nva.push_back(nv(name, value)); });
  nghttp2_session* ses = conn_.session();
  if (!final_head)
    return nghttp2_submit_headers(ses, NGHTTP2_FLAG_NONE, id(), nullptr, nva.data(), nva.size(),
                                  nullptr);
  answer_ = Answer::Streaming;
  if (head.body == http::BodyKind::None || (head.local && head.local_body.empty()))
    return nghttp2_submit_response(ses, id(), nva.data(), nva.size(), nullptr);
  nghttp2_data_provider prd;
  prd.source.ptr = this;
  prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source* src, void*) -> ssize_t {
    return static_cast<H2Stream*>(src->ptr)->read_response(buf, len, flags);
  };
  return nghttp2_submit_response(ses, id(), nva.data(), nva.size(), &prd);
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

// The response's trailer fields as a trailing HEADERS frame (nghttp2 copies them). False if
// none was submitted.
bool H2Stream::submit_trailers() {
  std::vector<nghttp2_nv>& nva = conn_.nv_scratch();
  nva.clear();
  for_each_mux_trailer(resp_trailers_, conn_.names_scratch(),
                       [&](std::string_view name, std::string_view value) {
                         nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                                        reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                                        name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
                       });
  int rv = nva.empty() ? -1 : nghttp2_submit_trailer(conn_.session(), id(), nva.data(), nva.size());
  if (rv < 0 && !nva.empty())
    log::debug("HTTP/2 stream {}: cannot submit trailers: {}", id_, nghttp2_strerror(rv));
  std::string().swap(resp_trailers_);  // copied by nghttp2
  return rv == 0;
}

void H2Stream::body_available() {
  if (!deferred_ || answer_ != Answer::Streaming) return;
  deferred_ = false;
  nghttp2_session_resume_data(conn_.session(), id());
  conn_.schedule_turn();
}

void H2Stream::exchange_done(bool response_complete, bool) {
  w_.exchanges().give_back_later(ex_);
  ex_ = nullptr;
  drop_request_body();  // what the exchange left unread will not be read: its window goes back
  if (!response_complete && !local_) reset(NGHTTP2_INTERNAL_ERROR);
  conn_.schedule_turn();
}

void H2Stream::reset(uint32_t code) {
  if (answer_ == Answer::Reset || closed_) return;
  answer_ = Answer::Reset;
  reset_ = true;
  nghttp2_submit_rst_stream(conn_.session(), NGHTTP2_FLAG_NONE, id(), code);
  conn_.schedule_turn();
}

}  // namespace weir::proxy
