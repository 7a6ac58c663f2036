#pragma once
// Thin, error-returning wrappers over the socket calls weir makes.
#include <sys/types.h>
#include <sys/uio.h>

#include <string>

#include "net/address.hpp"

namespace weir::net {

// A non-blocking listening socket with SO_REUSEADDR, TCP_NODELAY (inherited by accepted
// sockets) and, if reuse_port, SO_REUSEPORT.
// Returns the fd or -1 with `error` set ("bind 127.0.0.1:80: Address already in use").
// A listening socket. With `reuse_port`, the first socket of an address (`join` false) binds
// exclusively and then allows SO_REUSEPORT; later ones (`join` true) share its port. An address
// some other process listens on is an error either way ("Address already in use").
// `freebind`: IP_FREEBIND / IPV6_FREEBIND, so that an address not (yet) on this host binds.
int listen_socket(const SocketAddress& addr, bool reuse_port, int backlog, std::string& error,
                  bool join = false, bool freebind = false);

// A non-blocking UDP socket bound to `addr` for QUIC: SO_REUSEPORT as listen_socket does it (the
// first of an address binds alone, `join` adds the others), the destination address of each
// datagram reported (IP_PKTINFO / IPV6_RECVPKTINFO: a wildcard address answers from the address
// the client used), don't-fragment (path MTU probing needs it), and larger socket buffers.
int udp_socket(const SocketAddress& addr, std::string& error, bool join = false,
               bool freebind = false);

// Starts a non-blocking connect. Returns the fd (connect may still be in progress) or -1 with
// errno set.
int connect_nonblocking(const SocketAddress& addr);

// The error of a finished non-blocking connect (SO_ERROR), 0 on success.
int socket_error(int fd);

void set_nodelay(int fd);

// Results of I/O calls: >0 bytes, 0 = EOF (reads), -1 = would block, -2 = error (errno kept).
constexpr ssize_t kWouldBlock = -1;
constexpr ssize_t kIoError = -2;
ssize_t read_some(int fd, char* buf, size_t len);
ssize_t write_some(int fd, const char* buf, size_t len);
ssize_t writev_some(int fd, const iovec* iov, int iovcnt);

// Tries to stop the kernel from keeping unread data around (close with RST when `reset`).
void close_fd(int fd, bool reset = false);

}  // namespace weir::net
