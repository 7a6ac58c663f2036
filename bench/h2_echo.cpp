// weir_h2_echo: a small HTTP/2 clear-text (h2c, prior knowledge) server on nghttp2, the gRPC
// backend of the benchmark's gRPC scenarios (bench/grpc_scenarios.py) and a fast h2c origin.
// Bench-only tool: built by `ninja weir_h2_echo` (not part of `all` or `make test`).
//
//   weir_h2_echo [--max-streams N] [--body-bytes N] [--quiet] HOST:PORT [HOST:PORT ...]
//
// One thread, one epoll, every listening address in one process. Per request:
//   - POST with content-type application/grpc[+...]: 200, content-type application/grpc, the
//     request body (its gRPC messages, 5-byte prefixes included) echoed as it arrives, then the
//     trailers `grpc-status: 0`, `grpc-message: OK` once the request has ended (the response
//     starts with the request, so bidirectional streaming works; every request message gets
//     its echo, so a client-streaming call must send one message to get a valid unary answer);
//   - GET, HEAD: 200 with a body of --body-bytes (default 100) bytes, content-length;
//   - other POST/PUT: the body is read and discarded, then as GET;
//   - any other method: 405.
// Every response carries `x-origin: <local port>` (which listener answered).
// Flow control: the echoed bytes are acknowledged (WINDOW_UPDATE) only once they have been
// handed to the response, so a client that sends without reading is held by the windows, not
// buffered (at most a stream window, 1 MiB, per stream; 16 MiB per connection). A client that
// resets streams, sends garbage or disconnects only ends its own stream or connection.
#include <nghttp2/nghttp2.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

uint32_t g_max_streams = 1000;
std::string g_body;  // the GET body
bool g_quiet = false;

constexpr int32_t kStreamWindow = 1 << 20;   // per stream
constexpr int32_t kConnWindow = 16 << 20;    // per connection
constexpr size_t kOutHighWater = 256 << 10;  // stop producing frames above this
constexpr size_t kReadChunk = 64 << 10;

struct Conn;

struct Stream {
  int32_t id = 0;
  std::string method;
  bool grpc = false;
  bool responded = false;
  bool req_ended = false;
  bool deferred = false;  // the data provider returned NGHTTP2_ERR_DEFERRED
  std::string buf;        // gRPC: received, not yet handed to the response
  size_t off = 0;         // gRPC: read position in buf; GET: position in g_body
  size_t unconsumed = 0;  // bytes received and not yet acknowledged to the peer
};

struct Pollable {
  bool listener;
};

struct Listener : Pollable {
  int fd = -1;
  uint16_t port = 0;
};

struct Conn : Pollable {
  int fd = -1;
  uint16_t port = 0;  // local port, for x-origin
  std::string port_str;
  nghttp2_session* session = nullptr;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams;
  std::string out;
  size_t out_off = 0;
  bool want_epollout = false;
  bool dead = false;
  // (stream id, bytes) acknowledged once nghttp2 is not in a send call
  std::vector<std::pair<int32_t, size_t>> to_consume;
};

int g_ep = -1;

nghttp2_nv nv(const char* name, const std::string& value) {
  return {(uint8_t*)name, (uint8_t*)value.data(), strlen(name), value.size(),
          NGHTTP2_NV_FLAG_NO_COPY_NAME};
}

Stream* get_stream(Conn* c, int32_t id) {
  auto it = c->streams.find(id);
  return it == c->streams.end() ? nullptr : it->second.get();
}

// ---------------------------------------------------------------- data providers

