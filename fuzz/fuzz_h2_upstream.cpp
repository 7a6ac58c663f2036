// HTTP/2 towards servers (backend `protocol: h2c`): whatever a server writes on its side of the
// connection goes through nghttp2's client session and our glue (upstream_h2*.cpp: the pool,
// streams, field blocks, 1xx heads, trailers, flow control, GOAWAY, resets, refused streams and
// their retries) and on through the exchange's response paths to an HTTP/1.1 or HTTP/2 client.
// Nothing may crash, leak or hang: every request ends (answered, failed or cut) within a
// bounded number of reactor turns while its client waits (backend timeouts.response is 30 ms),
// the client's connection closes within bounded turns once the client closed, and once the
// origin closed too, no HTTP/2 connection to it may be left in the worker's pool.
//
// Input: SELECT SEGMENT0 [ "WEIR-NEXT:" SEGMENT1 [ "WEIR-NEXT:" SEGMENT2 ... ] ]
//  - SELECT (the first byte): SELECT % 8 picks the client (make_clients: HTTP/1.1 GETs, POST
//    with a length, chunked POST with trailers, HEAD; HTTP/2 GETs, a gRPC-like POST with
//    request trailers, a POST, two GETs then the first cancelled). Flags: 8 = the origin writes
//    7 bytes per turn; 16 = it closes once every segment is written; 32 = with a reset (RST);
//    64 = the client half-closes right after its requests; 128 = the origin's connections after
//    the first of the input answer every stream with a plain 200 (retries can succeed).
//  - The origin reads (and discards) what weir sends, counting the requests (HEADERS opening a
//    new stream). On each connection it writes SEGMENT0 as it accepts it (the server preface:
//    a SETTINGS frame first, else weir gives the connection up), then SEGMENTk once it has seen
//    k requests on that connection. Stream ids are weir's: 1, 3, 5... on each connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include "proxy/upstream_h2.hpp"
#include "proxy/worker.hpp"

namespace {

using namespace weir;

constexpr std::string_view kNext = "WEIR-NEXT:";
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum : uint8_t { kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4 };
enum : uint8_t { kEndStream = 1, kEndHeaders = 4 };

std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  const size_t n = payload.size();
  f.push_back(static_cast<char>(n >> 16));
  f.push_back(static_cast<char>(n >> 8));
  f.push_back(static_cast<char>(n));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  f.push_back(static_cast<char>(stream >> 24));
  f.push_back(static_cast<char>(stream >> 16));
  f.push_back(static_cast<char>(stream >> 8));
  f.push_back(static_cast<char>(stream));
  f.append(payload);
  return f;
}

// HPACK: a literal field without indexing, new name (lengths below 127).
std::string field(std::string_view name, std::string_view value) {
  std::string s;
  s.push_back(0);
  s.push_back(static_cast<char>(name.size()));
  s.append(name);
  s.push_back(static_cast<char>(value.size()));
  s.append(value);
  return s;
}

std::string h2_request(uint32_t stream, std::string_view method, std::string_view path,
                       bool end_stream, std::string_view extra = {}) {
  std::string block = field(":method", method) + field(":scheme", "http") + field(":path", path) +
                      field(":authority", "example.com") + field("user-agent", "fuzz") +
                      std::string(extra);
  return frame(kHeaders, kEndHeaders | (end_stream ? kEndStream : 0), stream, block);
}

// What the client sends: `first` at once, `late` a few turns later (if any).
struct Client {
  std::string first;
  std::string late;
  uint64_t requests = 0;  // how many requests it makes
};

