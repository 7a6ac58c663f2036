// The HTTP/2 front end and the response path behind it: any bytes a client sends after the h2c
// preface go through nghttp2 and our session glue (streams, pipes, HTTP/1.1 translation,
// budgets, exchanges), requests reach a live origin on loopback, and whatever that origin
// answers comes back through the response parser, the body decoder and the HTTP/2 encoder
// (HEADERS, DATA, resets). Nothing may crash, leak or hang: once the client closes, the
// connection must close within a bounded number of reactor turns, and no connection to the
// origin may outlive it.
//
// Input: CLIENT_BYTES [ "WEIR-ORIGIN:" FLAGS RESPONSE_BYTES ]
//  - with the marker, the origin answers every request head with RESPONSE_BYTES as they are;
//    FLAGS: 1 = write them 7 bytes per turn, 2 = close once written (else keep-alive),
//    4 = close with a reset (RST), 8 = never answer.
//  - without it, the last byte picks a canned response (kCanned[b % 16]) and (b / 16) its
//    flags: 1 = 7 bytes per turn, 2 = close with a reset.
// Requests for /down* go to a backend nobody listens on (connection refused: 502).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.hpp"
#include "core/log.hpp"
#include "fuzz_util.hpp"
#include "model/snapshot.hpp"
#include "net/socket.hpp"
#include "proxy/h1_connection.hpp"
#include "proxy/worker.hpp"

