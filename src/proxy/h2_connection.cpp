// HTTP/2 connection: nghttp2 glue, stream lifecycle and the budgets against hostile clients.
// What a stream does with its request and answer is in h2_stream.cpp.
#include "proxy/h2_connection.hpp"

#include <algorithm>

#include "config/config.hpp"
#include "core/log.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

// Client resets of streams whose response was not finished: a burst, then so many per second.
constexpr double kResetBurst = 200;
constexpr double kResetRate = 100;
// Frames that cost us work and do none: PING, SETTINGS, PRIORITY, empty DATA.
constexpr double kGlitchBurst = 1000;
constexpr double kGlitchRate = 200;

}  // namespace

struct H2Callbacks {
  static H2Connection& C(void* p) { return *static_cast<H2Connection*>(p); }

  static ssize_t send(nghttp2_session*, const uint8_t* data, size_t len, int, void* user) {
    Buffer& out = C(user).io_.out;
    size_t room = out.free_space();
    if (room == 0) return NGHTTP2_ERR_WOULDBLOCK;
    size_t n = std::min(room, len);
    out.append(std::string_view(reinterpret_cast<const char*>(data), n));
    return static_cast<ssize_t>(n);
  }

  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
    if (hd->type == NGHTTP2_HEADERS) C(user).check_headers_stream(hd->stream_id);
    return 0;
  }

  // nghttp2 found a frame invalid: for a stream, it has queued RST_STREAM (a connection error
  // ends everything anyway), also for a stream it never opened (REFUSED_STREAM).
  static int on_invalid_frame(nghttp2_session*, const nghttp2_frame* f, int, void* user) {
    if (f->hd.stream_id != 0) C(user).note_reset(f->hd.stream_id);
    return 0;
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* f, void* user) {
    H2Connection& c = C(user);
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    c.streams_[f->hd.stream_id] = std::make_unique<H2Stream>(c, f->hd.stream_id);
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    H2Stream* st = C(user).find(f->hd.stream_id);
    if (!st) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (!st->head_done()) {
      st->add_field(n, v);
    } else if (f->headers.cat == NGHTTP2_HCAT_HEADERS) {
      st->add_trailer(n, v);  // trailers (nghttp2 rejects the block without END_STREAM)
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* user) {
    H2Connection& c = C(user);
    const bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (f->hd.type) {
      case NGHTTP2_HEADERS:
        if (H2Stream* st = c.find(f->hd.stream_id)) {
          if (!st->head_done()) {
            st->end_head(end);
            // Started at once: its fields become the forwarded head now, instead of a whole
            // burst of streams each holding its decoded fields until the end of the read.
            st->run_exchange();
          } else if (end) {
            st->end_request();  // trailers end the body; their fields are the stream's
          }
        }
        break;
      case NGHTTP2_DATA:
        if (f->hd.length == 0 && !end) c.glitch("empty DATA frames");
        if (end) {
          if (H2Stream* st = c.find(f->hd.stream_id)) st->end_request();
        }
        break;
      case NGHTTP2_RST_STREAM:
        if (H2Stream* st = c.find(f->hd.stream_id); st && !st->response_sent()) {
          if (!c.spend(c.reset_tokens_, c.reset_last_, kResetRate, kResetBurst))
            c.calm_down("streams reset faster than they finish (rapid reset)");
        }
        break;
      case NGHTTP2_PING:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) c.glitch("PING frames");
        break;
      case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) c.glitch("SETTINGS frames");
        break;
      case NGHTTP2_PRIORITY:
        c.glitch("PRIORITY frames");
        break;
      case NGHTTP2_WINDOW_UPDATE:
        // A client opens windows as our DATA arrives: updates beyond that do no work.
        if (c.window_credit_ > 0)
          --c.window_credit_;
        else
          c.glitch("WINDOW_UPDATE frames");
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* ses, uint8_t, int32_t id, const uint8_t* data,
                           size_t len, void* user) {
    H2Stream* st = C(user).find(id);
    if (!st || !st->head_done() || st->closed()) {
      // Nobody reads it: give the window back at once.
      if (st && !st->closed())
        nghttp2_session_consume(ses, id, len);
      else
        nghttp2_session_consume_connection(ses, len);
      return 0;
    }
    st->append_data(std::string_view(reinterpret_cast<const char*>(data), len));
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* f, void* user) {
    H2Connection& c = C(user);
    if (f->hd.type == NGHTTP2_DATA) {
      // Each DATA frame may earn a stream and a connection WINDOW_UPDATE.
      c.window_credit_ = std::min<uint64_t>(c.window_credit_ + 2, 100000);
    }
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      if (H2Stream* st = c.find(f->hd.stream_id)) st->mark_response_sent();
    }
    if (f->hd.type == NGHTTP2_RST_STREAM) c.note_reset(f->hd.stream_id);
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t, void* user) {
    if (H2Stream* st = C(user).find(id)) st->on_closed();  // removed after this turn
    return 0;
  }
};

