#pragma once
// What must be read before a client connection knows who it is from or where it goes:
//   - its PROXY protocol header (`proxy_protocol: true`): the client address it names is the
//     one access lists, limits, hashing, X-Forwarded-For and logs see;
//   - on a tcp listener with `sni` routes, its TLS ClientHello's server name (not decrypted).
// Both are read with MSG_PEEK, so the bytes after a PROXY header (a TLS handshake, a request)
// stay in the socket for the connection that takes over, which reads them itself; only the
// PROXY header's own bytes are then consumed. The wait is bounded by the listener's header
// timeout and the size by the parsers' limits (16 + 2048 bytes of PROXY v2; 64 KiB of hello).
// A missing or malformed PROXY header closes the connection, counted as refused
// (reason proxy_protocol); nothing reaches a backend.
#include "proxy/client_conn.hpp"

namespace weir::proxy {

bool needs_prelude(const config::Listener& l);

class Prelude final : public ClientConn {
 public:
  Prelude(Worker& w, int fd, ClientOrigin origin);
  void start() override;
  void begin_drain() override { close(); }
  void on_event(uint32_t events) override;

 protected:
  bool turn() override { return false; }
  void on_timeout() override;

 private:
  enum class Stage : uint8_t { ProxyHeader, Hello };
  void step();
  void refuse_proxy_header(std::string_view why);
  void take_over();  // the real connection continues on the socket
  Stage stage_ = Stage::ProxyHeader;
  bool peer_done_ = false;  // EOF/RDHUP seen: no more bytes will come
};

}  // namespace weir::proxy
