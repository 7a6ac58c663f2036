#include "proxy/tcp_connection.hpp"

#include <ctime>

#include "proxy/access_log.hpp"
#include "proxy/exchange.hpp"
#include "proxy/router.hpp"
#include "proxy/tunnel.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {

TcpConnection::TcpConnection(Worker& w, int fd, ClientOrigin origin)
    : ClientConn(w, fd, std::move(origin), false) {
  client_.proto = ClientProto::Tcp;
}

TcpConnection::~TcpConnection() = default;

void TcpConnection::start() {
  started_ = w_.reactor().now();
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  started_ms_ = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
  w_.reactor().add(io_.fd, this);
  const auto& routes = listener().routes;
  // The route chosen by SNI (Prelude), else the catch-all.
  int route =
      client_.origin.tcp_route() >= 0 ? client_.origin.tcp_route() : find_tcp_route(routes, "");
  if (route < 0) {
    close();
    return;
  }
  ex_ = w_.exchanges().take();
  ex_->start_tcp(*this, BackendId(routes[static_cast<size_t>(route)].backend_index));
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

// One line per tcp connection that reached a server (one that did not is the exchange's line).
void TcpConnection::write_access_log() {
  AccessLogProducer* al = w_.access_log();
  const model::ListenerRuntime& lr = w_.listener_runtime(client_.origin.slot);
  if (!al || lr.log_destination < 0) return;
  AccessRecord r;
  r.time_unix_ms = started_ms_;
  r.listener = lr.cfg->name;
  std::string client = client_.origin.addr.to_string();
  r.client = client;
  r.proto = "tcp";
  r.bytes_in = tunnel_->bytes_in();
  r.bytes_out = tunnel_->bytes_out();
  r.duration_ms =
      std::chrono::duration<double, std::milli>(w_.reactor().refresh_now() - started_).count();
  const ServerSlot& s = tunnel_->slot();
  if (s.view && s.backend.valid()) {
    const auto& b = s.view->snap->backend(s.backend);
    r.backend = b.cfg->name;
    if (s.server.valid()) r.server = b.server(s.server).name;
  }
  r.termination = Termination::Ok;
  al->log(lr.log_destination, lr.log_combined ? LogFormat::Combined : LogFormat::Json, r);
}

void TcpConnection::on_close() {
  if (ex_) {
    ex_->cancel();
    w_.exchanges().give_back_later(ex_);
    ex_ = nullptr;
  }
  if (tunnel_) write_access_log();
  tunnel_.reset();
  ClientConn::on_close();
}

}  // namespace weir::proxy
