// H2Session (one HTTP/2 connection to a server, nghttp2 client side) and H2Pool (a worker's
// connections per server): upstream_h2.hpp. The streams' side: upstream_h2_channel.cpp.
#include "proxy/upstream_h2.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/log.hpp"
#include "model/snapshot.hpp"
#include "net/tls/tls.hpp"
#include "proxy/upstream_conn.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

// Streams per connection whatever the server allows, and what is assumed before its SETTINGS.
constexpr uint32_t kMaxStreams = 1000;
constexpr uint32_t kAssumedStreams = 100;
// `auto`: how long a server's ALPN choice of http/1.1 is remembered.
constexpr Millis kHttp1Memory{60000};

}  // namespace

// ------------------------------------------------------------------------------------------
// H2Session

struct H2UpCallbacks {
  static H2Channel* channel(nghttp2_session* s, int32_t id) {
    return static_cast<H2Channel*>(nghttp2_session_get_stream_user_data(s, id));
  }
  static ssize_t send(nghttp2_session*, const uint8_t* data, size_t len, int, void* user) {
    auto* self = static_cast<H2Session*>(user);
    size_t n = self->io_.out.append({reinterpret_cast<const char*>(data), len});
    return n == 0 ? static_cast<ssize_t>(NGHTTP2_ERR_WOULDBLOCK) : static_cast<ssize_t>(n);
  }
  static int begin_headers(nghttp2_session* s, const nghttp2_frame* f, void*) {
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    if (H2Channel* ch = channel(s, f->hd.stream_id))
      ch->begin_fields(f->headers.cat == NGHTTP2_HCAT_HEADERS && ch->head_ready());
    return 0;
  }
  static int header(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name, size_t nlen,
                    const uint8_t* value, size_t vlen, uint8_t, void*) {
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    H2Channel* ch = channel(s, f->hd.stream_id);
    if (!ch) return 0;
    if (!ch->add_field({reinterpret_cast<const char*>(name), nlen},
                       {reinterpret_cast<const char*>(value), vlen}))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets this stream
    return 0;
  }
  static int frame_recv(nghttp2_session* s, const nghttp2_frame* f, void* user) {
    auto* self = static_cast<H2Session*>(user);
    switch (f->hd.type) {
      case NGHTTP2_HEADERS:
        if (H2Channel* ch = channel(s, f->hd.stream_id))
          ch->end_fields(f->hd.flags & NGHTTP2_FLAG_END_STREAM);
        break;
      case NGHTTP2_DATA:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          if (H2Channel* ch = channel(s, f->hd.stream_id)) ch->end_fields(true);
        }
        break;
      case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && !self->settings_received_) {
          self->settings_received_ = true;
          // The streams that waited for the server's limits may go now.
          for (H2Channel* ch : self->channels_)
            if (!ch->submitted()) ch->notify();
        }
        break;
      case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) self->ping_outstanding_ = false;
        break;
      case NGHTTP2_GOAWAY:
        // In-flight streams up to last_stream_id finish; nghttp2 closes the later ones with
        // REFUSED_STREAM; no new stream goes here.
        self->goaway_ = true;
        log::debug("HTTP/2 upstream {}: GOAWAY (last stream {}, error {})", self->name_,
                   f->goaway.last_stream_id, f->goaway.error_code);
        break;
      default:
        break;
    }
    return 0;
  }
  static int data_chunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len,
                        void*) {
    H2Channel* ch = channel(s, id);
    if (!ch) {
      // A stream weir let go: its bytes still count against the connection's window.
      nghttp2_session_consume_connection(s, len);
      return 0;
    }
    if (!ch->on_data({reinterpret_cast<const char*>(data), len}))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
  }
  static int stream_close(nghttp2_session* s, int32_t id, uint32_t error_code, void*) {
    if (H2Channel* ch = channel(s, id)) ch->on_closed(error_code);
    return 0;
  }
  static int not_sent(nghttp2_session* s, const nghttp2_frame* f, int lib_error, void*) {
    // A request HEADERS that could not go (GOAWAY came first): the stream was never seen.
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    if (H2Channel* ch = channel(s, f->hd.stream_id)) {
      log::debug("HTTP/2 upstream: request not sent: {}", nghttp2_strerror(lib_error));
      ch->on_closed(NGHTTP2_REFUSED_STREAM);
    }
    return 0;
  }
};

