// HTTP/2 server session: nghttp2 glue, stream lifecycle and the budgets against hostile
// clients. The translation of a stream to and from HTTP/1.1 bytes is in h2_stream.cpp.
#include "proxy/h2_session.hpp"

#include <algorithm>
#include <cstring>

#include "config/config.hpp"
#include "core/log.hpp"
#include "proxy/client_conn.hpp"
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
  static H2Session& S(void* p) { return *static_cast<H2Session*>(p); }

  static ssize_t send(nghttp2_session*, const uint8_t* data, size_t len, int, void* user) {
    Buffer& out = S(user).io_.out;
    size_t room = out.free_space();
    if (room == 0) return NGHTTP2_ERR_WOULDBLOCK;
    size_t n = std::min(room, len);
    out.append(std::string_view(reinterpret_cast<const char*>(data), n));
    return static_cast<ssize_t>(n);
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* f, void* user) {
    H2Session& s = S(user);
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    auto st = std::make_unique<H2Stream>();
    st->id = f->hd.stream_id;
    st->session = &s;
    s.streams_[st->id] = std::move(st);
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    H2Session& s = S(user);
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    H2Stream* st = s.find(f->hd.stream_id);
    if (!st || st->started || st->head_done) return 0;  // trailers are not forwarded
    st->header_bytes += namelen + valuelen + 32;
    if (++st->header_count > s.max_headers_ || st->header_bytes > s.max_header_bytes_) {
      st->too_large = true;  // answered 431 once the block ends; the rest is only counted
      return 0;
    }
    if (st->too_large) return 0;
    add_request_field(*st, std::string_view(reinterpret_cast<const char*>(name), namelen),
                      std::string_view(reinterpret_cast<const char*>(value), valuelen));
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* user) {
    H2Session& s = S(user);
    const bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (f->hd.type) {
      case NGHTTP2_HEADERS:
        if (H2Stream* st = s.find(f->hd.stream_id)) {
          if (!st->head_done) {
            s.finish_request_head(*st, end);
          } else if (end) {
            end_request(*st);  // trailers end the body; their fields are dropped
          }
        }
        break;
      case NGHTTP2_DATA:
        if (f->hd.length == 0 && !end) s.glitch("empty DATA frames");
        if (end) {
          if (H2Stream* st = s.find(f->hd.stream_id)) end_request(*st);
        }
        break;
      case NGHTTP2_RST_STREAM:
        if (H2Stream* st = s.find(f->hd.stream_id); st && !st->response_done) {
          if (!s.spend(s.reset_tokens_, s.reset_last_, kResetRate, kResetBurst))
            s.calm_down("streams reset faster than they finish (rapid reset)");
        }
        break;
      case NGHTTP2_PING:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) s.glitch("PING frames");
        break;
      case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) s.glitch("SETTINGS frames");
        break;
      case NGHTTP2_PRIORITY:
        s.glitch("PRIORITY frames");
        break;
      case NGHTTP2_WINDOW_UPDATE:
        // A client opens windows as our DATA arrives: updates beyond that do no work.
        if (s.window_credit_ > 0)
          --s.window_credit_;
        else
          s.glitch("WINDOW_UPDATE frames");
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* ses, uint8_t, int32_t id, const uint8_t* data,
                           size_t len, void* user) {
    H2Session& s = S(user);
    H2Stream* st = s.find(id);
    if (!st || !st->head_done || st->exchange_closed || st->too_large) {
      // Nobody reads it: give the window back at once.
      if (st && !st->closed)
        nghttp2_session_consume(ses, id, len);
      else
        nghttp2_session_consume_connection(ses, len);
      return 0;
    }
    append_request_data(*st, std::string_view(reinterpret_cast<const char*>(data), len));
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* f, void* user) {
    H2Session& s = S(user);
    if (f->hd.type == NGHTTP2_DATA) {
      // Each DATA frame may earn a stream and a connection WINDOW_UPDATE.
      s.window_credit_ = std::min<uint64_t>(s.window_credit_ + 2, 100000);
    }
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      if (H2Stream* st = s.find(f->hd.stream_id)) st->response_done = true;
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t, void* user) {
    if (H2Stream* st = S(user).find(id)) st->closed = true;  // removed after this turn
    return 0;
  }
};

H2Session::H2Session(Worker& w, ClientConn& conn, net::Stream& io) : w_(w), conn_(conn), io_(io) {}

H2Session::~H2Session() {
  abort_all();
  if (session_) nghttp2_session_del(session_);
}

bool H2Session::start(const config::GlobalLimits& limits) {
  max_header_bytes_ = limits.max_header_bytes;
  max_headers_ = limits.max_headers;
  double now = now_seconds();
  reset_tokens_ = kResetBurst;
  glitch_tokens_ = kGlitchBurst;
  reset_last_ = glitch_last_ = now;

  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return false;
  nghttp2_session_callbacks_set_send_callback(cb, H2Callbacks::send);
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
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0) return false;
  if (limits.h2_connection_window > 65535) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(limits.h2_connection_window));
  }
  return true;
}

double H2Session::now_seconds() const {
  return std::chrono::duration<double>(w_.reactor().now().time_since_epoch()).count();
}

H2Stream* H2Session::find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

bool H2Session::spend(double& tokens, double& last, double rate, double cap) {
  double now = now_seconds();
  tokens = std::min(cap, tokens + (now - last) * rate);
  last = now;
  if (tokens < 1) return false;
  tokens -= 1;
  return true;
}