ssize_t grpc_read(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                  uint32_t* data_flags, nghttp2_data_source* source, void* user_data) {
  auto* c = static_cast<Conn*>(user_data);
  auto* s = static_cast<Stream*>(source->ptr);
  size_t avail = s->buf.size() - s->off;
  if (avail == 0) {
    if (!s->req_ended) {
      s->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    static const std::string status = "0", message = "OK";
    nghttp2_nv trailers[] = {nv("grpc-status", status), nv("grpc-message", message)};
    if (nghttp2_submit_trailer(session, stream_id, trailers, 2) != 0)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
  }
  size_t n = avail < length ? avail : length;
  memcpy(buf, s->buf.data() + s->off, n);
  s->off += n;
  if (s->off == s->buf.size()) {
    s->buf.clear();
    s->off = 0;
  }
  // handed on: now the peer may send that much more
  s->unconsumed -= n;
  c->to_consume.emplace_back(stream_id, n);
  return (ssize_t)n;
}

ssize_t body_read(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* data_flags,
                  nghttp2_data_source* source, void*) {
  auto* s = static_cast<Stream*>(source->ptr);
  size_t avail = g_body.size() - s->off;
  size_t n = avail < length ? avail : length;
  memcpy(buf, g_body.data() + s->off, n);
  s->off += n;
  if (s->off == g_body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

int respond(Conn* c, Stream* s) {
  s->responded = true;
  static const std::string s200 = "200", s405 = "405", grpc_ct = "application/grpc",
                           text_ct = "text/plain";
  if (s->grpc) {
    nghttp2_nv hdrs[] = {nv(":status", s200), nv("content-type", grpc_ct),
                         nv("x-origin", c->port_str)};
    nghttp2_data_provider dp;
    dp.source.ptr = s;
    dp.read_callback = grpc_read;
    return nghttp2_submit_response(c->session, s->id, hdrs, 3, &dp);
  }
  bool ok = s->method == "GET" || s->method == "HEAD" || s->method == "POST" || s->method == "PUT";
  const std::string len = ok ? std::to_string(g_body.size()) : "0";
  nghttp2_nv hdrs[] = {nv(":status", ok ? s200 : s405), nv("content-type", text_ct),
                       nv("content-length", len), nv("x-origin", c->port_str)};
  if (!ok || s->method == "HEAD" || g_body.empty())
    return nghttp2_submit_response(c->session, s->id, hdrs, 4, nullptr);
  nghttp2_data_provider dp;
  dp.source.ptr = s;
  dp.read_callback = body_read;
  return nghttp2_submit_response(c->session, s->id, hdrs, 4, &dp);
}

void resume(Conn* c, Stream* s) {
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(c->session, s->id);
  }
}

// ---------------------------------------------------------------- session callbacks

int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* c = static_cast<Conn*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto s = std::make_unique<Stream>();
  s->id = frame->hd.stream_id;
  c->streams[s->id] = std::move(s);
  return 0;
}

int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
              const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
  auto* c = static_cast<Conn*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  Stream* s = get_stream(c, frame->hd.stream_id);
  if (!s) return 0;
  std::string_view n((const char*)name, namelen), v((const char*)value, valuelen);
  if (n == ":method") {
    s->method.assign(v);
  } else if (n == "content-type") {
    // application/grpc, application/grpc+proto, application/grpc;charset=...
    s->grpc =
        v.substr(0, 16) == "application/grpc" && (v.size() == 16 || v[16] == '+' || v[16] == ';');
  }
  return 0;
}

int on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                  size_t len, void* user_data) {
  auto* c = static_cast<Conn*>(user_data);
  Stream* s = get_stream(c, stream_id);
  if (!s || !s->grpc || s->method != "POST") {
    // discarded: acknowledge at once
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  s->buf.append((const char*)data, len);
  s->unconsumed += len;
  resume(c, s);
  return 0;
}

int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* c = static_cast<Conn*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Stream* s = get_stream(c, frame->hd.stream_id);
  if (!s) return 0;
  bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (end) s->req_ended = true;
  if (s->grpc && s->method == "POST") {
    if (!s->responded && frame->hd.type == NGHTTP2_HEADERS &&
        frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      if (respond(c, s) != 0)
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    } else if (end) {
      resume(c, s);  // the trailers can go now
    }
    return 0;
  }
  if (end && !s->responded) {
    if (respond(c, s) != 0)
      nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
  }
  return 0;
}

int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t, void* user_data) {
  auto* c = static_cast<Conn*>(user_data);
  auto it = c->streams.find(stream_id);
  if (it == c->streams.end()) return 0;
  // bytes held for a response that will not be sent: give the connection window back
  if (it->second->unconsumed) c->to_consume.emplace_back(stream_id, it->second->unconsumed);
  c->streams.erase(it);
  return 0;
}

nghttp2_session_callbacks* g_callbacks = nullptr;
nghttp2_option* g_option = nullptr;

// ---------------------------------------------------------------- connections

void close_conn(Conn* c) {
  if (c->dead) return;
  c->dead = true;
  epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  nghttp2_session_del(c->session);
  c->session = nullptr;
  c->streams.clear();
}

// Produces frames and writes them; false if the connection must close.
bool pump(Conn* c) {
  for (;;) {
    // produce
    while (c->out.size() - c->out_off < kOutHighWater) {
      if (!c->to_consume.empty()) {
        auto pending = std::move(c->to_consume);
        c->to_consume.clear();
        for (auto& [id, n] : pending) {
          int rv = nghttp2_session_consume(c->session, id, n);
          if (rv != 0 && nghttp2_is_fatal(rv)) return false;
        }
      }
      const uint8_t* data;
      ssize_t n = nghttp2_session_mem_send(c->session, &data);
      if (n < 0) return false;
      if (n == 0) {
        if (c->to_consume.empty()) break;
        continue;
      }
      if (c->out_off == c->out.size()) {
        c->out.clear();
        c->out_off = 0;
      }
      c->out.append((const char*)data, (size_t)n);
    }
    // write
    bool blocked = false;
    while (c->out_off < c->out.size()) {
      ssize_t w = send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
      if (w > 0) {
        c->out_off += (size_t)w;
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        blocked = true;
        break;
      } else {
        return false;
      }
    }
    if (c->out_off == c->out.size()) {
      c->out.clear();
      c->out_off = 0;
    }
    if (blocked || !nghttp2_session_want_write(c->session)) {
      if (blocked != c->want_epollout) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP | (blocked ? uint32_t(EPOLLOUT) : 0u);
        ev.data.ptr = static_cast<Pollable*>(c);
        epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_epollout = blocked;
      }
      break;
    }
  }
  if (c->out.empty() && !nghttp2_session_want_read(c->session) &&
      !nghttp2_session_want_write(c->session))
    return false;  // GOAWAY exchanged and everything sent
  return true;
}