H2Session::H2Session(H2Pool& pool, Worker& w, const model::ServerRuntime& srv,
                     config::UpstreamProtocol proto)
    : pool_(pool),
      w_(w),
      uid_(srv.uid),
      name_(srv.address_text),
      addr_(srv.addr),
      tls_(srv.tls),
      proto_(proto) {
  idle_timer_.set_callback([this] { on_idle_timer(); });
}

H2Session::~H2Session() {
  if (session_) nghttp2_session_del(session_);
}

BufferPool& H2Session::buffers() {
  return w_.buffers();
}

bool H2Session::start() {
  int fd = net::connect_nonblocking(addr_);
  if (fd < 0) {
    log::debug("HTTP/2 upstream {}: connect failed: {}", name_, strerror(errno));
    return false;
  }
  io_.fd = fd;
  io_.writable = false;
  if (tls_) io_.transport = std::make_unique<net::tls::TlsTransport>(tls_->new_session());
  w_.reactor().add(fd, this);
  return true;
}

bool H2Session::accepting() const {
  if (state_ == State::Dead || goaway_) return false;
  // A reload changed the buffer block: this connection's stream window no longer matches it.
  if (window_ != 0 && window_ != w_.buffers().block_size()) return false;
  uint32_t limit = kAssumedStreams;
  if (session_ && settings_received_)
    limit = std::min(kMaxStreams, nghttp2_session_get_remote_settings(
                                      session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
  return channels_.size() < limit;
}

void H2Session::attach(H2Channel* ch) {
  channels_.push_back(ch);
  ch->attach(this);
  idle_since_ = {};
  idle_timer_.clear();
}

void H2Session::detach(H2Channel* ch) {
  auto it = std::find(channels_.begin(), channels_.end(), ch);
  if (it != channels_.end()) {
    *it = channels_.back();
    channels_.pop_back();
  }
  schedule();  // RST_STREAM / WINDOW_UPDATE to send, or the connection is idle now
}

void H2Session::schedule() {
  if (scheduled_ || state_ == State::Dead) return;
  scheduled_ = true;
  w_.reactor().defer([this] {
    scheduled_ = false;
    turn();
  });
}

void H2Session::on_event(uint32_t events) {
  if (state_ == State::Dead) return;
  io_.note_events(events);
  if (state_ == State::Connecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (int err = net::socket_error(io_.fd); err != 0) {
      log::debug("HTTP/2 upstream {}: connect failed: {}", name_, strerror(err));
      fail(false);
      return;
    }
    if (io_.transport) {
      state_ = State::Handshake;
      io_.readable = io_.writable = true;
    } else if (!setup_session()) {
      return;
    }
  }
  turn();
}

void H2Session::turn() {
  if (state_ == State::Handshake && !handshake()) return;
  if (state_ == State::Ready) io();
  if (state_ == State::Ready && channels_.empty()) check_idle();
}

// TLS: the handshake runs inside the reads; ALPN must have chosen h2.
bool H2Session::handshake() {
  w_.buffers().acquire(io_.in);
  io_.fill();
  auto* t = io_.transport.get();
  if (!t->handshake_done()) {
    if (io_.failed || io_.eof || io_.write_failed) {
      log::warn("HTTP/2 upstream {}: TLS handshake failed: {}", name_, t->last_error());
      fail(false);
    }
    return false;
  }
  if (t->alpn() != "h2") {
    if (proto_ == config::UpstreamProtocol::Auto) {
      // HTTP/1.1 it is: the requests waiting here go again, on HTTP/1.1 connections.
      pool_.note_http1(uid_);
      log::debug("HTTP/2 upstream {}: ALPN chose {}", name_,
                 t->alpn().empty() ? "nothing" : t->alpn());
      fail(true);
    } else {
      log::warn("HTTP/2 upstream {}: the server did not choose h2 in ALPN (got \"{}\")", name_,
                t->alpn());
      fail(false);
    }
    return false;
  }
  return setup_session();
}

bool H2Session::setup_session() {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_send_callback(cb, &H2UpCallbacks::send);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &H2UpCallbacks::begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, &H2UpCallbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &H2UpCallbacks::frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &H2UpCallbacks::data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &H2UpCallbacks::stream_close);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, &H2UpCallbacks::not_sent);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Windows open only as the exchanges take bytes (sync_consumed).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_peer_max_concurrent_streams(opt, kAssumedStreams);
  nghttp2_option_set_max_reserved_remote_streams(opt, 0);
  int rv = nghttp2_session_client_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) {
    log::error("HTTP/2 upstream {}: cannot create a session: {}", name_, nghttp2_strerror(rv));
    fail(false);
    return false;
  }
  // A stream's window is one buffer block: what a server may send ahead of the exchange
  // always fits in the stream's buffer. The connection's window is wide: the streams' windows
  // bound memory.
  window_ = w_.buffers().block_size();
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(window_)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2Channel::kMaxFieldBlock},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, (1 << 30));
  state_ = State::Ready;
  // Copy: a channel told may let go at once.
  std::vector<H2Channel*> waiting = channels_;
  for (H2Channel* ch : waiting)
    ch->on_ready();
  return true;
}