void H2Session::glitch(const char* what) {
  if (!spend(glitch_tokens_, glitch_last_, kGlitchRate, kGlitchBurst)) calm_down(what);
}

void H2Session::calm_down(const char* why) {
  if (failed_) return;
  log::warn("client {}: HTTP/2: {}; sending GOAWAY and closing", conn_.peer_ip(), why);
  ++w_.stats().h2_abuse;
  nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
  failed_ = true;
}

bool H2Session::pump() {
  bool progress = false;
  if (!io_.in.empty()) {
    if (!failed_) {
      auto data = io_.in.readable();
      ssize_t n = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data.data()),
                                           data.size());
      if (n < 0) {
        log::debug("client {}: HTTP/2 connection error: {}", conn_.peer_ip(),
                   nghttp2_strerror(static_cast<int>(n)));
        failed_ = true;
      }
    }
    io_.in.clear();  // mem_recv takes everything it is given (or the connection failed)
    progress = true;
  }
  for (int round = 0; round < 8; ++round) {
    bool moved = run_exchanges();
    size_t before = io_.out.size();
    int rv = nghttp2_session_send(session_);
    if (rv != 0) {
      log::debug("client {}: HTTP/2 send: {}", conn_.peer_ip(), nghttp2_strerror(rv));
      failed_ = true;
    }
    moved |= io_.out.size() != before;
    collect_closed();
    if (!moved) break;
    progress = true;
    if (io_.out.full()) break;  // the socket takes it first
  }
  return progress;
}

bool H2Session::finished() const {
  if (failed_) return !nghttp2_session_want_write(session_) || io_.write_failed;
  return !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
}

void H2Session::goaway() {
  if (goaway_sent_ || !session_) return;
  goaway_sent_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

void H2Session::abort_all() {
  for (auto& [id, st] : streams_) {
    if (st->exchange) {
      ClientConn* c = st->exchange;
      detach_exchange(*st);
      c->close();
    }
  }
  streams_.clear();
}

void H2Session::detach_exchange(H2Stream& s) {
  if (s.exchange) s.exchange->detach_stream();
  if (s.pipe) s.pipe->detach();
  s.pipe = nullptr;
  s.exchange = nullptr;
}

void H2Session::stream_changed(H2Stream&) {
  conn_.schedule_turn();
}

void H2Session::stream_exchange_closed(H2Stream& s) {
  if (s.exchange) s.exchange->detach_stream();
  s.pipe = nullptr;  // the pipe is going away with the exchange
  s.exchange = nullptr;
  s.exchange_closed = true;
  // What the exchange left unread will not be read: its window goes back.
  if (s.unconsumed > 0 && session_ && !s.closed)
    nghttp2_session_consume(session_, s.id, s.unconsumed);
  s.unconsumed = 0;
  s.data_marks.clear();
  s.req.clear();
  s.req_read = 0;
  conn_.schedule_turn();
}

void H2Session::consume_request(H2Stream& s, uint64_t taken) {
  size_t bytes = 0;
  while (!s.data_marks.empty() && s.data_marks.begin()->first <= taken) {
    bytes += s.data_marks.begin()->second;
    s.data_marks.erase(s.data_marks.begin());
  }
  if (bytes == 0) return;
  s.unconsumed -= bytes;
  if (!s.closed) nghttp2_session_consume(session_, s.id, bytes);
  conn_.schedule_turn();  // a WINDOW_UPDATE to send
}

void H2Session::reset(H2Stream& s, uint32_t code) {
  if (s.reset_sent || s.closed) return;
  s.reset_sent = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, code);
  if (s.exchange) {
    ClientConn* c = s.exchange;
    detach_exchange(s);
    s.exchange_closed = true;
    c->close();
  }
}

bool H2Session::run_exchanges() {
  bool moved = false;
  for (auto& [id, sp] : streams_) {
    H2Stream& s = *sp;
    if (s.closed || s.reset_sent) continue;
    if (s.wants_start) {
      s.wants_start = false;
      start_exchange(s);
      moved = true;
    } else if (s.wants_run && s.exchange) {
      s.wants_run = false;
      s.exchange->on_pipe_ready();
      moved = true;
    }
    moved |= emit_response(s);
  }
  return moved;
}

void H2Session::start_exchange(H2Stream& s) {
  s.started = true;
  if (s.too_large) {
    // Answered here: the head never reaches the proxy logic.
    local_response(s, 431, "Request Header Fields Too Large\n");
    return;
  }
  auto pipe = std::make_unique<H2Pipe>(&s);
  s.pipe = pipe.get();
  auto* c = new ClientConn(w_, conn_, std::move(pipe), &s);
  s.exchange = c;
  c->start_stream();
}

void H2Session::collect_closed() {
  for (auto it = streams_.begin(); it != streams_.end();) {
    H2Stream& s = *it->second;
    if (!s.closed && s.response_done && !s.req_ended && !s.reset_sent) {
      // The answer is complete but the client is still sending a body nobody will read.
      s.reset_sent = true;
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_NO_ERROR);
    }
    if (!s.closed) {
      ++it;
      continue;
    }
    if (s.exchange) {
      ClientConn* c = s.exchange;  // the client reset the stream mid-exchange
      detach_exchange(s);
      c->close();
    }
    if (s.unconsumed > 0) nghttp2_session_consume_connection(session_, s.unconsumed);
    it = streams_.erase(it);
  }
}

}  // namespace weir::proxy
