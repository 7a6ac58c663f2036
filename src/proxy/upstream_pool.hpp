#pragma once
// Per-worker keep-alive pools, one per server id: idle connections, most recently used first,
// at most `max_idle` each, each closed after `idle_timeout` or when the server closes it.
#include <cstdint>
#include <vector>

#include "core/clock.hpp"

namespace weir::proxy {

class UpstreamConn;
class Worker;

class UpstreamPool {
 public:
  explicit UpstreamPool(Worker& w) : worker_(w) {}
  ~UpstreamPool();
  void set_limits(uint32_t max_idle, Millis idle_timeout) {
    max_idle_ = max_idle;
    idle_timeout_ = idle_timeout;
  }
  // An idle connection to this server, detached from the pool, or null.
  UpstreamConn* take(uint32_t server_id);
  // Returns a healthy idle connection to the pool (or closes it when the pool is full).
  void put(UpstreamConn* c);
  // Called by a pooled connection that saw an event (the server closed) or timed out.
  void drop(UpstreamConn* c);
  void close_all();
  size_t idle_count() const;

 private:
  struct List {
    UpstreamConn* head = nullptr;
    uint32_t size = 0;
  };
  void unlink(UpstreamConn* c);
  Worker& worker_;
  std::vector<List> lists_;
  uint32_t max_idle_ = 64;
  Millis idle_timeout_{30000};
};

}  // namespace weir::proxy
