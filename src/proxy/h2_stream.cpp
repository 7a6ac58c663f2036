// Translation between one HTTP/2 stream and the HTTP/1.1 bytes its exchange reads and writes.
#include "proxy/h2_stream.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iterator>
#include <vector>

#include "core/log.hpp"
#include "http/status.hpp"
#include "proxy/client_conn.hpp"
#include "proxy/forward.hpp"
#include "proxy/h2_session.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

http::Method method_of(std::string_view m) {
  if (m == "GET") return http::Method::Get;
  if (m == "HEAD") return http::Method::Head;
  if (m == "POST") return http::Method::Post;
  if (m == "PUT") return http::Method::Put;
  if (m == "DELETE") return http::Method::Delete;
  if (m == "CONNECT") return http::Method::Connect;
  if (m == "OPTIONS") return http::Method::Options;
  return http::Method::Other;
}

// Response fields that mean something only to one HTTP/1.1 connection (RFC 9113 §8.2.2).
bool connection_specific(std::string_view lower) {
  return lower == "connection" || lower == "keep-alive" || lower == "proxy-connection" ||
         lower == "transfer-encoding" || lower == "upgrade";
}

constexpr size_t kMaxDataMarks = 64;

void append(H2Stream& s, std::string_view bytes) {
  s.req.append(bytes);
  s.req_total += bytes.size();
}

}  // namespace

void add_request_field(H2Stream& s, std::string_view name, std::string_view value) {
  // nghttp2 has already checked names (lower case, token characters), values, pseudo-header
  // order and presence, connection-specific fields and TE (RFC 9113 §8.2, §8.3).
  if (!name.empty() && name.front() == ':') {
    if (name == ":method") {
      s.method = value;
    } else if (name == ":path") {
      s.path = value;
    } else if (name == ":authority") {
      s.authority = value;
    }
    return;  // :scheme: the listener decides what X-Forwarded-Proto says
  }
  if (name == "cookie") {
    // Crumbs are joined into one field for HTTP/1.1 (RFC 9113 §8.2.3).
    if (!s.cookie.empty()) s.cookie += "; ";
    s.cookie.append(value);
    return;
  }
  if (name == "host") {
    if (s.authority.empty()) s.authority = value;  // :authority wins when both are present
    return;
  }
  if (name == "te") return;  // only "trailers" is allowed, and it is hop-by-hop
  if (name == "content-length") s.has_content_length = true;
  s.fields.append(name).append(": ").append(value).append("\r\n");
}

void append_request_data(H2Stream& s, std::string_view data) {
  if (data.empty()) return;
  if (s.chunked_body) {
    char hex[20];
    auto [p, ec] = std::to_chars(hex, hex + sizeof hex - 2, data.size(), 16);
    (void)ec;
    *p++ = '\r';
    *p++ = '\n';
    append(s, std::string_view(hex, static_cast<size_t>(p - hex)));
    append(s, data);
    append(s, "\r\n");
  } else {
    append(s, data);
  }
  // One mark per DATA frame, up to kMaxDataMarks: beyond that (a client sending tiny frames)
  // the newest mark absorbs the frame, so the table stays small whatever the frame sizes.
  if (s.data_marks.size() >= kMaxDataMarks) {
    auto last = std::prev(s.data_marks.end());
    size_t bytes = last->second;
    s.data_marks.erase(last);
    s.data_marks[s.req_total] = bytes + data.size();
  } else {
    s.data_marks[s.req_total] += data.size();
  }
  s.unconsumed += data.size();
  s.wants_run = true;
}

void end_request(H2Stream& s) {
  if (s.req_ended) return;
  s.req_ended = true;
  if (s.chunked_body && !s.exchange_closed) append(s, "0\r\n\r\n");
  s.wants_run = true;
}

