#include "server/http_server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/log.hpp"
#include "http/body_decoder.hpp"
#include "http/status.hpp"
#include "net/address.hpp"
#include "net/connection.hpp"
#include "net/socket.hpp"

namespace weir::server {

std::string_view Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (http::iequals(k, name)) return v;
  return {};
}

std::string_view Request::query_param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view kv = q.substr(0, amp);
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) == name) return eq == std::string_view::npos ? "" : kv.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return {};
}

namespace {
constexpr size_t kBufferSize = 64 * 1024;  // a connection buffer; a head fits in one
constexpr size_t kMaxHeaders = 200;
constexpr int kMaxSteps = 16;  // phase steps per turn (e.g. pipelined requests) before a flush
}  // namespace

// One connection: Head (waiting for / parsing a request head) → Body (reading it, streamed) →
// Waiting (a delayed answer) → Sending (the answer, the filler generated as the socket takes it)
// → Head again, or the end (close_after_flush) when either side said close. Upgraded: a raw byte
// handler owns the connection after the head of its answer.
// One timer, its meaning kept in timeout_: Header (the head must be in by then), Idle (nothing
// between requests, or no byte moving in Body, Sending, Upgraded and while flushing the last
// answer), Delay (a delayed answer is due).
class HttpServer::Conn final : public net::Connection {
 public:
  Conn(HttpServer& srv, int fd, std::string peer, std::string local)
      : net::Connection(srv.reactor_, srv.buffers_, fd),
        srv_(srv),
        peer_(std::move(peer)),
        local_(std::move(local)) {}

  void start() {
    head_since_ = reactor().now();
    srv_.conns_.insert(this);
    reactor().add(io().fd, this);
    arm(Timeout::Header, srv_.options_.header_timeout);  // the first head, from accept
    run();
  }

 protected:
  bool turn() override {
    bool progress = false;
    for (int step = 0; step < kMaxSteps && !closing(); ++step) {
      bool moved = false;
      switch (phase_) {
        case Phase::Head:
          moved = on_head();
          break;
        case Phase::Body:
          moved = on_body();
          break;
        case Phase::Waiting:
          break;
        case Phase::Sending:
          moved = on_sending();
          break;
        case Phase::Upgraded:
          moved = on_upgraded();
          break;
      }
      if (!moved) break;
      progress = true;
    }
    if (progress && !closing() &&
        (phase_ == Phase::Body || phase_ == Phase::Sending || phase_ == Phase::Upgraded)) {
      note_activity();
    }
    return progress;
  }

  void on_timeout() override {
    Timeout t = timeout_;
    timeout_ = Timeout::None;
    if (closing()) {
      close();  // the last answer did not get out in time: the peer does not read
      return;
    }
    switch (t) {
      case Timeout::Header:
        if (phase_ == Phase::Head && !io().in.empty() && io().out.empty() && pending_.empty()) {
          send_error(408, "Request Timeout\n");  // the driver runs a turn after on_timeout
        } else {
          close();  // nothing came (or the previous answer is still not read)
        }
        return;
      case Timeout::Delay:
        if (phase_ == Phase::Waiting) {
          Response resp = std::move(delayed_);
          delayed_ = Response{};
          send(resp);
        }
        return;
      case Timeout::Idle:
      case Timeout::None:
        close();
        return;
    }
  }

  void on_close() override { srv_.connection_closed(this); }

  bool idle() const override { return phase_ == Phase::Head && pending_.empty(); }

 private:
  enum class Phase : uint8_t { Head, Body, Waiting, Sending, Upgraded };
  enum class Timeout : uint8_t { None, Header, Idle, Delay };

  void arm(Timeout t, Millis after) {
    timeout_ = t;
    deadline_ = reactor().now() + after;
    arm_timer(after);
  }

  // Bytes moved in Body, Sending or Upgraded: the idle timeout starts again (re-armed only when
  // it moved by a sixteenth of itself, so a busy connection does not touch the timer heap on
  // every turn).
  void note_activity() {
    Millis idle = srv_.options_.idle_timeout;
    TimePoint want = reactor().now() + idle;
    if (timeout_ == Timeout::Idle && want - deadline_ < idle / 16) return;
    arm(Timeout::Idle, idle);
  }

