// `weir whoami`: a small backend for demos and tests, on weir's own reactor and codec.
// With --redis it also keeps sessions in Redis (GET /session), so that any instance continues
// any session: the stateless application server of a fleet (fleet.md).
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

#include "app/commands.hpp"
#include "config/units.hpp"
#include "core/log.hpp"
#include "core/reactor.hpp"
#include "http/fields.hpp"
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

constexpr const char* kSessionCookie = "whoami_session";
constexpr int kSessionTtlSeconds = 24 * 3600;
constexpr timeval kRedisTimeout{0, 500 * 1000};  // connect, and each command
// After a failure, requests answer 503 at once for this long before the next connection attempt
// (a store that times out would otherwise cost every request the whole timeout).
constexpr std::chrono::milliseconds kRedisRetryAfter{200};

// The session store: one blocking hiredis connection with timeouts, on the reactor thread (a
// demo application; each call waits at most kRedisTimeout for the connection plus as much per
// command). Reconnects after any failure.
class SessionStore {
 public:
  // `where`: HOST:PORT or unix:/path.
  static std::optional<SessionStore> parse(const std::string& where) {
    SessionStore s;
    s.where_ = where;
    if (where.starts_with("unix:")) {
      s.unix_path_ = where.substr(5);
      if (s.unix_path_.empty()) return std::nullopt;
      return s;
    }
    if (!net::split_host_port(where, s.host_, s.port_) || s.host_.empty() || s.port_ == 0)
      return std::nullopt;
    return s;
  }

  // INCRements the session's visit count (and renews its expiry); the new count, or nullopt
  // with `error` set.
  std::optional<long long> visit(const std::string& id, std::string& error) {
    auto now = std::chrono::steady_clock::now();
    if (!ctx_ && now < retry_at_) {
      error = last_error_;
      return std::nullopt;
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool reused = ctx_ != nullptr;
      if (!ctx_ && !connect(error)) break;
      std::string key = "whoami:session:" + id;
      redisAppendCommand(ctx_.get(), "INCR %b", key.data(), key.size());
      redisAppendCommand(ctx_.get(), "EXPIRE %b %d", key.data(), key.size(), kSessionTtlSeconds);
      redisReply* replies[2] = {nullptr, nullptr};
      bool io_ok = true;
      for (auto& r : replies) {
        void* out = nullptr;
        if (redisGetReply(ctx_.get(), &out) != REDIS_OK) {
          io_ok = false;
          break;
        }
        r = static_cast<redisReply*>(out);
      }
      std::optional<long long> count;
      if (!io_ok) {
        error = std::string("redis ") + where_ + ": " + ctx_->errstr;
        // A connection that Redis closed since the last request (a restart): try a fresh one
        // once. Not after a timeout: the INCR may have been applied.
        bool stale = reused && (ctx_->err == REDIS_ERR_EOF ||
                                std::string_view(ctx_->errstr).find("reset") != std::string::npos ||
                                std::string_view(ctx_->errstr).find("pipe") != std::string::npos);
        ctx_.reset();
        for (auto* r : replies)
          if (r) freeReplyObject(r);
        if (stale) continue;
        break;
      }
      if (replies[0]->type == REDIS_REPLY_INTEGER) {
        count = replies[0]->integer;
      } else {
        error =
            std::string("redis ") + where_ + ": INCR answered " +
            (replies[0]->type == REDIS_REPLY_ERROR ? std::string(replies[0]->str, replies[0]->len)
                                                   : "type " + std::to_string(replies[0]->type));
      }
      for (auto* r : replies)
        freeReplyObject(r);
      if (count && !up_) {
        up_ = true;
        log::info("whoami: session store {} reachable", where_);
      }
      return count;
    }
    last_error_ = error;
    retry_at_ = std::chrono::steady_clock::now() + kRedisRetryAfter;
    if (up_) {
      up_ = false;
      log::warn("whoami: session store unavailable: {}", error);
    }
    return std::nullopt;
  }