namespace {

using namespace weir;

constexpr std::string_view kMarker = "WEIR-ORIGIN:";

// What the origin does with each request head of the current input.
struct Script {
  std::string_view response;  // empty: close without answering
  bool pieces = false;        // 7 bytes per turn (the parser sees every split)
  bool close_after = false;   // close once the response is written
  bool reset = false;         // close with RST instead of FIN
  bool hang = false;          // read requests, never answer
};

struct Canned {
  std::string bytes;
  bool close_after = false;
  bool hang = false;
};

std::vector<Canned> make_canned() {
  std::vector<Canned> c;
  c.push_back({"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"});
  c.push_back(
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
       "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n"});
  c.push_back({"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"});
  c.push_back({"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10\r\n\r\n"});
  c.push_back({"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe body runs until the close", true});
  c.push_back({"HTTP/1.1 2OO bogus\r\n\x01\x7f: \r\n\r\n"});
  c.push_back({"", true});  // closes without an answer
  c.push_back({"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nthe start and no more", true});
  c.push_back({"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + std::string(300000, 'x')});
  c.push_back({"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"});
  c.push_back(
      {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
       "HTTP/1.1 404 Not Found\r\nConnection: keep-alive, X-Drop\r\nKeep-Alive: timeout=5\r\n"
       "X-Drop: 1\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nSet-Cookie: a=1\r\n"
       "Set-Cookie: b=2\r\nContent-Length: 3\r\n\r\nnop"});
  c.push_back({"HTTP/1.0 200 OK\r\nX-Old: 1\r\n\r\nan HTTP/1.0 body", true});
  c.push_back(
      {"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
       "4\r\nfine\r\nzz\r\n"});
  c.push_back({"", false, true});  // never answers
  std::string chunks = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 40; ++i)
    chunks += "1000\r\n" + std::string(4096, static_cast<char>('a' + i % 26)) + "\r\n";
  chunks += "0\r\n\r\n";
  c.push_back({chunks});
  c.push_back(
      {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokEXTRA junk"
       "\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"});
  return c;
}

const std::vector<Canned>& canned() {
  static const auto* c = new std::vector<Canned>(make_canned());
  return *c;
}

// An HTTP/1.1 origin on 127.0.0.1:<ephemeral>, pumped by the fuzzing thread between reactor
// turns (no thread of its own: each input runs the same way every time).
class Origin {
 public:
  Origin() {
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd_ < 0) std::abort();
    int one = 1;
    ::setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd_, 256) != 0 ||
        ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      std::abort();
    port_ = ntohs(a.sin_port);
  }

  uint16_t port() const { return port_; }
  size_t open() const { return conns_.size(); }
  uint64_t requests() const { return requests_; }
  void begin(const Script& s) { script_ = s; }

  // Accepts, reads, answers, writes: true if anything moved.
  bool pump() {
    bool moved = false;
    for (;;) {
      int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      conns_.push_back(Conn{fd});
      moved = true;
    }
    for (Conn& c : conns_)
      moved |= serve(c);
    std::erase_if(conns_, [](const Conn& c) { return c.fd < 0; });
    return moved;
  }

  // Closes whatever is still open (the end of an input).
  void close_all() {
    pump();
    for (Conn& c : conns_)
      ::close(c.fd);
    conns_.clear();
  }

 private:
  struct Conn {
    int fd = -1;
    std::string in;
    std::string out;
    size_t sent = 0;
    size_t skip = 0;       // request body bytes still to skip (Content-Length)
    bool chunked = false;  // skipping a chunked request body
    bool closing = false;  // close once `out` is written
  };

  static bool has_field(std::string_view head, std::string_view name, std::string_view value) {
    std::string lower(head);
    for (char& ch : lower)
      ch = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch | 0x20) : ch;
    size_t at = lower.find(std::string("\n") + std::string(name) + ":");
    if (at == std::string::npos) return false;
    size_t end = lower.find('\n', at + 1);
    return std::string_view(lower).substr(at, end - at).find(value) != std::string_view::npos;
  }

  static size_t content_length(std::string_view head) {
    std::string lower(head);
    for (char& ch : lower)
      ch = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch | 0x20) : ch;
    size_t at = lower.find("\ncontent-length:");
    if (at == std::string::npos) return 0;
    return std::strtoull(lower.c_str() + at + 16, nullptr, 10);
  }

  // Drops request bodies; answers each complete head with the script's response.
  void answer(Conn& c) {
    while (!c.closing) {
      if (c.skip > 0) {
        size_t n = std::min(c.skip, c.in.size());
        c.in.erase(0, n);
        c.skip -= n;
        if (c.skip > 0) return;
      }
      if (c.chunked) {
        size_t end = c.in.find("0\r\n\r\n");
        if (end == std::string::npos) {
          if (c.in.size() > 4) c.in.erase(0, c.in.size() - 4);
          return;
        }
        c.in.erase(0, end + 5);
        c.chunked = false;
      }
      size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (c.in.size() > 64 * 1024) c.closing = true;  // no head that long: give up
        return;
      }
      std::string_view head = std::string_view(c.in).substr(0, end + 2);
      ++requests_;
      c.chunked = has_field(head, "transfer-encoding", "chunked");
      c.skip = c.chunked ? 0 : content_length(head);
      c.in.erase(0, end + 4);
      if (script_.hang) continue;
      if (script_.response.empty()) {
        c.closing = true;
        return;
      }
      c.out.append(script_.response);
      if (script_.close_after) c.closing = true;
    }
  }

  bool serve(Conn& c) {
    bool moved = false;
    bool peer_gone = false;
    char buf[16384];
    for (;;) {
      ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        moved = true;
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        peer_gone = true;  // weir closed (or reset) its side
        moved = true;
      }
      break;
    }
    if (!peer_gone) answer(c);
    while (!peer_gone && c.sent < c.out.size()) {
      size_t len = c.out.size() - c.sent;
      if (script_.pieces) len = std::min<size_t>(len, 7);
      ssize_t n = ::send(c.fd, c.out.data() + c.sent, len, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
        moved = true;
        if (script_.pieces) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
      peer_gone = true;
      break;
    }
    if (c.sent == c.out.size()) {
      c.out.clear();
      c.sent = 0;
    }
    if (peer_gone || (c.closing && c.out.empty())) {
      if (script_.reset) {
        linger l{1, 0};
        ::setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      ::close(c.fd);
      c.fd = -1;
      moved = true;
    }
    return moved;
  }

  int lfd_ = -1;
  uint16_t port_ = 0;
  std::vector<Conn> conns_;
  Script script_;
  uint64_t requests_ = 0;
};

std::string config_text(uint16_t origin_port) {
  return R"(
listeners:
  - name: h2c
    listen: 127.0.0.1:18080
    h2c: true
    routes:
      - match: { path_prefix: /down }
        backend: down
      - response_headers:
          remove: [X-Drop]
          set: { Cache-Control: no-store }
          add: { Via: "1.1 weir" }
        backend: web
backends:
  - name: web
    retries: 0
    servers:
      - address: 127.0.0.1:)" +
         std::to_string(origin_port) + R"(
  - name: down
    retries: 0
    servers:
      - address: 127.0.0.1:9
