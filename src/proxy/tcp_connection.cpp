#include "proxy/tcp_connection.hpp"

#include "proxy/exchange.hpp"
#include "proxy/tunnel.hpp"

namespace weir::proxy {

TcpConnection::TcpConnection(Worker& w, int fd, std::string ip, size_t slot)
    : ClientConn(w, fd, std::move(ip), slot, false) {}

TcpConnection::~TcpConnection() = default;

void TcpConnection::start() {
  w_.reactor().add(io_.fd, this);
  const auto& routes = listener().routes;
  ex_ = w_.exchanges().take();
  ex_->start_tcp(*this, BackendId(routes.front().backend_index));
  run();
}

bool TcpConnection::turn() {
  // Connecting: what the client sends waits for the server (a half-close too).
  if (!tunnel_) return false;
  bool progress = tunnel_->pump(io_);
  if (tunnel_->finished()) {
    close();
    return true;
  }
  if (progress) arm_timer(listener().timeouts.idle);
  return progress;
}

bool TcpConnection::upgrade(UpstreamConn* up, ServerSlot& slot) {
  tunnel_ = std::make_unique<Tunnel>(w_, *this, up, std::move(slot));
  arm_timer(listener().timeouts.idle);
  return true;
}

void TcpConnection::exchange_done(bool response_complete, bool) {
  w_.exchanges().give_back_later(ex_);
  ex_ = nullptr;
  if (!response_complete) {
    close();  // no server could be reached: layer 4 can only say so by closing
    return;
  }
  schedule_turn();  // bytes may wait on both sides already
}

void TcpConnection::on_close() {
  if (ex_) {
    ex_->cancel();
    w_.exchanges().give_back_later(ex_);
    ex_ = nullptr;
  }
  tunnel_.reset();
  ClientConn::on_close();
}

}  // namespace weir::proxy