std::vector<Client> make_clients() {
  std::vector<Client> c;
  c.push_back(
      {"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"
       "GET /b?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
       "", 2});
  c.push_back(
      {"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\n"
       "Content-Length: 11\r\n\r\nhello world",
       "", 1});
  c.push_back(
      {"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
       "TE: trailers\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 11\r\n\r\n",
       "", 1});
  c.push_back(
      {"HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n"
       "GET /c HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
       "", 2});
  const std::string settings = std::string(kPreface) + frame(kSettings, 0, 0, {});
  c.push_back(
      {settings + h2_request(1, "GET", "/a", true) + h2_request(3, "GET", "/b", true), "", 2});
  c.push_back({settings +
                   h2_request(1, "POST", "/pkg.Service/Call", false,
                              field("content-type", "application/grpc") + field("te", "trailers")) +
                   frame(kData, 0, 1, std::string("\0\0\0\0\2\x08\x01", 7)) +
                   frame(kHeaders, kEndHeaders | kEndStream, 1, field("x-client-trailer", "1")),
               "", 1});
  c.push_back({settings + h2_request(1, "POST", "/up", false, field("content-length", "11")) +
                   frame(kData, kEndStream, 1, "hello world"),
               "", 1});
  c.push_back({settings + h2_request(1, "GET", "/a", true) + h2_request(3, "GET", "/b", true),
               frame(kRstStream, 0, 1, std::string("\0\0\0\x08", 4)), 2});  // CANCEL
  return c;
}

const std::vector<Client>& clients() {
  static const auto* c = new std::vector<Client>(make_clients());
  return *c;
}

struct Script {
  std::vector<std::string_view> segments;
  bool pieces = false;       // 7 bytes per turn
  bool close_after = false;  // close once every segment is written
  bool reset = false;        // close with RST instead of FIN
  bool good_later = false;   // connections after the first answer every stream with a 200
};

