#include "net/stream.hpp"

#include <cerrno>

namespace weir::net {

bool Stream::fill(size_t max) {
  if (!readable || eof || failed || in.free_space() == 0) return false;
  auto room = in.writable();
  if (room.size() > max) room = room.first(max);
  ssize_t n = transport ? transport->read(fd, room.data(), room.size())
                        : read_some(fd, room.data(), room.size());
  if (n > 0) {
    in.commit(static_cast<size_t>(n));
    // A short read drained the socket: edge-triggered epoll reports the next arrival. But the
    // peer's FIN may have come with these bytes, and its edge is spent: then read on to EOF.
    if (static_cast<size_t>(n) < room.size() && !peer_closed &&
        (!transport || transport->drained()))
      readable = false;
    return true;
  }
  readable = false;
  if (n == 0) {
    eof = true;
    return true;
  }
  if (n == kIoError) {
    failed = true;
    error = errno;
    return true;
  }
  return false;
}

ssize_t Stream::read_direct(char* data, size_t len) {
  if (!readable || eof || failed || len == 0) return kWouldBlock;
  ssize_t n = transport ? transport->read(fd, data, len) : read_some(fd, data, len);
  if (n > 0) {
    if (static_cast<size_t>(n) < len && !peer_closed && (!transport || transport->drained()))
      readable = false;
    return n;
  }
  readable = false;
  if (n == 0) {
    eof = true;
  } else if (n == kIoError) {
    failed = true;
    error = errno;
  }
  return n;
}

ssize_t Stream::write_direct(const char* data, size_t len) {
  ssize_t n = transport ? transport->write(fd, data, len) : write_some(fd, data, len);
  if (n == kWouldBlock) {
    writable = false;
  } else if (n < 0) {
    write_failed = true;
    error = errno;
  } else if (static_cast<size_t>(n) < len) {
    writable = false;
  }
  return n;
}

bool Stream::flush() {
  bool wrote = false;
  while (writable && !out.empty() && !write_failed) {
    auto data = out.readable();
    ssize_t n = transport ? transport->write(fd, data.data(), data.size())
                          : write_some(fd, data.data(), data.size());
    if (n > 0) {
      out.consume(static_cast<size_t>(n));
      wrote = true;
      if (static_cast<size_t>(n) < data.size()) writable = false;
    } else if (n == kWouldBlock) {
      writable = false;
    } else {
      write_failed = true;
      error = errno;
      wrote = true;
    }
  }
  return wrote;
}

}  // namespace weir::net
