#pragma once
// A small HTTP/1.1 origin server on weir's own reactor and codec, for `weir whoami` and the
// admin listener. Keep-alive, pipelining, 100-continue, bodies of any size streamed (counted,
// and kept up to a small cap), answers possibly delayed, large generated bodies streamed.
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <unordered_set>
#include <vector>

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
  std::string body;  // the first kBodyKeep bytes
  std::string peer;  // "ip:port"
  std::string local; // "ip:port"
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

class HttpServer {
 public:
  HttpServer(Reactor& reactor, int listen_fd, Handler handler);
  ~HttpServer();
  void close_listener();
  size_t open_connections() const { return conns_.size(); }

 private:
  class Acceptor;
  class Conn;
  Reactor& reactor_;
  Handler handler_;
  std::unique_ptr<Acceptor> acceptor_;
  std::unordered_set<Conn*> conns_;
};

}  // namespace weir::server