ssize_t response_body(H2Stream& s, uint8_t* buf, size_t len, uint32_t* flags) {
  if (s.raw_body) {
    // Payload bytes only: the exchange says when they are all there.
    size_t n = std::min(len, s.resp_avail());
    if (n > 0) {
      std::memcpy(buf, s.resp.data() + s.resp_read, n);
      s.resp_read += n;
      if (s.resp_read == s.resp.size()) {
        s.resp.clear();
        s.resp_read = 0;
      }
      if (s.exchange) s.wants_run = true;  // room in the pipe again
    }
    if (s.resp_avail() == 0 && s.response_complete) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      s.body_done = true;
      return static_cast<ssize_t>(n);
    }
    if (n > 0) return static_cast<ssize_t>(n);
    if (s.exchange_closed) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // aborted mid-body
    s.deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  size_t n = 0;
  while (n < len && s.resp_avail() > 0 && !s.body.done()) {
    std::string_view avail(s.resp.data() + s.resp_read, s.resp_avail());
    auto step = s.body.decode(avail.substr(0, std::min(avail.size(), len - n)));
    if (step.status == http::BodyDecoder::Status::Error)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (!step.payload.empty()) {
      std::memcpy(buf + n, step.payload.data(), step.payload.size());
      n += step.payload.size();
    }
    s.resp_read += step.consumed;
    if (step.consumed == 0) break;
  }
  if (s.resp_read == s.resp.size()) {
    s.resp.clear();
    s.resp_read = 0;
  }
  if (!s.body.done() && s.resp_avail() == 0 && s.exchange_closed && s.body.finish_eof()) {
    // a close-delimited body ends with its exchange
  }
  if (s.body.done()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    s.body_done = true;
  } else if (n == 0) {
    // Truncated by the exchange (its server failed mid-body): the stream is reset.
    if (s.exchange_closed) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s.deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (n > 0 && s.exchange) s.wants_run = true;  // room in the pipe again
  return static_cast<ssize_t>(n);
}

ssize_t H2Pipe::read(int, char* buf, size_t len) {
  if (!s_) return 0;
  size_t avail = s_->req_avail();
  if (avail == 0) return s_->req_ended ? 0 : net::kWouldBlock;
  size_t n = std::min(avail, len);
  std::memcpy(buf, s_->req.data() + s_->req_read, n);
  s_->req_read += n;
  s_->req_taken += n;
  if (s_->req_read == s_->req.size()) {
    s_->req.clear();
    s_->req_read = 0;
  } else if (s_->req_read > 64 * 1024 && s_->req_read * 2 > s_->req.size()) {
    s_->req.erase(0, s_->req_read);
    s_->req_read = 0;
  }
  s_->session->consume_request(*s_, s_->req_taken);
  return static_cast<ssize_t>(n);
}

ssize_t H2Pipe::write(int, const char* buf, size_t len) {
  if (!s_ || s_->reset_sent || s_->closed) {
    errno = EPIPE;
    return net::kIoError;  // the client reset the stream: the exchange ends
  }
  size_t avail = s_->resp_avail();
  if (avail >= kH2ResponsePipe) return net::kWouldBlock;
  if (s_->resp_read > 0 && s_->resp_read * 2 > s_->resp.size()) {
    s_->resp.erase(0, s_->resp_read);
    s_->resp_read = 0;
  }
  size_t n = std::min(len, kH2ResponsePipe - avail);
  s_->resp.append(buf, n);
  s_->session->stream_changed(*s_);
  return static_cast<ssize_t>(n);
}

void H2Pipe::shutdown(int) {
  if (!s_) return;
  H2Stream* s = s_;
  s_ = nullptr;
  s->session->stream_exchange_closed(*s);
}

void H2Session::finish_request_head(H2Stream& s, bool end_stream) {
  s.head_done = true;
  s.wants_start = true;
  if (s.too_large) {
    s.req_ended = end_stream;
    return;
  }
  s.req_method = method_of(s.method);
  std::string& head = s.req;  // empty until now: the head is built in place
  head.reserve(s.method.size() + s.path.size() + s.authority.size() + s.fields.size() +
               s.cookie.size() + 64);
  head.append(s.method).append(" ").append(s.path).append(" HTTP/1.1\r\n");
  if (!s.authority.empty()) head.append("Host: ").append(s.authority).append("\r\n");
  head.append(s.fields);
  if (!s.cookie.empty()) head.append("Cookie: ").append(s.cookie).append("\r\n");
  if (!end_stream && !s.has_content_length) {
    head.append("Transfer-Encoding: chunked\r\n");
    s.chunked_body = true;
  }
  head.append("\r\n");
  s.req_total += head.size();
  s.fields.clear();
  s.fields.shrink_to_fit();
  s.cookie.clear();
  if (end_stream) end_request(s);
}

void H2Session::local_response(H2Stream& s, uint16_t status, std::string_view body) {
  std::string out;
  build_local_response(status, body, false, {}, out);
  s.resp.append(out);
  s.exchange_closed = true;
}

// Submits the response HEADERS once the exchange has written a whole head (1xx heads go as
// informational HEADERS). Returns true if something was submitted.
// Submits HEADERS for a response head: the server's fields (names lower-cased, fields that
// belong to one HTTP/1.1 connection dropped) plus `extra` lines ("Name: value\r\n"). A final
// head with a body gets the stream's data source. Returns nghttp2's result.
int H2Session::submit_fields(H2Stream& s, const http::ResponseHead& head, std::string_view extra,
                             bool final_head) {
  // Names lower-cased into one buffer sized up front, so the pointers stay valid.
  size_t total = extra.size();
  for (const auto& h : head.headers)
    total += h.name.size();
  std::string& names = names_scratch_;
  names.resize(total);
  std::vector<nghttp2_nv>& nva = nv_scratch_;
  nva.clear();
  nva.reserve(head.headers.size() + 4);
  char status[4];
  std::to_chars(status, status + 3, head.status);
  auto nv = [](const char* n, size_t nl, const char* v, size_t vl) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v)), nl, vl,
                      NGHTTP2_NV_FLAG_NONE};
  };
  nva.push_back(nv(":status", 7, status, 3));
  size_t at = 0;
  auto add = [&](std::string_view name, std::string_view value) {
    char* lower = names.data() + at;
    for (size_t i = 0; i < name.size(); ++i)
      lower[i] = name[i] >= 'A' && name[i] <= 'Z' ? static_cast<char>(name[i] | 0x20) : name[i];
    at += name.size();
    if (connection_specific(std::string_view(lower, name.size()))) return;
    nva.push_back(nv(lower, name.size(), value.data(), value.size()));
  };
  for (const auto& h : head.headers)
    add(h.name, h.value);
  while (!extra.empty()) {
    size_t eol = extra.find("\r\n");
    std::string_view line = extra.substr(0, eol);
    extra.remove_prefix(eol == std::string_view::npos ? extra.size() : eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ')
      value.remove_prefix(1);
    add(line.substr(0, colon), value);
  }
  if (!final_head)
    return nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, s.id, nullptr, nva.data(),
                                  nva.size(), nullptr);
  s.head_sent = true;
  if (head.body == http::BodyKind::None) {
    s.body_done = true;
    return nghttp2_submit_response(session_, s.id, nva.data(), nva.size(), nullptr);
  }
  nghttp2_data_provider prd;
  prd.source.ptr = &s;
  prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source* src, void*) -> ssize_t {
    return response_body(*static_cast<H2Stream*>(src->ptr), buf, len, flags);
  };
  return nghttp2_submit_response(session_, s.id, nva.data(), nva.size(), &prd);
}

