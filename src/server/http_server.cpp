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
#include "net/stream.hpp"

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
constexpr size_t kBufferSize = 64 * 1024;
}

class HttpServer::Conn final : public EventHandler {
 public:
  Conn(HttpServer& srv, int fd, std::string peer, std::string local)
      : srv_(srv), peer_(std::move(peer)), local_(std::move(local)) {
    s_.fd = fd;
    s_.readable = true;
    s_.in.ensure_allocated(kBufferSize);
    s_.out.ensure_allocated(kBufferSize);
    headers_.resize(200);
    timer_.set_callback([this] { on_timer(); });
  }

  void start() {
    srv_.reactor_.add(s_.fd, this);
    srv_.conns_.insert(this);
    run();
  }

  // For the server's destructor: the reactor no longer runs, so free at once.
  void destroy() {
    timer_.cancel();
    net::close_fd(s_.fd);
    delete this;
  }

  void on_event(uint32_t ev) override {
    if (closed_) return;
    s_.note_events(ev);
    run();
  }

 private:
  enum class State { Head, Body, Waiting, Sending, Upgraded, Closing };

  void run() {
    for (int turn = 0; turn < 64 && !closed_; ++turn) {
      bool progress = s_.fill();
      if (s_.failed) return close();
      switch (state_) {
        case State::Head:
          progress |= on_head();
          break;
        case State::Body:
          progress |= on_body();
          break;
        case State::Sending:
          progress |= on_sending();
          break;
        case State::Upgraded:
          if (!s_.in.empty()) {
            std::string out;
            upgrade_(s_.in.readable(), out);
            s_.in.clear();
            pending_ += out;
            progress = true;
          }
          progress |= on_sending();
          if (s_.eof) return close();
          break;
        case State::Waiting:
          break;
        case State::Closing:
          // Half-close once the answer is out, then wait for the client's end (or 2 s) so
          // unread input does not turn our close into a reset that eats the answer.
          s_.in.clear();
          if (s_.out.empty() && !shut_) {
            ::shutdown(s_.fd, SHUT_WR);
            shut_ = true;
            timer_.arm(srv_.reactor_.timers(), srv_.reactor_.now() + Millis(2000));
          }
          if (s_.eof) return close();
          break;
      }
      if (closed_) return;
      progress |= s_.flush();
      if (s_.write_failed) return close();
      if (!progress) break;
      if (turn == 63) {
        // More to do with both sockets ready: no edge will come, so continue after the batch.
        if (!yield_pending_) {
          yield_pending_ = true;
          srv_.reactor_.yield([this] {
            yield_pending_ = false;
            if (closed_) {
              delete this;
              return;
            }
            run();
          });
        }
        break;
      }
    }
  }

