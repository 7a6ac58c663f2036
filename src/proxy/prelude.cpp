#include "proxy/prelude.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>

#include "core/log.hpp"
#include "net/client_hello.hpp"
#include "net/proxy_protocol.hpp"
#include "proxy/admission.hpp"
#include "proxy/h1_connection.hpp"
#include "proxy/router.hpp"
#include "proxy/tcp_connection.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

constexpr size_t kMaxProxyHeader = 16 + 2048;
constexpr size_t kMaxHello = 64 * 1024;

bool routes_by_sni(const config::Listener& l) {
  if (l.mode != config::ListenerMode::Tcp) return false;
  for (const auto& r : l.routes)
    if (!r.match.sni.empty()) return true;
  return false;
}

}  // namespace

bool needs_prelude(const config::Listener& l) {
  return l.proxy_protocol || routes_by_sni(l);
}

Prelude::Prelude(Worker& w, int fd, ClientOrigin origin)
    : ClientConn(w, fd, std::move(origin), false) {
  stage_ = listener().proxy_protocol ? Stage::ProxyHeader : Stage::Hello;
}

void Prelude::start() {
  w_.reactor().add(io_.fd, this);
  arm_timer(listener().timeouts.header);
  if (stage_ == Stage::Hello) {
    // No PROXY header: the listener's own admission, as for any accepted connection.
    if (admit_connection(w_, w_.listener_runtime(client_.origin.slot), client_.origin) !=
        Refusal::None) {
      close();
      return;
    }
  }
  step();
}

void Prelude::on_event(uint32_t events) {
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) peer_done_ = true;
  step();
}

void Prelude::on_timeout() {
  if (stage_ == Stage::ProxyHeader) {
    refuse_proxy_header("no complete PROXY protocol header in time");
    return;
  }
  // A tcp client that sent no (complete) ClientHello in time: the catch-all, if there is one.
  client_.origin.extra().tcp_route = find_tcp_route(listener().routes, "");
  if (client_.origin.tcp_route() < 0) {
    close();
    return;
  }
  take_over();
}

void Prelude::refuse_proxy_header(std::string_view why) {
  count_refusal(w_, listener(), Refusal::ProxyProtocol);
  log::debug("client {}: {}: closed", client_.ip, why);
  close();
}

void Prelude::step() {
  if (closing()) return;
  static thread_local char buf[kMaxHello];
  while (true) {
    size_t want = stage_ == Stage::ProxyHeader ? kMaxProxyHeader : kMaxHello;
    ssize_t n = ::recv(io_.fd, buf, want, MSG_PEEK);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!peer_done_) return;
        n = 0;
      } else {
        n = -1;
      }
    }
    std::string_view in(buf, n > 0 ? static_cast<size_t>(n) : 0);
    bool ended = n <= 0 || peer_done_;  // nothing more will come than what is here
    if (stage_ == Stage::ProxyHeader) {
      net::proxy_protocol::Header h;
      auto st = net::proxy_protocol::parse(in, h, kMaxProxyHeader);
      if (st == net::proxy_protocol::Status::NeedMore) {
        if (ended && in.empty()) {
          close();  // connected and went away (a port probe): nothing was refused
        } else if (ended) {
          refuse_proxy_header("truncated PROXY protocol header");
        }
        return;
      }
      if (st == net::proxy_protocol::Status::Invalid) {
        refuse_proxy_header(h.error);
        return;
      }
      // Consume exactly the header: what follows belongs to the next protocol.
      size_t taken = 0;
      while (taken < h.length) {
        ssize_t r = ::recv(io_.fd, buf, h.length - taken, 0);
        if (r <= 0) {
          if (r < 0 && errno == EINTR) continue;
          close();
          return;
        }
        taken += static_cast<size_t>(r);
      }
      if (!h.local) {
        client_.origin.addr = net::PeerAddress::from(h.source);
        client_.origin.extra().local = net::PeerAddress::from(h.destination);
        client_.ip = net::peer_ip(h.source.storage);
      }
      const model::ListenerRuntime& lr = w_.listener_runtime(client_.origin.slot);
      if (admit_connection(w_, lr, client_.origin) != Refusal::None &&
          lr.cfg->mode == config::ListenerMode::Tcp) {
        close();
        return;
      }
      if (!routes_by_sni(*lr.cfg)) {
        take_over();
        return;
      }
      stage_ = Stage::Hello;
      continue;
    }
    std::string sni;
    auto st = net::read_client_hello_sni(in, sni, kMaxHello);
    if (st == net::HelloStatus::NeedMore && !ended) return;
    if (in.empty() && ended) {
      close();  // connected and went away (a port probe)
      return;
    }
    if (st != net::HelloStatus::Done) sni.clear();  // not TLS, broken or cut: the catch-all
    client_.origin.extra().tcp_route = find_tcp_route(listener().routes, sni);
    if (client_.origin.tcp_route() < 0) {
      log::debug("client {}: no tcp route for server name \"{}\": closed", client_.ip, sni);
      close();
      return;
    }
    take_over();
    return;
  }
}

void Prelude::take_over() {
  cancel_timer();
  ClientConn* next;
  if (listener().mode == config::ListenerMode::Tcp) {
    next = new TcpConnection(w_, io_.fd, std::move(client_.origin));
  } else {
    next = new H1Connection(w_, io_.fd, std::move(client_.origin));
  }
  pass_socket_to(next);
}

}  // namespace weir::proxy
