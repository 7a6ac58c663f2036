#pragma once
// One side of a proxied connection: the socket, its read and write buffers, and the readiness
// the edge-triggered reactor last reported. The transport seam sits here: a null `transport`
// is plain TCP; TLS (a later issue) plugs in as a Transport that reads/writes through OpenSSL.
#include <sys/epoll.h>

#include <memory>

#include "core/buffer.hpp"
#include "net/socket.hpp"

namespace weir::net {

class Transport {
 public:
  virtual ~Transport() = default;
  // Same conventions as read_some/write_some: >0 bytes, 0 EOF, kWouldBlock, kIoError.
  virtual ssize_t read(int fd, char* buf, size_t len) = 0;
  virtual ssize_t write(int fd, const char* buf, size_t len) = 0;
};

struct Stream {
  int fd = -1;
  Buffer in;
  Buffer out;
  bool readable = false;      // the kernel may have bytes for us
  bool writable = true;       // the last write did not hit EAGAIN
  bool eof = false;           // the peer finished sending
  bool failed = false;        // a read error (reset)
  bool write_failed = false;  // a write error (the peer is gone or reset)
  int error = 0;              // errno of the failure
  std::unique_ptr<Transport> transport;

  bool peer_closed = false;  // EPOLLRDHUP/HUP seen: read on until EOF even after short reads

  void note_events(uint32_t ev) {
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable = true;
    if (ev & (EPOLLRDHUP | EPOLLHUP)) peer_closed = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) writable = true;
  }

  // Reads once into `in` if the socket may have data and there is room.
  // Returns true if something changed (bytes arrived, EOF or an error).
  bool fill();
  // Writes what `out` holds while the socket takes it. Returns true if bytes left.
  bool flush();
  bool has_pending_output() const { return !out.empty(); }
  // Writes bytes that bypass `out` (which must be empty); same result conventions as
  // write_some, and the readiness/failure flags are kept up to date.
  ssize_t write_direct(const char* data, size_t len);
};

}  // namespace weir::net