void H2Session::io() {
  for (int round = 0; round < 16; ++round) {
    bool moved = false;
    w_.buffers().acquire(io_.in);
    moved |= io_.fill();
    if (!io_.in.empty()) {
      std::string_view in = io_.in.readable();
      ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()),
                                            in.size());
      if (rv < 0) {
        log::warn("HTTP/2 upstream {}: {}", name_, nghttp2_strerror(static_cast<int>(rv)));
        fail(false);
        return;
      }
      io_.in.consume(static_cast<size_t>(rv));
      moved = true;
    }
    w_.buffers().acquire(io_.out);
    size_t before = io_.out.size();
    if (nghttp2_session_want_write(session_)) {
      int rv = nghttp2_session_send(session_);
      if (rv != 0) {
        log::warn("HTTP/2 upstream {}: {}", name_, nghttp2_strerror(rv));
        fail(false);
        return;
      }
    }
    moved |= io_.out.size() != before;
    moved |= io_.flush();
    if (io_.failed || io_.write_failed) {
      log::debug("HTTP/2 upstream {}: connection reset", name_);
      fail(false);
      return;
    }
    if (io_.eof && io_.in.empty()) {
      log::debug("HTTP/2 upstream {}: the server closed the connection", name_);
      fail(false);
      return;
    }
    if (!moved) break;
    if (round == 15) schedule();  // more to do: after the others had their turn
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_) &&
      io_.out.empty()) {
    close();  // both sides said GOAWAY and nothing is in flight
    return;
  }
  if (io_.in.empty()) w_.buffers().release(io_.in);
  if (io_.out.empty()) w_.buffers().release(io_.out);
}

// The connection is gone: streams the server never saw are refused (they go again elsewhere);
// the others failed. `refused`: every stream is (auto found HTTP/1.1).
void H2Session::fail(bool refused) {
  if (state_ == State::Dead) return;
  bool was_ready = state_ == State::Ready;
  std::vector<H2Channel*> chans;
  chans.swap(channels_);
  State before = state_;
  state_ = State::Dead;  // no turn from here on
  for (H2Channel* ch : chans) {
    if (!was_ready && !refused) {
      ch->on_connect_failed();
    } else {
      ch->on_session_gone(refused || !ch->submitted());
    }
  }
  (void)before;
  close();
}

void H2Session::close() {
  if (closed_) return;
  closed_ = true;
  if (state_ != State::Dead) {
    state_ = State::Dead;
    std::vector<H2Channel*> chans;
    chans.swap(channels_);
    for (H2Channel* ch : chans)
      ch->on_session_gone(!ch->submitted());
  }
  pool_.remove(this);
  idle_timer_.clear();
  if (io_.transport) io_.transport->shutdown(io_.fd);
  io_.in.clear();
  io_.out.clear();
  w_.buffers().release(io_.in);
  w_.buffers().release(io_.out);
  w_.reactor().remove(io_.fd);  // before close: see net::Connection::close
  net::close_fd(io_.fd);
  io_.fd = -1;
  w_.reactor().defer([this] { delete this; });
}