// An HTTP/2 server on 127.0.0.1:<ephemeral>, pumped by the fuzzing thread between reactor turns
// (no thread of its own: each input runs the same way every time).
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
  void begin(const Script& s) {
    script_ = s;
    accepted_ = 0;
  }

  // Accepts, reads, writes what is due: true if anything moved.
  bool pump() {
    bool moved = false;
    for (;;) {
      int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      // Small pieces leave at once (Nagle would hold them for weir's delayed ACK, longer than
      // the response timeout).
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      Conn c;
      c.fd = fd;
      c.good = script_.good_later && accepted_ > 0;
      ++accepted_;
      if (c.good) c.out = frame(kSettings, 0, 0, {});
      conns_.push_back(std::move(c));
      moved = true;
    }
    for (Conn& c : conns_)
      moved |= serve(c);
    std::erase_if(conns_, [](const Conn& c) { return c.fd < 0; });
    return moved;
  }

  // Closes whatever is still open (FIN), after a last look.
  void close_all() {
    pump();
    for (Conn& c : conns_)
      ::close(c.fd);
    conns_.clear();
  }

 private:
  struct Conn {
    int fd = -1;
    bool good = false;
    std::string in;
    size_t preface = kPreface.size();  // client preface bytes still to skip
    uint32_t max_stream = 0;
    size_t requests = 0;
    size_t next = 0;  // the next segment to write
    std::string out;
    size_t sent = 0;
  };

  // Frames from weir: counts the requests, answers them on a good connection.
  void parse(Conn& c) {
    size_t at = 0;
    if (c.preface > 0) {
      at = std::min(c.preface, c.in.size());
      c.preface -= at;
    }
    while (c.in.size() - at >= 9) {
      const auto* p = reinterpret_cast<const uint8_t*>(c.in.data() + at);
      const size_t len = (size_t{p[0]} << 16) | (size_t{p[1]} << 8) | p[2];
      if (c.in.size() - at < 9 + len) break;
      const uint32_t stream =
          ((uint32_t{p[5]} << 24) | (uint32_t{p[6]} << 16) | (uint32_t{p[7]} << 8) | p[8]) &
          0x7fffffffu;
      if (p[3] == kHeaders && stream > c.max_stream && (stream & 1)) {
        c.max_stream = stream;
        ++c.requests;
        if (c.good)
          c.out += frame(kHeaders, kEndHeaders, stream, "\x88") +  // :status 200
                   frame(kData, kEndStream, stream, "ok");
      }
      at += 9 + len;
    }
    c.in.erase(0, at);
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
    parse(c);
    const auto& segs = script_.segments;
    if (!c.good) {
      while (c.next < segs.size() && c.next <= c.requests)
        c.out.append(segs[c.next++]);
    }
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
    const bool finished = !c.good && script_.close_after && c.next == segs.size() && c.out.empty();
    if (peer_gone || finished) {
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
  size_t accepted_ = 0;
};

std::string config_text(uint16_t origin_port) {
  return R"(
listeners:
  - name: h2c
    listen: 127.0.0.1:18080
    h2c: true
    routes:
      - response_headers:
          set: { Cache-Control: no-store }
        backend: h2
backends:
  - name: h2
    protocol: h2c
    retries: 1
    timeouts: { connect: 200ms, response: 30ms }
    servers:
      - address: 127.0.0.1:)" +
         std::to_string(origin_port) + R"(
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

void write_all(int fd, std::string_view bytes) {
  // The socketpair's buffer takes any client's requests at once.
  if (!bytes.empty()) (void)!::write(fd, bytes.data(), bytes.size());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  signal(SIGPIPE, SIG_IGN);  // as weir's main does
  log::set_level(log::Level::Error);
  world();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  World& w = world();
  const uint8_t select = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  Script script;
  for (;;) {
    size_t m = rest.find(kNext);
    script.segments.push_back(rest.substr(0, m));
    if (m == std::string_view::npos) break;
    rest.remove_prefix(m + kNext.size());
  }
  script.pieces = select & 8;
  script.close_after = select & 16;
  script.reset = select & 32;
  script.good_later = select & 128;
  const bool early_shut = select & 64;
  const Client& client = clients()[select % 8];
  w.origin.begin(script);

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  int big = 256 * 1024;
  ::setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  write_all(sv[1], client.first);
  bool late_written = client.late.empty();
  bool shut = false;
  if (early_shut && late_written) {
    ::shutdown(sv[1], SHUT_WR);
    shut = true;
  }

  auto& stats = w.worker->stats();
  stats.connections_open = 1;
  auto* conn = new proxy::H1Connection(*w.worker, sv[0], proxy::loopback_client());
  w.worker->add_connection(conn);
  conn->start();
  Reactor& r = w.worker->reactor();
  proxy::H2Pool& h2pool = w.worker->h2pool();
  // One turn of weir, the origin and the client; waits (1 ms at most) only after a quiet turn.
  int quiet = 0;
  auto turn = [&] {
    bool moved = w.origin.pump();
    r.run_once(moved || quiet == 0 ? 0 : 1);
    moved |= w.origin.pump();
    moved |= drain(sv[1]) > 0;
    quiet = moved ? 0 : quiet + 1;
  };
  // The exchanges run until every request of the client ended (answered, failed or cut) and
  // nothing moved for a couple of turns. Bounded: the response timeout (30 ms) ends a server's
  // silence, retries are bounded, and a slow origin writes 7 bytes per turn.
  const uint64_t ended_before = stats.latency.count;  // one observation per request that ends
  auto ended = [&] { return stats.latency.count - ended_before; };
  const size_t max_turns = 3000 + size / 7;
  for (size_t i = 0; i < max_turns && stats.connections_open > 0; ++i) {
    if (!late_written && (i >= 4 || quiet >= 2)) {
      write_all(sv[1], client.late);
      late_written = true;
      quiet = 0;
      if (early_shut) {
        ::shutdown(sv[1], SHUT_WR);
        shut = true;
      }
    }
    if (late_written && ended() >= client.requests && quiet >= 2) break;
    turn();
  }
  // No request hangs while its client waits for it.
  FUZZ_CHECK(stats.connections_open == 0 || ended() >= client.requests);
  // Then the client is done sending: its connection closes within bounded turns.
  if (!shut) ::shutdown(sv[1], SHUT_WR);
  for (int i = 0; i < 1000 && stats.connections_open > 0; ++i)
    turn();
  FUZZ_CHECK(stats.connections_open == 0);  // no hang
  r.run_pending();
  w.worker->pool().close_all();
  // The origin goes too: every HTTP/2 connection to it must leave the pool (none kept by a
  // stream that outlived its exchange).
  w.origin.close_all();
  for (int i = 0; i < 100 && h2pool.connections() > 0; ++i)
    turn();
  FUZZ_CHECK(h2pool.connections() == 0);
  r.run_pending();  // the sessions' deferred deletes
  w.origin.close_all();
  ::close(sv[1]);
  return 0;
}
