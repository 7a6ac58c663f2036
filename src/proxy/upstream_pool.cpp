#include "proxy/upstream_pool.hpp"

#include "proxy/upstream_conn.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {

UpstreamPool::~UpstreamPool() {
  close_all();
}

UpstreamConn* UpstreamPool::take(uint32_t server_id) {
  if (server_id >= lists_.size()) return nullptr;
  UpstreamConn* c = lists_[server_id].head;
  if (!c) return nullptr;
  unlink(c);
  c->idle_timer.clear();
  c->reused = true;
  c->stream.readable = false;
  c->stream.writable = true;  // a write will tell; the socket had room when it went idle
  return c;
}

void UpstreamPool::put(UpstreamConn* c) {
  if (c->server_id >= lists_.size()) lists_.resize(c->server_id + 1);
  List& l = lists_[c->server_id];
  if (l.size >= max_idle_ || worker_.draining()) {
    c->close();
    return;
  }
  c->owner = nullptr;
  c->pool_prev = nullptr;
  c->pool_next = l.head;
  if (l.head) l.head->pool_prev = c;
  l.head = c;
  ++l.size;
  // Idle connections keep no buffers.
  worker_.buffers().release(c->stream.in);
  worker_.buffers().release(c->stream.out);
  c->idle_timer.set(worker_.reactor().timers(), worker_.reactor().now() + idle_timeout_);
}

void UpstreamPool::drop(UpstreamConn* c) {
  unlink(c);
  c->close();
}

void UpstreamPool::unlink(UpstreamConn* c) {
  List& l = lists_[c->server_id];
  if (c->pool_prev)
    c->pool_prev->pool_next = c->pool_next;
  else
    l.head = c->pool_next;
  if (c->pool_next) c->pool_next->pool_prev = c->pool_prev;
  c->pool_prev = c->pool_next = nullptr;
  --l.size;
}

void UpstreamPool::close_all() {
  for (auto& l : lists_) {
    while (l.head)
      drop(l.head);
  }
}

size_t UpstreamPool::idle_count() const {
  size_t n = 0;
  for (const auto& l : lists_)
    n += l.size;
  return n;
}

}  // namespace weir::proxy
