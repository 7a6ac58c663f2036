#pragma once
// Bytes both ways, unchanged, between a client connection and a server connection: after a
// 101 Switching Protocols (WebSocket) and for every layer-4 (tcp mode) connection. Each
// direction half-closes the other side when its source ends; the tunnel is over when both
// have, or when either side fails. It holds the server's in-flight slot until then, so
// least-connections balancing sees long-lived tunnels.
#include "proxy/downstream.hpp"
#include "proxy/upstream_conn.hpp"

namespace weir::net {
class Connection;
struct Stream;
}  // namespace weir::net

namespace weir::proxy {

class Tunnel final : public UpstreamOwner {
 public:
  // `client` is the connection whose socket is the client side; it runs again on server events.
  Tunnel(Worker& w, net::Connection& client, UpstreamConn* up, ServerSlot slot);
  ~Tunnel() override;  // closes the server connection, gives the slot back
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // Moves what both sides have; returns true if anything moved.
  bool pump(net::Stream& client);
  bool finished() const { return finished_; }
  uint64_t bytes_in() const { return bytes_in_; }    // from the client
  uint64_t bytes_out() const { return bytes_out_; }  // to the client
  const ServerSlot& slot() const { return slot_; }
  void on_upstream_event(uint32_t events) override;

 private:
  Worker& w_;
  net::Connection& client_;
  UpstreamConn* up_;
  ServerSlot slot_;
  bool client_shut_ = false;    // we half-closed the client
  bool upstream_shut_ = false;  // we half-closed the server
  bool finished_ = false;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
};

}  // namespace weir::proxy
