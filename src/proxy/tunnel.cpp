#include "proxy/tunnel.hpp"

#include <sys/socket.h>

#include "net/connection.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

bool move_bytes(Buffer& from, Buffer& to, uint64_t& count) {
  if (from.empty() || to.free_space() == 0) return false;
  size_t n = to.append(from.readable());
  from.consume(n);
  count += n;
  return n > 0;
}

}  // namespace

Tunnel::Tunnel(Worker& w, net::Connection& client, UpstreamConn* up, ServerSlot slot)
    : w_(w), client_(client), up_(up), slot_(std::move(slot)) {
  up_->owner = this;
  w_.buffers().acquire(up_->stream.in);
  w_.buffers().acquire(up_->stream.out);
}

Tunnel::~Tunnel() {
  up_->owner = nullptr;
  up_->close();
  slot_.release(w_);
}

void Tunnel::on_upstream_event(uint32_t events) {
  up_->stream.note_events(events);
  client_.run();
}

bool Tunnel::pump(net::Stream& client) {
  if (finished_) return false;
  auto& us = up_->stream;
  bool progress = us.fill();
  progress |= move_bytes(client.in, us.out, bytes_in_);
  progress |= move_bytes(us.in, client.out, bytes_out_);
  progress |= us.flush();
  if (us.failed || us.write_failed || client.write_failed) {
    finished_ = true;
    return true;
  }
  // A finished direction: forward the end as a half-close once its bytes are out.
  if (client.eof && client.in.empty() && us.out.empty() && !upstream_shut_) {
    ::shutdown(us.fd, SHUT_WR);
    upstream_shut_ = true;
  }
  if (us.eof && us.in.empty() && client.out.empty() && !client_shut_) {
    ::shutdown(client.fd, SHUT_WR);
    client_shut_ = true;
  }
  if (upstream_shut_ && client_shut_) finished_ = true;
  return progress;
}

}  // namespace weir::proxy
