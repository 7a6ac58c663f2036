#pragma once
// A small HTTP/1.1 origin server on weir's own reactor and codec, for `weir whoami` and the
// admin listener. Keep-alive, pipelining, 100-continue, bodies of any size streamed (counted,
// and kept up to a small cap), answers possibly delayed, large generated bodies streamed.
// Its connections run on net::Connection, the driver the proxy's connections share; it has a
// header timeout, an idle timeout and a cap on open connections (ServerOptions).
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/clock.hpp"
#include "core/reactor.hpp"
#include "http/parser.hpp"

namespace weir::server {

struct Request {
  std::string method;
  std::string target;
  std::string path;
  std::string query;
  uint8_t version_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;
  uint64_t body_length = 0;
  std::string body;   // the first kBodyKeep bytes
  std::string peer;   // "ip:port"
  std::string local;  // "ip:port"
  bool upgrade = false;
  std::string upgrade_protocol;

  static constexpr size_t kBodyKeep = 4096;
  std::string_view header(std::string_view name) const;
  std::string_view query_param(std::string_view name) const;
};

struct Response {
  uint16_t status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  uint64_t filler_bytes = 0;  // that many more body bytes ('x'), generated while sending
  Millis delay{0};            // answer after this long
  bool close = false;
  // If set, after the head the connection becomes this raw byte handler (WebSocket echo).
  std::function<void(std::string_view in, std::string& out)> upgrade_handler;
};

using Handler = std::function<Response(const Request&)>;

struct ServerOptions {
  // From accept, or from the first byte of a request head, until the whole head is in: a partial
  // head then gets 408 and the connection closes; a connection that sent nothing just closes.
  Millis header_timeout{10000};
  // Between keep-alive requests. Also how long a request body, the reading of an answer or an
  // upgraded connection may stall (no byte moving either way) before the connection closes.
  Millis idle_timeout{60000};
  // Open connections (lingering ones included); at the cap the listener stops accepting, so new
  // connections wait in the kernel's backlog until one closes. 0: no cap.
  size_t max_connections = 1000;
  // At the cap, close the connection that has waited longest for a request head (idle or
  // sending one slowly) to take the new one, instead of leaving it in the backlog: a client
  // holding connections cannot lock others out (the admin listener).
  bool evict_waiting_at_cap = false;
};

class HttpServer {
 public:
  // Takes `listen_fd` (non-blocking, listening) and registers it with `reactor`.
  HttpServer(Reactor& reactor, int listen_fd, Handler handler, ServerOptions options = {});
  // With the reactor not running (stopped, or not yet run): closes and frees every connection.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void close_listener();
  size_t open_connections() const { return conns_.size(); }
  const ServerOptions& options() const { return options_; }

 private:
  class Acceptor;
  class Conn;
  bool at_cap() const;
  bool evict_one();  // evict_waiting_at_cap: true if a connection was closed to make room
  void connection_closed(Conn* c);

  Reactor& reactor_;
  Handler handler_;
  ServerOptions options_;
  // Every connection buffer is one 64 KiB block, big enough for a whole head.
  BufferPool buffers_;
  std::vector<http::Header> scratch_headers_;  // parse_request's storage, for every connection
  std::unique_ptr<Acceptor> acceptor_;
  std::unordered_set<Conn*> conns_;
};

}  // namespace weir::server