  bool on_head() {
    auto& in = io().in;
    if (in.empty()) {
      if (!io().eof) return false;
      close_after_flush(true);  // the client is done: nothing is left to answer
      return true;
    }
    // The first byte of the next head: from now on the header timeout runs.
    if (timeout_ != Timeout::Header) arm(Timeout::Header, srv_.options_.header_timeout);
    http::RequestHead h;
    http::Limits lim;
    lim.max_head_bytes = kBufferSize - 1;
    lim.max_headers = srv_.scratch_headers_.size();
    auto r = http::parse_request(in.readable(), h, srv_.scratch_headers_, lim);
    if (r.status == http::ParseStatus::NeedMore) {
      if (!io().eof) return false;
      close_after_flush(false);  // a partial head, then the end
      return true;
    }
    if (r.status == http::ParseStatus::Error) {
      send_error(r.error_status, std::string(http::reason_phrase(r.error_status)) + "\n");
      return true;
    }
    req_ = Request{};
    req_.method.assign(h.method_text);
    req_.target.assign(h.target);
    req_.path.assign(h.path);
    req_.query.assign(h.query);
    req_.version_minor = h.version_minor;
    for (const auto& f : h.headers)
      req_.headers.emplace_back(f.name, f.value);
    req_.peer = peer_;
    req_.local = local_;
    req_.upgrade = h.upgrade;
    req_.upgrade_protocol.assign(h.upgrade_protocol);
    keep_alive_ = h.keep_alive;
    body_.reset(h.body, h.content_length);
    in.consume(r.consumed);
    if (h.expect_continue && !body_.done()) pending_ += "HTTP/1.1 100 Continue\r\n\r\n";
    phase_ = Phase::Body;
    arm(Timeout::Idle, srv_.options_.idle_timeout);  // the body must keep coming
    return true;
  }

  bool on_body() {
    bool progress = move_pending();  // 100 Continue
    auto& in = io().in;
    while (!body_.done() && !in.empty()) {
      auto st = body_.decode(in.readable());
      if (st.status == http::BodyDecoder::Status::Error) {
        send_error(400, "Bad Request\n");
        return true;
      }
      req_.body_length += st.payload.size();
      if (req_.body.size() < Request::kBodyKeep) {
        req_.body.append(st.payload.substr(0, Request::kBodyKeep - req_.body.size()));
      }
      in.consume(st.consumed);
      progress |= st.consumed > 0;
      if (st.consumed == 0) break;
    }
    if (!body_.done()) {
      if (io().eof) {
        close();  // the request ended early: there is nothing to answer
        return true;
      }
      return progress;
    }
    clean_end_ = true;
    Response resp = srv_.handler_(req_);
    if (resp.delay.count() > 0) {
      delayed_ = std::move(resp);
      phase_ = Phase::Waiting;
      arm(Timeout::Delay, delayed_.delay);
      return true;
    }
    send(resp);
    return true;
  }

  // An answer of our own to a request we could not (or not in time) read: then close.
  void send_error(uint16_t status, std::string body) {
    req_ = Request{};
    keep_alive_ = false;
    clean_end_ = false;
    Response resp;
    resp.status = status;
    resp.body = std::move(body);
    resp.close = true;
    send(resp);
  }

  void send(const Response& resp) {
    std::string head = "HTTP/1.1 ";
    head += std::to_string(resp.status);
    head += ' ';
    head += http::reason_phrase(resp.status);
    head += "\r\n";
    bool has_type = false;
    for (const auto& [k, v] : resp.headers) {
      head += k + ": " + v + "\r\n";
      has_type |= http::iequals(k, "content-type");
    }
    close_after_ = resp.close || !keep_alive_;
    arm(Timeout::Idle, srv_.options_.idle_timeout);  // the peer must keep reading
    if (resp.upgrade_handler) {
      head += "\r\n";
      pending_ += head;
      upgrade_ = resp.upgrade_handler;
      phase_ = Phase::Upgraded;
      move_pending();
      return;
    }
    if (!has_type) head += "Content-Type: text/plain; charset=utf-8\r\n";
    bool bodiless = req_.method == "HEAD" || resp.status == 204 || resp.status == 304;
    head += "Content-Length: " + std::to_string(resp.body.size() + resp.filler_bytes) + "\r\n";
    if (close_after_) head += "Connection: close\r\n";
    head += "\r\n";
    pending_ += head;
    if (!bodiless) pending_ += resp.body;
    filler_left_ = bodiless ? 0 : resp.filler_bytes;
    phase_ = Phase::Sending;
    on_sending();
  }

  // Moves what fits of pending_ into the output buffer (which may be unallocated while idle:
  // then nothing moves until the next turn, which has the buffers).
  bool move_pending() {
    if (pending_.empty()) return false;
    size_t n = io().out.append(pending_);
    pending_.erase(0, n);
    return n > 0;
  }

  bool on_sending() {
    bool progress = move_pending();
    auto& out = io().out;
    while (pending_.empty() && filler_left_ > 0 && out.free_space() > 0) {
      auto w = out.writable();
      size_t n = std::min<uint64_t>(w.size(), filler_left_);
      if (n == 0) break;
      std::memset(w.data(), 'x', n);
      out.commit(n);
      filler_left_ -= n;
      progress = true;
    }
    if (pending_.empty() && filler_left_ == 0) {
      response_done();
      return true;
    }
    return progress;
  }