  bool on_head() {
    if (s_.in.empty()) {
      if (s_.eof) close();
      return false;
    }
    http::RequestHead h;
    http::Limits lim;
    lim.max_head_bytes = kBufferSize - 1;
    lim.max_headers = headers_.size();
    auto r = http::parse_request(s_.in.readable(), h, headers_, lim);
    if (r.status == http::ParseStatus::NeedMore) {
      if (s_.eof) close();
      return false;
    }
    if (r.status == http::ParseStatus::Error) {
      Response resp;
      resp.status = r.error_status;
      resp.body = std::string(http::reason_phrase(r.error_status)) + "\n";
      resp.close = true;
      send(resp);
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
    s_.in.consume(r.consumed);
    if (h.expect_continue && !body_.done()) s_.out.append("HTTP/1.1 100 Continue\r\n\r\n");
    state_ = State::Body;
    return true;
  }

  bool on_body() {
    bool progress = false;
    while (!body_.done() && !s_.in.empty()) {
      auto st = body_.decode(s_.in.readable());
      if (st.status == http::BodyDecoder::Status::Error) {
        Response resp;
        resp.status = 400;
        resp.body = "Bad Request\n";
        resp.close = true;
        send(resp);
        return true;
      }
      req_.body_length += st.payload.size();
      if (req_.body.size() < Request::kBodyKeep) {
        req_.body.append(st.payload.substr(0, Request::kBodyKeep - req_.body.size()));
      }
      s_.in.consume(st.consumed);
      progress |= st.consumed > 0;
      if (st.consumed == 0) break;
    }
    if (!body_.done()) {
      if (s_.eof) close();
      return progress;
    }
    Response resp = srv_.handler_(req_);
    if (resp.delay.count() > 0) {
      delayed_ = std::move(resp);
      state_ = State::Waiting;
      timer_.arm(srv_.reactor_.timers(), srv_.reactor_.now() + delayed_.delay);
      return true;
    }
    send(resp);
    return true;
  }

  void on_timer() {
    if (closed_) return;
    if (state_ == State::Closing) return close();
    if (state_ != State::Waiting) return;
    send(delayed_);
    run();
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
    if (resp.upgrade_handler) {
      head += "\r\n";
      pending_ = head;
      upgrade_ = resp.upgrade_handler;
      state_ = State::Upgraded;
      on_sending();
      return;
    }
    if (!has_type) head += "Content-Type: text/plain; charset=utf-8\r\n";
    bool bodiless = req_.method == "HEAD" || resp.status == 204 || resp.status == 304;
    head += "Content-Length: " + std::to_string(resp.body.size() + resp.filler_bytes) + "\r\n";
    if (close_after_) head += "Connection: close\r\n";
    head += "\r\n";
    pending_ = std::move(head);
    if (!bodiless) pending_ += resp.body;
    filler_left_ = bodiless ? 0 : resp.filler_bytes;
    state_ = State::Sending;
    on_sending();
  }

  bool on_sending() {
    bool progress = false;
    if (!pending_.empty()) {
      size_t n = s_.out.append(pending_);
      pending_.erase(0, n);
      progress |= n > 0;
    }
    while (pending_.empty() && filler_left_ > 0 && s_.out.free_space() > 0) {
      auto w = s_.out.writable();
      size_t n = std::min<uint64_t>(w.size(), filler_left_);
      if (n == 0) break;
      std::memset(w.data(), 'x', n);
      s_.out.commit(n);
      filler_left_ -= n;
      progress = true;
    }
    if (state_ == State::Sending && pending_.empty() && filler_left_ == 0) {
      if (close_after_) {
        state_ = State::Closing;
      } else {
        state_ = State::Head;
      }
      progress = true;
    }
    return progress;
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    net::close_fd(s_.fd);
    srv_.conns_.erase(this);
    if (!yield_pending_) srv_.reactor_.defer([this] { delete this; });
  }

  HttpServer& srv_;
  net::Stream s_;
  std::string peer_, local_;
  std::vector<http::Header> headers_;
  State state_ = State::Head;
  Request req_;
  http::BodyDecoder body_;
  bool keep_alive_ = true;
  bool close_after_ = false;
  bool closed_ = false;
  bool shut_ = false;
  bool yield_pending_ = false;  // a turn is queued with Reactor::yield (it frees us if closed)
  Response delayed_;
  std::string pending_;
  uint64_t filler_left_ = 0;
  std::function<void(std::string_view, std::string&)> upgrade_;
  Timer timer_;
};

class HttpServer::Acceptor final : public EventHandler {
 public:
  Acceptor(HttpServer& srv, int fd) : srv_(srv), fd_(fd) {}
  ~Acceptor() override { net::close_fd(fd_); }
  void on_event(uint32_t) override {
    for (;;) {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      int fd =
          ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
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
  }
  void close() {
    if (fd_ >= 0) {
      srv_.reactor_.remove(fd_);
      net::close_fd(fd_);
      fd_ = -1;
    }
  }
  int fd() const { return fd_; }

 private:
  HttpServer& srv_;
  int fd_;
};

HttpServer::HttpServer(Reactor& reactor, int listen_fd, Handler handler)
    : reactor_(reactor), handler_(std::move(handler)) {
  acceptor_ = std::make_unique<Acceptor>(*this, listen_fd);
  reactor_.add(listen_fd, acceptor_.get(), EPOLLIN | EPOLLET);
}

HttpServer::~HttpServer() {
  auto conns = std::move(conns_);
  for (Conn* c : conns)
    c->destroy();
}

void HttpServer::close_listener() {
  acceptor_->close();
}

}  // namespace weir::server
