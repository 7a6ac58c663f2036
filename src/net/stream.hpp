#pragma once
// One side of a proxied connection: the socket, its read and write buffers, and the readiness
// the edge-triggered reactor last reported. The transport seam sits here: a null `transport`
// is plain TCP; TLS (a later issue) plugs in as a Transport that reads/writes through OpenSSL.
#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <string_view>

#include "core/buffer.hpp"
#include "net/socket.hpp"

namespace weir::net {

class Transport {
 public:
  virtual ~Transport() = default;
  // Same conventions as read_some/write_some: >0 bytes, 0 EOF, kWouldBlock, kIoError.
  virtual ssize_t read(int fd, char* buf, size_t len) = 0;
  virtual ssize_t write(int fd, const char* buf, size_t len) = 0;
  // After a read that returned fewer bytes than asked: true if the socket is drained, so the
  // next bytes come with a readiness edge (TLS may hold decrypted bytes or unread records).
  virtual bool drained() const = 0;
  // The reactor reported input readiness (Stream::note_events): bytes may have arrived since
  // the transport last read the socket.
  void note_input_edge() { input_edge_ = true; }
  // TLS: a read may need the socket writable and a write may need it readable (handshake):
  // any readiness edge means "try both again".
  virtual bool needs_write_for_read() const { return false; }
  // Best-effort orderly close (TLS close_notify) before the socket is closed.
  virtual void shutdown(int /*fd*/) {}
  // TLS: whether the handshake has finished, the ALPN protocol it chose, and why the last
  // kIoError happened. A plain transport has nothing to negotiate.
  virtual bool handshake_done() const { return true; }
  virtual std::string_view alpn() const { return {}; }
  // The protocol version ("TLSv1.3"), "" for plain TCP. A static string.
  virtual std::string_view version() const { return {}; }
  virtual std::string_view last_error() const { return {}; }

 protected:
  // An input edge came after the transport's last read of the socket (the transport clears it
  // when it reads the socket). A transport that serves reads from its own buffer (TLS: records
  // that came in with an earlier recv) must then not call the socket drained on the word of
  // that earlier recv: the edge of the bytes that came since is spent, no other will follow.
  bool input_edge_ = false;
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
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      readable = true;
      if (transport) transport->note_input_edge();
    }
    // TLS: a read may wait for the socket to be writable and a write for it to be readable
    // (handshake): any edge lets both directions try again.
    if (transport && transport->needs_write_for_read()) readable = writable = true;
    if (ev & (EPOLLRDHUP | EPOLLHUP)) peer_closed = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) writable = true;
  }

  // Reads once into `in` if the socket may have data and there is room, at most `max` bytes.
  // Returns true if something changed (bytes arrived, EOF or an error).
  bool fill(size_t max = SIZE_MAX);
  // Writes what `out` holds while the socket takes it. Returns true if bytes left.
  bool flush();
  bool has_pending_output() const { return !out.empty(); }
  // Writes bytes that bypass `out` (which must be empty); same result conventions as
  // write_some, and the readiness/failure flags are kept up to date.
  ssize_t write_direct(const char* data, size_t len);
  // Reads into the caller's memory, bypassing `in` (which must be empty); same conventions and
  // flag upkeep as fill().
  ssize_t read_direct(char* data, size_t len);
};

}  // namespace weir::net
