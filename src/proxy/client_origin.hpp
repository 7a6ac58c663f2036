#pragma once
// Who a client connection belongs to, decided when it is accepted (or when its PROXY protocol
// header names the real client) and carried by the connection object that serves it, through
// hand-overs (PROXY header → HTTP/1.1 → HTTP/2).
#include <cstdint>
#include <memory>
#include <string>

#include "net/address.hpp"

namespace weir::model {
class ClientTable;
}

namespace weir::proxy {

// The client's place in its listener's `client_limits.max_connections`: given back exactly
// once, when the connection that holds it closes (or never, if it was not counted).
class ConnectionHold {
 public:
  ConnectionHold() = default;
  ConnectionHold(std::shared_ptr<model::ClientTable> table, uint32_t slot)
      : table_(std::move(table)), slot_(slot) {}
  ConnectionHold(ConnectionHold&& o) noexcept : table_(std::move(o.table_)), slot_(o.slot_) {}
  ConnectionHold& operator=(ConnectionHold&& o) noexcept {
    if (this != &o) {
      release();
      table_ = std::move(o.table_);
      slot_ = o.slot_;
    }
    return *this;
  }
  ~ConnectionHold() { release(); }
  void release();  // admission.cpp

 private:
  std::shared_ptr<model::ClientTable> table_;
  uint32_t slot_ = 0;
};

// What few connections need, out of line so an idle connection stays small.
struct OriginExtras {
  net::PeerAddress local;  // the address it connected to (a PROXY header sent upstream names it)
  ConnectionHold hold;     // its place in client_limits.max_connections
  int32_t tcp_route = -1;  // tcp mode: the route chosen by SNI (-1: the catch-all, if any)
  // An http connection refused on accept: answer this (403 or 429) and close, reading nothing.
  uint16_t refuse = 0;
  uint16_t retry_after = 0;  // seconds, with 429
};

struct ClientOrigin {
  net::PeerAddress addr;                 // the client (after a PROXY header: the one it names)
  uint32_t slot = 0;                     // the listen socket slot
  std::unique_ptr<OriginExtras> extras;  // null for most connections

  OriginExtras& extra() {
    if (!extras) extras = std::make_unique<OriginExtras>();
    return *extras;
  }
  uint16_t refuse() const { return extras ? extras->refuse : 0; }
  int32_t tcp_route() const { return extras ? extras->tcp_route : -1; }
  // Null when not known (no backend sends PROXY headers and none came in).
  const net::PeerAddress* local() const {
    return extras && extras->local.family() != AF_UNSPEC ? &extras->local : nullptr;
  }
};

// 127.0.0.1:40000 on slot 0: for tests and fuzz drivers that make connections by hand.
inline ClientOrigin loopback_client() {
  ClientOrigin o;
  o.addr = net::PeerAddress::from(*net::parse_numeric("127.0.0.1", 40000));
  return o;
}

}  // namespace weir::proxy
