#include "proxy/client_conn.hpp"

#include "proxy/worker.hpp"

namespace weir::proxy {

ClientConn::ClientConn(Worker& w, int fd, ClientOrigin origin, bool tls)
    : net::Connection(w.reactor(), w.buffers(), fd), w_(w) {
  client_.origin = std::move(origin);
  client_.ip = net::peer_ip(client_.origin.addr.full().storage);
  client_.tls = tls;
}

const config::Listener& ClientConn::listener() const {
  const WorkerView& v = *w_.view();
  return *v.snap->listeners[v.slot_listener[client_.origin.slot]].cfg;
}

void ClientConn::hand_over_to(ClientConn* next) {
  w_.replace_connection(this, next);
  handed_over_ = true;
  next->client_.tls_version = client_.tls_version;
  next->io_.fd = io_.fd;
  next->io_.transport = std::move(io_.transport);
  next->io_.readable = io_.readable;
  next->io_.writable = io_.writable;
  next->io_.peer_closed = io_.peer_closed;
  next->io_.eof = io_.eof;
  // Buffered bytes move too (the start of the HTTP/2 preface, or frames after the handshake).
  w_.buffers().acquire(next->io_.in);
  next->io_.in.append(io_.in.readable());
  io_.in.clear();
  io_.fd = -1;
  w_.reactor().modify(next->io_.fd, next, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
  close();
  next->start();
}

void ClientConn::pass_socket_to(ClientConn* next) {
  w_.replace_connection(this, next);
  handed_over_ = true;
  w_.reactor().remove(io_.fd);
  io_.fd = -1;
  close();
  next->start();
}

void ClientConn::on_close() {
  if (handed_over_) return;
  if (client_.origin.extras) client_.origin.extras->hold.release();
  w_.connection_closed(this, client_.origin.slot);
}

}  // namespace weir::proxy
