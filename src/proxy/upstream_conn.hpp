#pragma once
// A connection to one server. Owned by the worker's pool while idle, attached to one
// exchange or tunnel (its `owner`) while a request uses it; events go to whoever holds it.
#include <cstdint>
#include <memory>

#include "core/reactor.hpp"
#include "core/timer.hpp"
#include "net/address.hpp"
#include "net/stream.hpp"

namespace weir::proxy {

class Worker;
class H2Channel;

// Whoever uses an upstream connection gets its events: an exchange, or a tunnel.
class UpstreamOwner {
 public:
  virtual ~UpstreamOwner() = default;
  virtual void on_upstream_event(uint32_t events) = 0;
};

class UpstreamConn final : public EventHandler {
 public:
  // fd -1 with `h2` set: one stream of a pooled HTTP/2 connection (upstream_h2.hpp).
  UpstreamConn(Worker& worker, int fd, uint32_t server_id);
  ~UpstreamConn() override;

  void on_event(uint32_t events) override;
  // Closes the socket and schedules deletion after the current event batch.
  void close();

  net::Stream stream;
  uint32_t server_id;
  UpstreamOwner* owner = nullptr;
  bool connecting = true;
  bool reused = false;
  bool closed = false;
  std::unique_ptr<H2Channel> h2;      // HTTP/2: the stream behind this socketless connection
  LazyTimer idle_timer;               // set while pooled (moves without heap work)
  UpstreamConn* pool_prev = nullptr;  // intrusive idle list of the pool
  UpstreamConn* pool_next = nullptr;

 private:
  Worker& worker_;
};

}  // namespace weir::proxy
