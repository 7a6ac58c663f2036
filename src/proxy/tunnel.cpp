// After a 101 Switching Protocols: bytes flow both ways unchanged until both sides finish.
// Each direction half-closes the other side when its source ends.
#include <sys/socket.h>

#include "proxy/client_conn.hpp"
#include "proxy/upstream_conn.hpp"

namespace weir::proxy {
namespace {

bool move_bytes(Buffer& from, Buffer& to) {
  if (from.empty() || to.free_space() == 0) return false;
  size_t n = to.append(from.readable());
  from.consume(n);
  return n > 0;
}

}  // namespace

bool ClientConn::pump_tunnel() {
  if (!up_) {
    close();
    return true;
  }
  auto& us = up_->stream;
  bool progress = us.fill();
  progress |= move_bytes(client_.in, us.out);
  progress |= move_bytes(us.in, client_.out);
  progress |= us.flush();
  if (us.failed || us.write_failed || client_.write_failed) {
    close();
    return true;
  }
  // A finished direction: forward the end as a half-close once its bytes are out.
  if (client_.eof && client_.in.empty() && us.out.empty() && !up_shut_wr_) {
    ::shutdown(us.fd, SHUT_WR);
    up_shut_wr_ = true;
  }
  if (us.eof && us.in.empty() && client_.out.empty() && !shut_wr_) {
    ::shutdown(client_.fd, SHUT_WR);
    shut_wr_ = true;
  }
  if (up_shut_wr_ && shut_wr_) {
    close();
    return true;
  }
  if (progress) {
    arm(TimerKind::Tunnel, listener_cfg().timeouts.idle);
  }
  return progress;
}

}  // namespace weir::proxy
