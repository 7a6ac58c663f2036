// `weir whoami`: a small backend for demos and tests, on weir's own reactor and codec.
#include <openssl/sha.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <memory>

#include "app/commands.hpp"
#include "config/units.hpp"
#include "core/log.hpp"
#include "core/reactor.hpp"
#include "net/socket.hpp"
#include "server/http_server.hpp"

namespace weir::app {
namespace {

std::string base64(const unsigned char* p, size_t n) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = p[i] << 16;
    if (i + 1 < n) v |= p[i + 1] << 8;
    if (i + 2 < n) v |= p[i + 2];
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += i + 1 < n ? t[(v >> 6) & 63] : '=';
    out += i + 2 < n ? t[v & 63] : '=';
  }
  return out;
}

// RFC 6455 echo: unmasks each client frame and sends it back unmasked. Buffers at most 1 MiB.
struct WebSocketEcho {
  std::string buf;
  void operator()(std::string_view in, std::string& out) {
    buf.append(in);
    if (buf.size() > (1u << 20)) buf.clear();
    for (;;) {
      if (buf.size() < 2) return;
      auto b = reinterpret_cast<const unsigned char*>(buf.data());
      uint8_t op = b[0];
      bool masked = b[1] & 0x80;
      uint64_t len = b[1] & 0x7F;
      size_t pos = 2;
      if (len == 126) {
        if (buf.size() < 4) return;
        len = (b[2] << 8) | b[3];
        pos = 4;
      } else if (len == 127) {
        if (buf.size() < 10) return;
        len = 0;
        for (int i = 0; i < 8; ++i)
          len = (len << 8) | b[2 + i];
        pos = 10;
      }
      size_t need = pos + (masked ? 4 : 0) + len;
      if (buf.size() < need) return;
      std::string payload = buf.substr(pos + (masked ? 4 : 0), len);
      if (masked)
        for (size_t i = 0; i < len; ++i)
          payload[i] ^= buf[pos + (i % 4)];
      out.push_back(static_cast<char>(op));
      if (len < 126) {
        out.push_back(static_cast<char>(len));
      } else if (len < 65536) {
        out.push_back(126);
        out.push_back(static_cast<char>(len >> 8));
        out.push_back(static_cast<char>(len & 0xFF));
      } else {
        out.push_back(127);
        for (int i = 7; i >= 0; --i)
          out.push_back(static_cast<char>((len >> (8 * i)) & 0xFF));
      }
      out += payload;
      buf.erase(0, need);
    }
  }
};

}  // namespace

int cmd_whoami(const std::string& listen, const std::string& name, config::Duration delay) {
  std::string host, err;
  uint16_t port = 0;
  if (!net::split_host_port(listen, host, port)) {
    std::fprintf(stderr, "weir whoami: --listen %s: expected HOST:PORT\n", listen.c_str());
    return 2;
  }
  auto addr = net::resolve(host, port, err);
  if (!addr) {
    std::fprintf(stderr, "weir whoami: %s\n", err.c_str());
    return 3;
  }
  int fd = net::listen_socket(*addr, false, 1024, err);
  if (fd < 0) {
    std::fprintf(stderr, "weir whoami: %s\n", err.c_str());
    return 3;
  }
  signal(SIGPIPE, SIG_IGN);
  char hostname[256] = "unknown";
  gethostname(hostname, sizeof hostname - 1);
  std::string hn = hostname;
  int health_status = 200;

  Reactor reactor;
  server::HttpServer srv(reactor, fd, [&](const server::Request& r) {
    server::Response resp;
    if (r.path == "/healthz") {
      if (r.method == "POST") {
        int v = 0;
        auto [p, ec] = std::from_chars(r.body.data(), r.body.data() + r.body.size(), v);
        (void)p;
        if (ec == std::errc() && v >= 100 && v <= 599) {
          health_status = v;
          resp.body = "health status set to " + std::to_string(v) + "\n";
        } else {
          resp.status = 400;
          resp.body = "body must be a status code (100-599)\n";
        }
        return resp;
      }
      resp.status = static_cast<uint16_t>(health_status);
      resp.body = health_status < 400 ? "ok\n" : "unhealthy\n";
      return resp;
    }
    if (r.upgrade && http::iequals(r.upgrade_protocol, "websocket")) {
      std::string key(r.header("Sec-WebSocket-Key"));
      if (key.size() != 24 || key[22] != '=' || key[23] != '=') {
        // RFC 6455 4.2.1: a 16-byte nonce, base64 (24 characters ending "=="), or no handshake.
        resp.status = 400;
        resp.body = "a WebSocket handshake needs a Sec-WebSocket-Key of 16 bytes in base64\n";
        resp.close = true;
        return resp;
      }
      key += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
      unsigned char digest[SHA_DIGEST_LENGTH];
      SHA1(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
      resp.status = 101;
      resp.headers = {{"Upgrade", "websocket"},
                      {"Connection", "Upgrade"},
                      {"Sec-WebSocket-Accept", base64(digest, sizeof digest)}};
      resp.upgrade_handler = WebSocketEcho{};
      return resp;
    }
    std::string& b = resp.body;
    b = "Name: " + name + "\nHostname: " + hn + "\nIP: " + r.local + "\nRemoteAddr: " + r.peer +
        "\n" + r.method + " " + r.target + " HTTP/1." + std::to_string(r.version_minor) + "\n";
    for (const auto& [k, v] : r.headers)
      b += k + ": " + v + "\n";
    if (r.body_length > 0 || !r.header("Content-Length").empty() ||
        !r.header("Transfer-Encoding").empty()) {
      b += "Body-Length: " + std::to_string(r.body_length) + "\n";
    }
    resp.delay = delay;
    if (auto d = r.query_param("delay"); !d.empty()) {
      if (auto v = config::parse_duration(d)) resp.delay = *v;
    }
    if (auto s = r.query_param("size"); !s.empty()) {
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (ec == std::errc() && p == s.data() + s.size()) resp.filler_bytes = n;
    }
    if (auto s = r.query_param("status"); !s.empty()) {
      int v = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && p == s.data() + s.size() && v >= 200 && v <= 599)
        resp.status = static_cast<uint16_t>(v);
    }
    return resp;
  });

  // SIGTERM/SIGINT end the loop, read from a signalfd on the same reactor.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  struct StopOnSignal final : EventHandler {
    Reactor& r;
    explicit StopOnSignal(Reactor& rr) : r(rr) {}
    void on_event(uint32_t) override { r.stop(); }
  } stopper(reactor);
  reactor.add(sfd, &stopper, EPOLLIN);
  log::info("whoami {} listening on {}", name, addr->to_string());
  reactor.run();
  ::close(sfd);
  return 0;
}

}  // namespace weir::app
