#include "proxy/client_conn.hpp"

#include "proxy/worker.hpp"

namespace weir::proxy {

ClientConn::ClientConn(Worker& w, int fd, ClientOrigin origin, bool tls)
    : net::Connection(w.reactor(), w.buffers(), fd),
      w_(w),
      origin_(std::move(origin)),
      ip_(net::peer_ip(origin_.addr.storage)),
      address_(origin_.addr.to_string()) {
  client_.ip = ip_;
  client_.address = address_;
  client_.addr = &origin_.addr;
  client_.local = &origin_.local;
  client_.slot = origin_.slot;
  client_.tls = tls;
  client_.proto = "HTTP/1.1";
}

const config::Listener& ClientConn::listener() const {
  const WorkerView& v = *w_.view();
  return *v.snap->listeners[v.slot_listener[client_.slot]].cfg;
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
  origin_.hold.release();
  w_.connection_closed(this, client_.slot);
}

}  // namespace weir::proxy