H2Connection::H2Connection(Worker& w, ClientOrigin origin, bool tls)
    : ClientConn(w, -1, std::move(origin), tls) {
  client_.proto = ClientProto::Http2;
}

H2Connection::~H2Connection() {
  if (session_) nghttp2_session_del(session_);
}

void H2Connection::start() {
  if (!setup()) {
    log::error("client {}: cannot start an HTTP/2 session", client_.ip);
    close();
    return;
  }
  ++w_.stats().h2_connections;
  arm_timer(listener().timeouts.idle);
  run();
}

bool H2Connection::setup() {
  const config::GlobalLimits& limits = w_.view()->snap->config->limits;
  max_header_bytes_ = limits.max_header_bytes;
  max_headers_ = limits.max_headers;
  reset_memory_ = std::clamp<size_t>(limits.h2_max_concurrent_streams, 16, 1024);
  double now = now_seconds();
  reset_tokens_ = kResetBurst;
  glitch_tokens_ = kGlitchBurst;
  reset_last_ = glitch_last_ = now;

  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return false;
  nghttp2_session_callbacks_set_send_callback(cb, H2Callbacks::send);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cb, H2Callbacks::on_begin_frame);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, H2Callbacks::on_invalid_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, H2Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, H2Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, H2Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, H2Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, H2Callbacks::on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, H2Callbacks::on_stream_close);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cb);
    return false;
  }
  nghttp2_option_set_no_auto_window_update(opt, 1);  // window opens as exchanges read
  nghttp2_option_set_max_outbound_ack(opt, 1000);    // PING/SETTINGS ACKs piling up: flood
  nghttp2_option_set_max_settings(opt, 32);          // entries per SETTINGS frame
  nghttp2_option_set_max_continuations(opt, 8);      // CVE-2024-27316
  nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 100);  // a backstop to our own budget
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  int rv = nghttp2_session_server_new2(&session_, cb, this, opt);
  nghttp2_session_callbacks_del(cb);
  nghttp2_option_del(opt);
  if (rv != 0) return false;

  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.h2_max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(limits.h2_stream_window)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(limits.max_header_bytes)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      // RFC 8441: WebSockets over HTTP/2 streams (extended CONNECT).
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0) return false;
  if (limits.h2_connection_window > 65535) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(limits.h2_connection_window));
  }
  return true;
}

double H2Connection::now_seconds() const {
  return std::chrono::duration<double>(w_.reactor().now().time_since_epoch()).count();
}

H2Stream* H2Connection::find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

bool H2Connection::spend(double& tokens, double& last, double rate, double cap) {
  double now = now_seconds();
  tokens = std::min(cap, tokens + (now - last) * rate);
  last = now;
  if (tokens < 1) return false;
  tokens -= 1;
  return true;
}

void H2Connection::glitch(const char* what) {
  if (!spend(glitch_tokens_, glitch_last_, kGlitchRate, kGlitchBurst)) calm_down(what);
}

void H2Connection::calm_down(const char* why) {
  if (failed_) return;
  log::warn("client {}: HTTP/2: {}; sending GOAWAY and closing", client_.ip, why);
  ++w_.stats().h2_abuse;
  nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
  failed_ = true;
}

void H2Connection::protocol_error(const char* why) {
  if (failed_) return;
  log::debug("client {}: HTTP/2: {}; sending GOAWAY(PROTOCOL_ERROR) and closing", client_.ip, why);
  nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
  failed_ = true;
}

// RFC 9113 §5.1.1: a stream id the client has passed cannot start a stream any more. nghttp2
// drops a HEADERS frame on such an id without telling us (on purpose: it does not remember which
// streams it reset), so the request would go unanswered with no error. Our rule, for a HEADERS
// frame on stream `id`, decided before nghttp2 acts on it ("highest": the highest id of a client
// HEADERS frame so far):
//   - id 0 or even: left to nghttp2 (its connection error PROTOCOL_ERROR);
//   - odd, above the highest: a new stream, left to nghttp2 (limits, refusals);
//   - odd, not above the highest:
//     - above the last stream of a GOAWAY we sent (reload, drain): ignored, as nghttp2 ignores
//       the streams the client opened after it (RFC 9113 §6.8), trailers included;
//     - a stream nghttp2 has open: trailers, left to nghttp2 (which answers STREAM_CLOSED if the
//       client had ended the stream);
//     - a stream our side reset lately (weir's RST_STREAM or nghttp2's own: malformed request,
//       REFUSED_STREAM, flow control): ignored, as RFC 9113 §5.1 ("closed") and §5.4.2 ask,
//       since the client may have sent it before the RST_STREAM reached it; "lately" is the
//       last reset_memory_ resets (at least as many as the streams that may be open at once);
//     - any other stream (never opened, so implicitly closed by a higher one; ended both ways;
//       reset by the client; reset by us longer ago): connection error PROTOCOL_ERROR. GOAWAY
//       carries the last stream processed, and the connection closes once it is out.
void H2Connection::check_headers_stream(int32_t id) {
  if (id <= 0 || id % 2 == 0) return;
  if (id > highest_client_stream_) {
    highest_client_stream_ = id;
    return;
  }
  if (goaway_sent_ && id > goaway_last_stream_) return;
  if (nghttp2_stream* st = nghttp2_session_find_stream(session_, id)) {
    // Closed streams may linger in nghttp2's priority tree: only an open one counts.
    auto state = nghttp2_stream_get_state(st);
    if (state != NGHTTP2_STREAM_STATE_IDLE && state != NGHTTP2_STREAM_STATE_CLOSED) return;
  }
  if (reset_lately(id)) return;
  protocol_error("HEADERS on a closed stream (its id is not above those already used)");
}