  // The whole answer is in the output buffer: the next request, or the end once it is out.
  void response_done() {
    req_ = Request{};
    if (close_after_) {
      arm(Timeout::Idle, srv_.options_.idle_timeout);  // how long the flush may stall
      close_after_flush(clean_end_);
      return;
    }
    phase_ = Phase::Head;
    head_since_ = reactor().now();
    if (io().in.empty())
      arm(Timeout::Idle, srv_.options_.idle_timeout);
    else
      arm(Timeout::Header, srv_.options_.header_timeout);  // pipelined: the next head is here
  }

  bool on_upgraded() {
    bool progress = move_pending();
    auto& in = io().in;
    if (!in.empty() && pending_.size() < kBufferSize) {  // backpressure: the peer must read
      std::string out;
      upgrade_(in.readable(), out);
      in.clear();
      pending_ += out;
      move_pending();
      progress = true;
    }
    if (io().eof && in.empty() && pending_.empty()) {
      close_after_flush(true);
      return true;
    }
    return progress;
  }

  HttpServer& srv_;
  std::string peer_, local_;
  Phase phase_ = Phase::Head;
  TimePoint head_since_{};  // when it began waiting for its current head

 public:
  // Waiting for a request head (nothing of a request in hand): what the cap may take back.
  bool waiting_for_head() const { return phase_ == Phase::Head && !closing(); }
  TimePoint head_since() const { return head_since_; }
  using net::Connection::close;

 private:
  Timeout timeout_ = Timeout::None;
  TimePoint deadline_{};
  Request req_;
  http::BodyDecoder body_;
  bool keep_alive_ = true;
  bool close_after_ = false;
  bool clean_end_ = false;  // the last request was read whole
  Response delayed_;
  std::string pending_;  // output not yet in the buffer: head, body, 100 Continue, upgrade bytes
  uint64_t filler_left_ = 0;
  std::function<void(std::string_view, std::string&)> upgrade_;
};

// Edge-triggered: accepts until EAGAIN, or until the server's max_connections is reached, in
// which case it pauses (new connections wait in the kernel's backlog) and resumes when a
// connection closes.
class HttpServer::Acceptor final : public EventHandler {
 public:
  Acceptor(HttpServer& srv, int fd) : srv_(srv), fd_(fd) {}
  ~Acceptor() override { close(); }

  void on_event(uint32_t) override { accept_all(); }

  void accept_all() {
    if (fd_ < 0) return;
    paused_ = false;
    for (int i = 0; i < 1024; ++i) {
      if (srv_.at_cap() && !srv_.evict_one()) {
        paused_ = true;
        return;
      }
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      int fd =
          ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) log::warn("accept: {}", strerror(errno));
        return;
      }
      net::set_nodelay(fd);
      net::SocketAddress p, l;
      p.storage = peer;
      p.len = len;
      l.len = sizeof l.storage;
      getsockname(fd, reinterpret_cast<sockaddr*>(&l.storage), &l.len);
      (new Conn(srv_, fd, p.to_string(), l.to_string()))->start();
    }
    // Still more to accept: come back after this batch instead of starving the connections.
    srv_.reactor_.defer([this] { accept_all(); });
  }

  // A connection closed: if paused at the cap, accept again after the current batch.
  void resume() {
    if (!paused_ || fd_ < 0) return;
    paused_ = false;
    srv_.reactor_.defer([this] { accept_all(); });
  }

  void close() {
    if (fd_ >= 0) {
      srv_.reactor_.remove(fd_);
      net::close_fd(fd_);
      fd_ = -1;
    }
  }

 private:
  HttpServer& srv_;
  int fd_;
  bool paused_ = false;
};

HttpServer::HttpServer(Reactor& reactor, int listen_fd, Handler handler, ServerOptions options)
    : reactor_(reactor),
      handler_(std::move(handler)),
      options_(options),
      buffers_(kBufferSize),
      scratch_headers_(kMaxHeaders) {
  acceptor_ = std::make_unique<Acceptor>(*this, listen_fd);
  // Connections already waiting are reported too: epoll checks readiness when an fd is added.
  reactor_.add(listen_fd, acceptor_.get(), EPOLLIN | EPOLLET);
}

HttpServer::~HttpServer() {
  acceptor_->close();
  std::vector<Conn*> conns(conns_.begin(), conns_.end());
  for (Conn* c : conns)
    c->close();
  // Frees what close() retired (and runs the turns still queued for it, which only free).
  reactor_.run_pending();
}

bool HttpServer::at_cap() const {
  return options_.max_connections != 0 && conns_.size() >= options_.max_connections;
}

bool HttpServer::evict_one() {
  if (!options_.evict_waiting_at_cap) return false;
  Conn* oldest = nullptr;
  for (Conn* c : conns_)
    if (c->waiting_for_head() && (!oldest || c->head_since() < oldest->head_since())) oldest = c;
  if (!oldest) return false;
  oldest->close();  // connection_closed() takes it out of conns_ now
  return !at_cap();
}

void HttpServer::connection_closed(Conn* c) {
  conns_.erase(c);
  acceptor_->resume();
}

void HttpServer::close_listener() {
  acceptor_->close();
}

}  // namespace weir::server