limits:
  max_header_bytes: 4KiB
  h2_max_concurrent_streams: 16
)";
}

struct World {
  Origin origin;
  model::ServerRegistry registry;
  std::unique_ptr<proxy::Worker> worker;

  World() {
    auto res = config::load_config_string(config_text(origin.port()), "fuzz.yaml");
    if (!res.ok()) std::abort();
    std::vector<std::string> errors;
    auto snap = model::build_snapshot(res.config, registry, errors);
    if (!snap) std::abort();
    worker = std::make_unique<proxy::Worker>(
        0, snap, std::vector<proxy::ListenSocket>{}, std::vector<std::string>{"127.0.0.1:18080"},
        std::vector<std::shared_ptr<proxy::ListenerGate>>{std::make_shared<proxy::ListenerGate>()});
  }
};

World& world() {
  static World* w = new World();  // lives for the whole process (no exit-time destruction)
  return *w;
}

size_t drain(int fd) {
  char buf[16384];
  size_t total = 0;
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0)
    total += static_cast<size_t>(n);
  return total;
}

Script script_for(std::string_view input, std::string_view& client) {
  Script s;
  size_t m = input.find(kMarker);
  if (m != std::string_view::npos) {
    client = input.substr(0, m);
    std::string_view rest = input.substr(m + kMarker.size());
    const uint8_t flags = rest.empty() ? 0 : static_cast<uint8_t>(rest[0]);
    if (!rest.empty()) rest.remove_prefix(1);
    s.response = rest;
    s.pieces = flags & 1;
    s.close_after = flags & 2;
    s.reset = flags & 4;
    s.hang = flags & 8;
    return s;
  }
  client = input;
  const auto& all = canned();
  const uint8_t sel = input.empty() ? 0 : static_cast<uint8_t>(input.back());
  const Canned& c = all[sel % all.size()];
  const unsigned flags = sel / all.size();
  s.response = c.bytes;
  s.close_after = c.close_after;
  s.hang = c.hang;
  s.pieces = flags & 1;
  s.reset = flags & 2;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  signal(SIGPIPE, SIG_IGN);  // as weir's main does
  log::set_level(log::Level::Error);
  world();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  World& w = world();
  std::string_view client;
  w.origin.begin(script_for(std::string_view(reinterpret_cast<const char*>(data), size), client));

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  int big = 256 * 1024;
  ::setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  (void)!::write(sv[1], kPreface.data(), kPreface.size());
  if (!client.empty()) (void)!::write(sv[1], client.data(), client.size());

  auto& stats = w.worker->stats();
  stats.connections_open = 1;
  auto* conn = new proxy::H1Connection(*w.worker, sv[0], proxy::loopback_client());
  w.worker->add_connection(conn);
  conn->start();
  Reactor& r = w.worker->reactor();
  // One turn of weir, the origin and the client; waits (1 ms at most) only after a quiet turn.
  int quiet = 0;
  auto turn = [&] {
    bool moved = w.origin.pump();
    r.run_once(moved || quiet == 0 ? 0 : 1);
    moved |= w.origin.pump();
    moved |= drain(sv[1]) > 0;
    quiet = moved ? 0 : quiet + 1;
  };
  // The exchanges run until nothing moves for a few turns (or 64 turns)...
  for (int i = 0; i < 64 && quiet < 4 && stats.connections_open > 0; ++i)
    turn();
  ::shutdown(sv[1], SHUT_WR);  // ...then the client is done sending
  for (int i = 0; i < 200 && stats.connections_open > 0; ++i)
    turn();
  FUZZ_CHECK(stats.connections_open == 0);  // closed within bounded turns: no hang
  r.run_pending();
  w.worker->pool().close_all();
  r.run_pending();
  // Every connection to the origin ended with the client's: none left open by weir.
  for (int i = 0; i < 4 && w.origin.open() > 0; ++i)
    w.origin.pump();
  FUZZ_CHECK(w.origin.open() == 0);
  w.origin.close_all();
  ::close(sv[1]);
  return 0;
}