bool H2Session::submit_parsed_head(H2Stream& s, const http::ResponseHead& head,
                                   std::string_view extra) {
  if (s.closed || s.reset_sent || s.head_sent) return false;
  s.raw_body = true;
  int rv = submit_fields(s, head, extra, true);
  if (rv != 0) {
    log::debug("HTTP/2 stream {}: cannot submit response: {}", s.id, nghttp2_strerror(rv));
    return false;
  }
  conn_.schedule_turn();
  return true;
}

void H2Session::submit_interim(H2Stream& s, const http::ResponseHead& head) {
  if (s.closed || s.reset_sent || s.head_sent) return;
  if (submit_fields(s, head, {}, false) == 0) conn_.schedule_turn();
}

// The exchange wrote an HTTP/1.1 head into the pipe (an answer of its own: an error, 404, 503):
// parse it and submit HEADERS; its body is decoded from the pipe. 1xx heads go as
// informational HEADERS. Returns true if something was submitted.
bool H2Session::submit_head(H2Stream& s) {
  bool submitted = false;
  while (!s.head_sent && s.resp_avail() > 0) {
    http::ResponseHead head;
    std::string_view avail(s.resp.data() + s.resp_read, s.resp_avail());
    auto r =
        http::parse_response(avail, head, w_.scratch_headers(), w_.view()->limits, s.req_method);
    if (r.status == http::ParseStatus::NeedMore) {
      if (s.exchange_closed || s.resp_avail() >= kH2ResponsePipe) reset(s, NGHTTP2_INTERNAL_ERROR);
      return submitted;
    }
    if (r.status == http::ParseStatus::Error) {
      log::debug("HTTP/2 stream {}: unusable response head: {}", s.id, r.error_reason);
      reset(s, NGHTTP2_INTERNAL_ERROR);
      return true;
    }
    bool final_head = head.status >= 200;
    if (final_head) s.body.reset(head.body, head.content_length);
    int rv = submit_fields(s, head, {}, final_head);
    s.resp_read += r.consumed;
    if (rv != 0) {
      log::debug("HTTP/2 stream {}: cannot submit response: {}", s.id, nghttp2_strerror(rv));
      reset(s, NGHTTP2_INTERNAL_ERROR);
      return true;
    }
    submitted = true;
    if (s.exchange) s.wants_run = true;  // room in the pipe again
  }
  return submitted;
}

bool H2Session::emit_response(H2Stream& s) {
  if (s.closed || s.reset_sent) return false;
  if (!s.head_sent) {
    if (submit_head(s)) return true;
    if (!s.head_sent && s.exchange_closed && s.resp_avail() == 0) {
      reset(s, NGHTTP2_INTERNAL_ERROR);  // the exchange ended without an answer
      return true;
    }
    return false;
  }
  if (s.deferred && (s.resp_avail() > 0 || s.exchange_closed)) {
    s.deferred = false;
    nghttp2_session_resume_data(session_, s.id);
    return true;
  }
  return false;
}

}  // namespace weir::proxy