// No stream left: kept for the next requests (PING checks it stays alive) unless it is going
// away, the worker drains, or enough connections to this server are idle already.
void H2Session::check_idle() {
  if (goaway_ || w_.draining() || pool_.idle_beyond_limit(this)) {
    close();
    return;
  }
  if (idle_since_ != TimePoint{}) return;
  idle_since_ = w_.reactor().now();
  ping_outstanding_ = false;
  idle_timer_.set(w_.reactor().timers(), idle_since_ + ping_interval());
}

Millis H2Session::ping_interval() const {
  return std::max(Millis(1000), pool_.idle_timeout() / 3);
}

void H2Session::on_idle_timer() {
  if (state_ != State::Ready || !channels_.empty()) return;
  TimePoint now = w_.reactor().now();
  if (now - idle_since_ >= pool_.idle_timeout()) {
    close();
    return;
  }
  if (ping_outstanding_) {
    log::debug("HTTP/2 upstream {}: no PING answer: closing the idle connection", name_);
    close();
    return;
  }
  ping_outstanding_ = true;
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
  schedule();
  idle_timer_.set(w_.reactor().timers(), now + ping_interval());
}

// ------------------------------------------------------------------------------------------
// H2Pool

H2Pool::~H2Pool() {
  close_all();
}

UpstreamConn* H2Pool::open(const model::ServerRuntime& srv, config::UpstreamProtocol proto,
                           bool& fresh) {
  if (srv.uid >= lists_.size()) lists_.resize(srv.uid + 1);
  List& l = lists_[srv.uid];
  H2Session* s = nullptr;
  for (H2Session* c = l.head; c; c = c->pool_next) {
    if (c->accepting()) {
      s = c;
      break;
    }
  }
  fresh = s == nullptr;
  if (!s) {
    s = new H2Session(*this, w_, srv, proto);
    if (!s->start()) {
      delete s;
      return nullptr;
    }
    s->pool_next = l.head;
    if (l.head) l.head->pool_prev = s;
    l.head = s;
    ++l.size;
  }
  auto* up = new UpstreamConn(w_, -1, srv.uid);
  up->h2 = std::make_unique<H2Channel>(*up);
  up->reused = s->ready();
  up->connecting = !s->ready();
  up->stream.writable = true;
  s->attach(up->h2.get());
  return up;
}

bool H2Pool::speaks_http1(uint32_t uid) const {
  return uid < http1_until_.size() && http1_until_[uid] > w_.reactor().now();
}

void H2Pool::note_http1(uint32_t uid) {
  if (uid >= http1_until_.size()) http1_until_.resize(uid + 1);
  http1_until_[uid] = w_.reactor().now() + kHttp1Memory;
}

bool H2Pool::idle_beyond_limit(const H2Session* s) const {
  if (s->server_uid() >= lists_.size()) return false;
  uint32_t idle = 0;
  for (H2Session* c = lists_[s->server_uid()].head; c; c = c->pool_next) {
    if (c != s && c->streams() == 0) ++idle;
  }
  return idle >= max_idle_;
}

void H2Pool::remove(H2Session* s) {
  if (s->server_uid() >= lists_.size()) return;
  List& l = lists_[s->server_uid()];
  bool linked = s->pool_prev || l.head == s;
  if (!linked) return;
  if (s->pool_prev)
    s->pool_prev->pool_next = s->pool_next;
  else
    l.head = s->pool_next;
  if (s->pool_next) s->pool_next->pool_prev = s->pool_prev;
  s->pool_prev = s->pool_next = nullptr;
  --l.size;
}

void H2Pool::close_all() {
  for (auto& l : lists_) {
    while (l.head)
      l.head->close();  // unlinks itself
  }
}

void H2Pool::close_idle() {
  for (auto& l : lists_) {
    for (H2Session* c = l.head; c;) {
      H2Session* next = c->pool_next;
      if (c->streams() == 0) c->close();
      c = next;
    }
  }
}

size_t H2Pool::connections() const {
  size_t n = 0;
  for (const auto& l : lists_)
    n += l.size;
  return n;
}

}  // namespace weir::proxy