  const std::string& where() const { return where_; }

 private:
  SessionStore() = default;

  bool connect(std::string& error) {
    redisContext* c = unix_path_.empty()
                          ? redisConnectWithTimeout(host_.c_str(), port_, kRedisTimeout)
                          : redisConnectUnixWithTimeout(unix_path_.c_str(), kRedisTimeout);
    if (c == nullptr) {
      error = "redis " + where_ + ": out of memory";
      return false;
    }
    Context ctx(c);
    if (c->err) {
      error = std::string("redis ") + where_ + ": " + c->errstr;
      return false;
    }
    if (redisSetTimeout(c, kRedisTimeout) != REDIS_OK) {
      error = std::string("redis ") + where_ + ": cannot set a timeout: " + c->errstr;
      return false;
    }
    ctx_ = std::move(ctx);
    return true;
  }

  struct Free {
    void operator()(redisContext* c) const { redisFree(c); }
  };
  using Context = std::unique_ptr<redisContext, Free>;

  std::string where_, host_, unix_path_;
  uint16_t port_ = 0;
  Context ctx_;
  bool up_ = true;  // as last logged: the first failure is logged
  std::string last_error_;
  std::chrono::steady_clock::time_point retry_at_{};
};

bool is_session_id(std::string_view v) {
  if (v.size() != 32) return false;
  for (char c : v)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// The whoami_session cookie of the request (in any of its Cookie fields), or "".
std::string session_cookie(const server::Request& r) {
  std::string_view value;
  for (const auto& [k, v] : r.headers)
    if (http::iequals(k, "Cookie") && http::find_pair(v, ';', kSessionCookie, value))
      return std::string(value);
  return "";
}

std::string new_session_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return "";
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id += hex[b >> 4];
    id += hex[b & 15];
  }
  return id;
}

server::Response session_response(SessionStore* store, const std::string& name,
                                  const server::Request& r) {
  server::Response resp;
  resp.headers.emplace_back("Cache-Control", "no-store");
  if (store == nullptr) {
    resp.status = 501;
    resp.body = "sessions need a store: start weir whoami with --redis HOST:PORT\n";
    return resp;
  }
  std::string id = session_cookie(r);
  bool fresh = !is_session_id(id);
  if (fresh) {
    id = new_session_id();
    if (id.empty()) {
      resp.status = 500;
      resp.body = "cannot generate a session id\n";
      return resp;
    }
  } else {
    for (char& c : id)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::string error;
  auto visits = store->visit(id, error);
  if (!visits) {
    resp.status = 503;
    resp.body = "session store unavailable: " + error + "\n";
    return resp;
  }
  if (fresh) {
    resp.headers.emplace_back(
        "Set-Cookie", std::string(kSessionCookie) + "=" + id + "; Path=/; HttpOnly; SameSite=Lax");
  }
  resp.body = "visits: " + std::to_string(*visits) + "\nName: " + name + "\nSession: " + id + "\n";
  return resp;
}

}  // namespace

int cmd_whoami(const std::string& listen, const std::string& name, config::Duration delay,
               const std::string& redis) {
  std::string host, err;
  uint16_t port = 0;
  if (!net::split_host_port(listen, host, port)) {
    std::fprintf(stderr, "weir whoami: --listen %s: expected HOST:PORT\n", listen.c_str());
    return 2;
  }
  std::optional<SessionStore> store;
  if (!redis.empty()) {
    store = SessionStore::parse(redis);
    if (!store) {
      std::fprintf(stderr, "weir whoami: --redis %s: expected HOST:PORT or unix:/path\n",
                   redis.c_str());
      return 2;
    }
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
    if (r.path == "/session") return session_response(store ? &*store : nullptr, name, r);
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
  if (store)
    log::info("whoami {} listening on {}, sessions in redis {}", name, addr->to_string(),
              store->where());
  else
    log::info("whoami {} listening on {}", name, addr->to_string());
  reactor.run();
  ::close(sfd);
  return 0;
}

}  // namespace weir::app