void H2Connection::note_reset(int32_t id) {
  if (reset_lately(id)) return;
  if (resets_.size() < reset_memory_) {
    resets_.push_back(id);
    return;
  }
  resets_[resets_next_] = id;  // forget the oldest
  resets_next_ = (resets_next_ + 1) % resets_.size();
}

bool H2Connection::reset_lately(int32_t id) const {
  return std::find(resets_.begin(), resets_.end(), id) != resets_.end();
}

bool H2Connection::turn() {
  bool progress = false;
  if (!io_.in.empty()) {
    if (!failed_) {
      auto data = io_.in.readable();
      ssize_t n = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data.data()),
                                           data.size());
      if (n == NGHTTP2_ERR_FLOODED || n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
        // nghttp2's own flood limits (ACKs the client does not read, CONTINUATION floods) stop
        // the session without a word: the client gets the GOAWAY(ENHANCE_YOUR_CALM) the other
        // floods get, and the connection is counted as abusive.
        calm_down(n == NGHTTP2_ERR_FLOODED ? "flood of frames that need an answer it does not read"
                                           : "CONTINUATION flood");
      } else if (n < 0) {
        log::debug("client {}: HTTP/2 connection error: {}", client_.ip,
                   nghttp2_strerror(static_cast<int>(n)));
        failed_ = true;
      }
    }
    io_.in.clear();  // mem_recv takes everything it is given (or the connection failed)
    progress = true;
  }
  for (int round = 0; round < 8; ++round) {
    bool moved = run_streams();
    size_t before = io_.out.size();
    int rv = nghttp2_session_send(session_);
    if (rv != 0) {
      log::debug("client {}: HTTP/2 send: {}", client_.ip, nghttp2_strerror(rv));
      failed_ = true;
    }
    moved |= io_.out.size() != before;
    collect_closed();
    if (!moved) break;
    progress = true;
    if (io_.out.full()) break;  // the socket takes it first
  }
  if (finished() || (io_.eof && io_.in.empty())) {
    close_when_flushed();  // GOAWAY said it all: no lingering
    return true;
  }
  // The idle timeout runs while no stream is open.
  if (streams_.empty()) {
    if (!timer_armed()) arm_timer(listener().timeouts.idle);
  } else if (timer_armed()) {
    cancel_timer();
  }
  return progress;
}

bool H2Connection::finished() const {
  if (failed_) return !nghttp2_session_want_write(session_) || io_.write_failed;
  return !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
}

bool H2Connection::holds_tunnel() const {
  for (const auto& [id, s] : streams_)
    if (s->carries_websocket()) return true;
  return false;
}

void H2Connection::goaway() {
  if (goaway_sent_ || !session_) return;
  goaway_sent_ = true;
  goaway_last_stream_ = nghttp2_session_get_last_proc_stream_id(session_);
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, goaway_last_stream_, NGHTTP2_NO_ERROR, nullptr,
                        0);
  schedule_turn();
}

void H2Connection::on_timeout() {
  // No stream for the idle timeout: say goodbye, then close.
  if (goaway_sent_) {
    close();
    return;
  }
  goaway();
  arm_timer(Millis(1000));
}

void H2Connection::on_close() {
  for (auto& [id, st] : streams_)
    st->abandon();  // every stream's exchange ends with its connection
  streams_.clear();
  ClientConn::on_close();
}

bool H2Connection::run_streams() {
  bool moved = false;
  for (auto& [id, st] : streams_)
    moved |= st->run_exchange();
  return moved;
}

void H2Connection::collect_closed() {
  for (auto it = streams_.begin(); it != streams_.end();) {
    H2Stream& s = *it->second;
    if (!s.closed() && s.response_sent() && !s.request_ended() && !s.reset_sent()) {
      // The answer is complete but the client is still sending a body nobody will read.
      s.reset(NGHTTP2_NO_ERROR);
    }
    if (!s.closed()) {
      ++it;
      continue;
    }
    s.abandon();  // the client reset the stream mid-exchange, or it ended
    if (s.unconsumed() > 0) nghttp2_session_consume_connection(session_, s.unconsumed());
    it = streams_.erase(it);
  }
}

}  // namespace weir::proxy
