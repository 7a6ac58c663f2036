#include "net/socket.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace weir::net {

int listen_socket(const SocketAddress& addr, bool reuse_port, int backlog, std::string& error,
                  bool join, bool freebind) {
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = "socket: " + std::string(strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // The first socket of an address binds without SO_REUSEPORT, so that an address another
  // process listens on (with SO_REUSEPORT or not) is refused instead of silently shared; it
  // turns SO_REUSEPORT on before listen() so that this process's other sockets can join.
  if (reuse_port && join) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  // Accepted sockets inherit TCP_NODELAY from the listener: one setsockopt here instead of one
  // per connection.
  set_nodelay(fd);
  if (addr.family() == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (freebind) {
    int r = addr.family() == AF_INET6
                ? setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one)
                : setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
    if (r != 0) {
      error = "IP_FREEBIND " + addr.to_string() + ": " + strerror(errno);
      ::close(fd);
      return -1;
    }
  }
  if (::bind(fd, addr.sa(), addr.len) != 0) {
    error = "bind " + addr.to_string() + ": " + strerror(errno);
    ::close(fd);
    return -1;
  }
  if (reuse_port && !join && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    error = "SO_REUSEPORT " + addr.to_string() + ": " + strerror(errno);
    ::close(fd);
    return -1;
  }
  if (::listen(fd, backlog) != 0) {
    error = "listen " + addr.to_string() + ": " + strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

int udp_socket(const SocketAddress& addr, std::string& error, bool join, bool freebind) {
  int fd = ::socket(addr.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = "socket: " + std::string(strerror(errno));
    return -1;
  }
  int one = 1;
  auto fail = [&](const char* what) {
    error = std::string(what) + " " + addr.to_string() + ": " + strerror(errno);
    ::close(fd);
    return -1;
  };
  if (!join) {
    // An address another process uses is refused, not shared: a probe binds it alone first
    // (a UDP socket joins a SO_REUSEPORT group only if the option is set before bind).
    int probe = ::socket(addr.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
      if (addr.family() == AF_INET6) setsockopt(probe, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      if (freebind) {
        addr.family() == AF_INET6
            ? setsockopt(probe, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one)
            : setsockopt(probe, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
      }
      int r = ::bind(probe, addr.sa(), addr.len);
      int e = errno;
      ::close(probe);
      if (r != 0) {
        errno = e;
        return fail("bind (UDP)");
      }
    }
  }
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    return fail("SO_REUSEPORT (UDP)");
  if (addr.family() == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) != 0)
      return fail("IPV6_RECVPKTINFO");
    int pmtu = IPV6_PMTUDISC_PROBE;
    setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu);
  } else {
    if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) != 0) return fail("IP_PKTINFO");
    int pmtu = IP_PMTUDISC_PROBE;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
  }
  int bufsize = 4 * 1024 * 1024;  // capped by net.core.[rw]mem_max
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
  if (freebind) {
    int r = addr.family() == AF_INET6
                ? setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one)
                : setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
    if (r != 0) return fail("IP_FREEBIND");
  }
  if (::bind(fd, addr.sa(), addr.len) != 0) return fail("bind (UDP)");
  return fd;
}

int connect_nonblocking(const SocketAddress& addr) {
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  set_nodelay(fd);
  if (::connect(fd, addr.sa(), addr.len) != 0 && errno != EINPROGRESS) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

ssize_t read_some(int fd, char* buf, size_t len) {
  for (;;) {
    ssize_t n = ::recv(fd, buf, len, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kWouldBlock;
    return kIoError;
  }
}

ssize_t write_some(int fd, const char* buf, size_t len) {
  for (;;) {
    ssize_t n = ::send(fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kWouldBlock;
    return kIoError;
  }
}

ssize_t writev_some(int fd, const iovec* iov, int iovcnt) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(iovcnt);
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kWouldBlock;
    return kIoError;
  }
}

void close_fd(int fd, bool reset) {
  if (fd < 0) return;
  if (reset) {
    linger l{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  ::close(fd);
}

}  // namespace weir::net
