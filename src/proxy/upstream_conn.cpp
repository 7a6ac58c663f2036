#include "proxy/upstream_conn.hpp"

#include "proxy/upstream_h2.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {

UpstreamConn::UpstreamConn(Worker& worker, int fd, uint32_t id) : server_id(id), worker_(worker) {
  stream.fd = fd;
  stream.writable = false;  // until the connect completes
  idle_timer.set_callback([this] { worker_.pool().drop(this); });
}

UpstreamConn::~UpstreamConn() = default;

void UpstreamConn::on_event(uint32_t events) {
  if (closed) return;
  if (owner) {
    owner->on_upstream_event(events);
    return;
  }
  // Idle in the pool: any readable event means the server closed or sent something unasked.
  stream.note_events(events);
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) worker_.pool().drop(this);
}

void UpstreamConn::close() {
  if (closed) return;
  closed = true;
  owner = nullptr;
  h2.reset();  // RST_STREAM unless released already
  idle_timer.clear();
  stream.in.clear();
  stream.out.clear();
  worker_.buffers().release(stream.in);
  worker_.buffers().release(stream.out);
  if (stream.fd >= 0) {
    worker_.reactor().remove(stream.fd);  // before close: see net::Connection::close
    net::close_fd(stream.fd);
  }
  stream.fd = -1;
  worker_.reactor().defer([this] { delete this; });
}

}  // namespace weir::proxy
