#pragma once
// What every client connection of the proxy shares, whatever it speaks: the driver
// (net::Connection), its place in the worker's list (drain, reload), the listener slot and the
// client's address. HTTP/1.1 (h1_connection), HTTP/2 (h2_connection) and layer 4
// (tcp_connection) derive from it.
#include <sys/socket.h>

#include <string>

#include "core/slab.hpp"
#include "net/connection.hpp"
#include "proxy/client_origin.hpp"
#include "proxy/downstream.hpp"

namespace weir::config {
struct Listener;
}

namespace weir::proxy {

class Worker;

class ClientConn : public net::Connection {
 public:
  ClientConn(Worker& w, int fd, ClientOrigin origin, bool tls);
  // From the worker's slabs (core/slab.hpp), apart from buffer memory.
  static void* operator new(size_t size) { return slab::allocate(size); }
  static void operator delete(void* p, size_t size) { slab::deallocate(p, size); }
  // Registers the socket and starts the protocol.
  virtual void start() = 0;
  // SIGTERM: finish what is in flight, take nothing new.
  virtual void begin_drain() = 0;
  // A new config was installed (HTTP/2 sends GOAWAY so clients reconnect to it).
  virtual void on_new_config() {}
  // Carries a tunnel (tcp mode, an upgraded WebSocket, a WebSocket stream over HTTP/2): a
  // binary upgrade's drain keeps it past drain_timeout, up to limits.tunnel_drain_timeout.
  virtual bool holds_tunnel() const { return false; }

  ClientConn* prev = nullptr;  // Worker's intrusive list
  ClientConn* next = nullptr;

 protected:
  // The socket (and its TLS session) continue in `next` (ALPN h2, the h2c preface): `next`
  // takes this connection's place in the worker's list; this one closes without the socket.
  void hand_over_to(ClientConn* next);
  // The same before anything was read into this connection's buffers (next was made with the
  // fd): `next` registers the socket itself in start().
  void pass_socket_to(ClientConn* next);
  void on_close() override;
  const config::Listener& listener() const;

  Worker& w_;
  ClientInfo client_;

 private:
  bool handed_over_ = false;
};

}  // namespace weir::proxy