bool on_readable(Conn* c) {
  uint8_t buf[kReadChunk];
  for (int i = 0; i < 16; ++i) {  // bounded: other connections get their turn
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r == 0) return false;
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    ssize_t n = nghttp2_session_mem_recv(c->session, buf, (size_t)r);
    if (n < 0) {
      // a protocol error: nghttp2 queued a GOAWAY; try to send it, then close
      pump(c);
      return false;
    }
    if (!pump(c)) return false;
    if (c->want_epollout) break;  // the peer does not read: stop reading until it does
    if ((size_t)r < sizeof buf) break;
  }
  return true;
}

Conn* new_conn(int fd, uint16_t port) {
  auto* c = new Conn();
  c->listener = false;
  c->fd = fd;
  c->port = port;
  c->port_str = std::to_string(port);
  if (nghttp2_session_server_new2(&c->session, g_callbacks, c, g_option) != 0) {
    close(fd);
    delete c;
    return nullptr;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, g_max_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)kStreamWindow},
  };
  nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2);
  nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, kConnWindow);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.ptr = static_cast<Pollable*>(c);
  epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
  return c;
}

int listen_on(const std::string& hostport, uint16_t* port_out) {
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) return -1;
  std::string host = hostport.substr(0, colon);
  int port = atoi(hostport.c_str() + colon + 1);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (sockaddr*)&sa, sizeof sa) != 0 || listen(fd, 4096) != 0) {
    close(fd);
    return -1;
  }
  *port_out = (uint16_t)port;
  return fd;
}

void usage() {
  fprintf(stderr,
          "usage: weir_h2_echo [--max-streams N] [--body-bytes N] [--quiet] HOST:PORT "
          "[HOST:PORT ...]\n");
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> addrs;
  size_t body_bytes = 100;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--max-streams" && i + 1 < argc) {
      g_max_streams = (uint32_t)strtoul(argv[++i], nullptr, 10);
    } else if (a == "--body-bytes" && i + 1 < argc) {
      body_bytes = strtoul(argv[++i], nullptr, 10);
    } else if (a == "--quiet") {
      g_quiet = true;
    } else if (a.size() > 1 && a[0] == '-') {
      usage();
    } else {
      addrs.push_back(a);
    }
  }
  if (addrs.empty()) usage();
  g_body.reserve(body_bytes);
  static const char kAlpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  for (size_t i = 0; i < body_bytes; ++i)
    g_body.push_back(kAlpha[i % 36]);
  if (body_bytes) g_body.back() = '\n';

  signal(SIGPIPE, SIG_IGN);
  rlimit rl{};  // many connections (NGINX opens one per call in flight)
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  nghttp2_session_callbacks_new(&g_callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(g_callbacks, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(g_callbacks, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g_callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(g_callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(g_callbacks, on_stream_close);
  nghttp2_option_new(&g_option);
  nghttp2_option_set_no_auto_window_update(g_option, 1);

  g_ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Listener*> listeners;
  for (auto& a : addrs) {
    auto* l = new Listener();
    l->listener = true;
    l->fd = listen_on(a, &l->port);
    if (l->fd < 0) {
      fprintf(stderr, "weir_h2_echo: cannot listen on %s: %s\n", a.c_str(), strerror(errno));
      return 1;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = static_cast<Pollable*>(l);
    epoll_ctl(g_ep, EPOLL_CTL_ADD, l->fd, &ev);
    listeners.push_back(l);
    if (!g_quiet) fprintf(stderr, "weir_h2_echo: listening on %s (h2c)\n", a.c_str());
  }

  std::vector<Conn*> to_delete;
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(g_ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      auto* p = static_cast<Pollable*>(events[i].data.ptr);
      if (p->listener) {
        auto* l = static_cast<Listener*>(p);
        for (int k = 0; k < 64; ++k) {
          int fd = accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;  // EAGAIN, or EMFILE and the like: try again on the next event
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          Conn* c = new_conn(fd, l->port);
          if (c && !pump(c)) {  // our SETTINGS
            close_conn(c);
            to_delete.push_back(c);
          }
        }
        continue;
      }
      auto* c = static_cast<Conn*>(p);
      if (c->dead) continue;
      bool ok = true;
      uint32_t ev = events[i].events;
      if (ev & EPOLLOUT) ok = pump(c);
      if (ok && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        // read even while the peer does not read us (bounded by the windows), so that its
        // WINDOW_UPDATEs and RST_STREAMs are seen
        ok = on_readable(c);
        if (ok && (ev & (EPOLLHUP | EPOLLERR))) ok = false;
      }
      if (!ok) {
        close_conn(c);
        to_delete.push_back(c);
      }
    }
    for (Conn* c : to_delete)
      delete c;
    to_delete.clear();
  }
}
