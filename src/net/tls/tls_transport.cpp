// TlsTransport: a TLS session over a non-blocking socket, through a BIO of our own that calls
// recv/send on the fd of the current call (no SIGPIPE) and remembers whether the socket drained.
#include <openssl/err.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "net/tls/internal.hpp"
#include "net/tls/tls.hpp"

namespace weir::net::tls {

// The BIO's data is the TlsTransport that owns the SSL (which owns the BIO): the fd is the one
// given to the current read()/write()/shutdown() call.
struct TransportBio {
  static TlsTransport* of(BIO* b) { return static_cast<TlsTransport*>(BIO_get_data(b)); }

  static int read(BIO* b, char* out, int len) {
    BIO_clear_retry_flags(b);
    TlsTransport* t = of(b);
    if (!t || len <= 0) return 0;
    t->input_edge_ = false;  // this recv sees every byte that came before the last edge
    for (;;) {
      ssize_t n = ::recv(t->fd_, out, static_cast<size_t>(len), 0);
      if (n > 0) {
        t->drained_ = n < len;
        return static_cast<int>(n);
      }
      t->drained_ = true;
      if (n == 0) {
        t->eof_ = true;
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        BIO_set_retry_read(b);
      } else {
        t->raw_errno_ = errno;
      }
      return -1;
    }
  }

  static int write(BIO* b, const char* in, int len) {
    BIO_clear_retry_flags(b);
    TlsTransport* t = of(b);
    if (!t || len <= 0) return 0;
    for (;;) {
      ssize_t n = ::send(t->fd_, in, static_cast<size_t>(len), MSG_NOSIGNAL);
      if (n >= 0) return static_cast<int>(n);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        BIO_set_retry_write(b);
      } else {
        t->raw_errno_ = errno;
      }
      return -1;
    }
  }

  static long ctrl(BIO* b, int cmd, long /*num*/, void* ptr) {
    TlsTransport* t = of(b);
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        return 1;
      case BIO_CTRL_EOF:
        return t && t->eof_ ? 1 : 0;
      case BIO_C_GET_FD:
        if (!t) return -1;
        if (ptr) *static_cast<int*>(ptr) = t->fd_;
        return t->fd_;
      default:
        return 0;
    }
  }

  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }
  static int destroy(BIO* /*b*/) { return 1; }  // the data is the transport: not ours to free

  // Created once, kept for the life of the process.
  static BIO_METHOD* method() {
    static BIO_METHOD* const m = [] {
      BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weir socket");
      if (!bm) return bm;
      BIO_meth_set_write(bm, write);
      BIO_meth_set_read(bm, read);
      BIO_meth_set_ctrl(bm, ctrl);
      BIO_meth_set_create(bm, create);
      BIO_meth_set_destroy(bm, destroy);
      return bm;
    }();
    return m;
  }
};

TlsTransport::TlsTransport(SSL* ssl) : ssl_(ssl) {
  SSL_set_mode(ssl_, detail::kTlsModes);
  SSL_set_read_ahead(ssl_, 1);
  SSL_set_default_read_buffer_len(ssl_, detail::kTlsReadBufferLen);
  if (BIO* bio = BIO_new(TransportBio::method())) {
    BIO_set_data(bio, this);
    SSL_set_bio(ssl_, bio, bio);  // one reference, owned by the SSL
  }
}

TlsTransport::~TlsTransport() {
  SSL_free(ssl_);
}

ssize_t TlsTransport::read(int fd, char* buf, size_t len) {
  fd_ = fd;
  raw_errno_ = 0;
  if (len == 0) return kWouldBlock;
  ERR_clear_error();
  size_t n = 0;
  int rc = SSL_read_ex(ssl_, buf, len, &n);
  if (rc == 1) return static_cast<ssize_t>(n);
  return fail(rc);
}

ssize_t TlsTransport::write(int fd, const char* buf, size_t len) {
  fd_ = fd;
  raw_errno_ = 0;
  write_needs_read_ = false;
  if (len == 0) return 0;
  // With partial writes SSL_write_ex returns after each record; a short result must mean "the
  // socket is full" (the caller then waits for a writability edge), so go on until it is.
  size_t total = 0;
  while (total < len) {
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_write_ex(ssl_, buf + total, len - total, &n);
    if (rc == 1) {
      total += n;
      continue;
    }
    int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) write_needs_read_ = true;
    if (total == 0) {
      ssize_t r = fail(rc);
      if (r != 0) return r;
      // The peer closed while the handshake ran inside this write: an error for a writer.
      failed_ = true;
      last_error_ = "connection closed by the peer";
      errno = EPIPE;
      return kIoError;
    }
    // Report what went out; a failure shows again on the next call.
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) ERR_clear_error();
    break;
  }
  return static_cast<ssize_t>(total);
}

ssize_t TlsTransport::fail(int rc) {
  int err = SSL_get_error(ssl_, rc);
  switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return kWouldBlock;
    case SSL_ERROR_ZERO_RETURN:  // close_notify
      return 0;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        failed_ = true;
        if (raw_errno_ == 0) return 0;  // EOF without close_notify
        last_error_ = std::strerror(raw_errno_);
        errno = raw_errno_;
        return kIoError;
      }
      break;
    case SSL_ERROR_SSL:
      break;
    default:
      ERR_clear_error();
      failed_ = true;
      last_error_ = "unexpected OpenSSL result " + std::to_string(err);
      errno = EPROTO;
      return kIoError;
  }
  failed_ = true;
  unsigned long first = ERR_peek_error();
  if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
      ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    ERR_clear_error();
    return 0;  // the peer closed without close_notify: an EOF like any other
  }
  long verify = SSL_get_verify_result(ssl_);
  if (!SSL_is_server(ssl_) && verify != X509_V_OK && ERR_GET_LIB(first) == ERR_LIB_SSL &&
      ERR_GET_REASON(first) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    ERR_clear_error();
    last_error_ =
        std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
  } else {
    last_error_ = detail::openssl_errors();
    if (last_error_.empty()) last_error_ = "TLS failure";
  }
  errno = raw_errno_ ? raw_errno_ : EPROTO;
  return kIoError;
}

// Drained: the last raw recv was short (or hit EAGAIN/EOF), no input edge came after it, and
// OpenSSL holds no byte of it (decrypted or not). The edge check matters when records pile up:
// one recv takes many, each read decrypts one, and when a connection yields its turn before
// they are all read, the poll in between reports (and spends) the edge of bytes that arrived
// after that recv; the recv's "short" is then out of date, and trusting it once the buffer runs
// dry would leave those bytes unread in the socket with no edge to come (issue 17: an HTTP/2
// client over TLS got no answer to its last frames).
bool TlsTransport::drained() const {
  return drained_ && !input_edge_ && SSL_has_pending(ssl_) == 0;
}

void TlsTransport::shutdown(int fd) {
  fd_ = fd;
  if (failed_ || !SSL_is_init_finished(ssl_)) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // sends close_notify if the socket takes it; the answer is not awaited
  ERR_clear_error();
}

bool TlsTransport::handshake_done() const {
  return SSL_is_init_finished(ssl_) == 1;
}

std::string_view TlsTransport::alpn() const {
  const unsigned char* proto = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &proto, &len);
  if (!proto) return {};
  return {reinterpret_cast<const char*>(proto), len};
}

std::string_view TlsTransport::version() const {
  return SSL_get_version(ssl_);  // OpenSSL's static strings ("TLSv1.3")
}

bool TlsTransport::resumed() const {
  return SSL_session_reused(ssl_) == 1;
}

}  // namespace weir::net::tls
