// A `static` route: weir answers from a file under the route's root (static_files.hpp decides
// which file and what answer; here the answer goes to the client). The body leaves by the
// cheapest way the downstream allows: sendfile(2) from the page cache to the socket (HTTP/1.1
// over plain TCP), pread into one buffer block for TLS and chunked framing, or pread straight
// into the frame HTTP/2's data source asks for. A large file is never held in memory, and a
// slow client holds one block at most.
#include <sys/sendfile.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "core/log.hpp"
#include "proxy/exchange.hpp"
#include "proxy/static_files.hpp"

namespace weir::proxy {

namespace {

// The codings the request accepts among those weir has variants for, best first (for
// `precompressed`): the best one, then the best of the rest, ... until identity.
size_t ranked_encodings(std::string_view accept_encoding, std::array<Encoding, 3>& out) {
  std::array<Encoding, 3> left{Encoding::Zstd, Encoding::Brotli, Encoding::Gzip};
  size_t n_left = left.size(), n = 0;
  std::string_view fields[] = {accept_encoding};
  std::span<const std::string_view> ae(fields, accept_encoding.empty() ? 0 : 1);
  while (n_left > 0) {
    Encoding e = choose_encoding(ae, std::span<const Encoding>(left.data(), n_left));
    if (e == Encoding::Identity) break;
    out[n++] = e;
    auto it = std::find(left.begin(), left.begin() + static_cast<long>(n_left), e);
    std::copy(it + 1, left.begin() + static_cast<long>(n_left), it);
    --n_left;
  }
  return n;
}

constexpr size_t kSendfileStep = 1 << 20;  // per call: other connections get their turn

}  // namespace

// Always false: the request is answered here.
bool Exchange::serve_static(const http::RequestHead& req, size_t route, std::string_view path) {
  own_answer_ = false;  // a missing file is weir's 404: the listener's error_pages apply
  const auto& lf = view_->filters[view_->slot_listener[ds_->client().slot()]];
  const StaticRoot* root = lf.static_roots[route].get();
  const config::Route& r = listener().routes[route];
  if (!root) {
    answer(500, "Internal Server Error\n");
    return false;
  }
  StaticRequest sr;
  sr.method = req.method;
  sr.path = path;
  sr.strip_prefix = r.static_files->strip_prefix;
  std::string_view accept;
  for (const auto& h : req.headers) {
    auto& c = sr.conditions;
    std::string_view n = h.name;
    if (http::iequals(n, "if-none-match")) {
      c.if_none_match = h.value;
    } else if (http::iequals(n, "if-modified-since")) {
      c.if_modified_since = h.value;
    } else if (http::iequals(n, "if-match")) {
      c.if_match = h.value;
    } else if (http::iequals(n, "if-unmodified-since")) {
      c.if_unmodified_since = h.value;
    } else if (http::iequals(n, "range")) {
      c.range = h.value;
    } else if (http::iequals(n, "if-range")) {
      c.if_range = h.value;
    } else if (http::iequals(n, "accept-encoding") && accept.empty()) {
      accept = h.value;
    }
  }
  std::array<Encoding, 3> codings{};
  if (r.static_files->precompressed)
    sr.encodings = std::span<const Encoding>(codings.data(), ranked_encodings(accept, codings));
  StaticAnswer a = root->serve(sr);
  edits_.clear();
  for (const auto& f : a.fields) {
    // The codec writes Content-Length from the head's length.
    if (f.name != "Content-Length") edits_.add(f.name, f.value);
  }
  if (a.status != 200 && a.status != 206) {
    if (a.failure == StaticFailure::Error) log::warn("static {}: {}", path, to_string(a.failure));
    switch (a.status) {
      case 304:
        answer(304, {});
        break;
      case 405:
        answer(405, "Method Not Allowed\n");
        break;
      case 412:
        answer(412, "Precondition Failed\n");
        break;
      case 416:
        answer(416, "Range Not Satisfiable\n");
        break;
      default:
        edits_.clear();
        answer(a.status, a.status == 403   ? "Forbidden\n"
                         : a.status == 500 ? "Internal Server Error\n"
                                           : "Not Found\n");
    }
    return false;
  }
  send_file_head(a);
  return false;
}

void Exchange::send_file_head(StaticAnswer& a) {
  // HEAD: the length a GET gets.
  uint64_t length = method_ == http::Method::Head ? a.content_length : a.length;
  ResponseOut head;
  head.status = a.status;
  head.body = http::BodyKind::ContentLength;
  head.content_length = length;
  head.edits = &edits_;
  filters_->on_response(head);
  if (!request_id_.empty()) edits_.set(listener().request_id, request_id_);
  status_ = a.status;
  if (method_ == http::Method::Head || length == 0) {
    count(a.status);
    // As weir's own answers: the head (with the length a GET gets), no body.
    head.local = true;
    head.last = !req_done_;
    note_end(Termination::Ok);
    log_.bytes_out += 200;
    phase_ = Phase::Done;
    bool sent = ds_->send_head(head) == HeadResult::Sent;
    ds_->exchange_done(sent, req_done_);
    return;
  }
  head.last = !req_done_;
  if (ds_->send_head(head) != HeadResult::Sent) {
    // A fresh exchange's head always fits; a head that does not is the codec's refusal.
    count(a.status);
    note_end(Termination::Local);
    phase_ = Phase::Done;
    ds_->exchange_done(false, req_done_);
    return;
  }
  log_.bytes_out += 200;
  file_fd_ = a.fd.release();
  file_offset_ = a.offset;
  file_left_ = a.length;
  phase_ = Phase::Streaming;
  note_end(Termination::Ok);
  touch_file_timer();
  if (ds_->pulls_body()) ds_->body_available();
}

void Exchange::touch_file_timer() {
  // The client's reading: the listener's idle timeout (no server in this exchange).
  timer_kind_ = TimerKind::Response;
  timer_.set(w_.reactor().timers(), w_.reactor().now() + listener().timeouts.idle);
}

// The rest of the file to a downstream that takes pushes (HTTP/1.1).
bool Exchange::pump_file() {
  if (ds_->pulls_body()) {
    ds_->body_available();
    return false;
  }
  bool progress = false;
  if (net::Stream* dst = ds_->splice_target(); dst && filtered_.empty()) {
    // Page cache to socket.
    while (file_left_ > 0 && dst->writable) {
      auto off = static_cast<off_t>(file_offset_);
      size_t want = static_cast<size_t>(std::min<uint64_t>(file_left_, kSendfileStep));
      ssize_t n = ::sendfile(dst->fd, file_fd_, &off, want);
      if (n > 0) {
        file_offset_ += static_cast<uint64_t>(n);
        file_left_ -= static_cast<uint64_t>(n);
        log_.bytes_out += static_cast<uint64_t>(n);
        progress = true;
        if (static_cast<size_t>(n) < want) dst->writable = false;
        if (static_cast<size_t>(n) == kSendfileStep) {
          ds_->wake();  // more next turn: other connections go first
          break;
        }
      } else if (n == 0) {
        return file_failed("the file shrank while it was sent");
      } else if (errno == EAGAIN) {
        dst->writable = false;
      } else if (errno == EINTR) {
        continue;
      } else {
        dst->write_failed = true;
        dst->error = errno;
        return true;  // the driver closes the connection
      }
    }
  } else {
    // Through a buffer block: TLS, or bytes already queued before the body.
    w_.buffers().acquire(filtered_);
    for (;;) {
      if (!filtered_.empty()) {
        size_t n = ds_->send_body(filtered_.readable());
        filtered_.consume(n);
        log_.bytes_out += n;
        progress |= n > 0;
        if (!filtered_.empty()) break;  // the client is slower
      }
      if (file_left_ == 0) break;
      std::span<char> room = filtered_.writable();
      if (room.empty()) break;
      size_t want = static_cast<size_t>(std::min<uint64_t>(file_left_, room.size()));
      ssize_t n = ::pread(file_fd_, room.data(), want, static_cast<off_t>(file_offset_));
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return file_failed(n == 0 ? "the file shrank while it was sent" : "read failed");
      }
      filtered_.commit(static_cast<size_t>(n));
      file_offset_ += static_cast<uint64_t>(n);
      file_left_ -= static_cast<uint64_t>(n);
    }
  }
  if (progress) touch_file_timer();
  if (file_left_ == 0 && filtered_.empty()) {
    if (!ds_->finish_body()) return progress;
    file_done();
    return true;
  }
  return progress;
}

// HTTP/2: the stream's data source reads the file straight into its frame.
ssize_t Exchange::pull_file(char* buf, size_t len, bool& eof) {
  size_t want = static_cast<size_t>(std::min<uint64_t>(file_left_, len));
  ssize_t n = 0;
  if (want > 0) {
    do {
      n = ::pread(file_fd_, buf, want, static_cast<off_t>(file_offset_));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      file_failed(n == 0 ? "the file shrank while it was sent" : "read failed");
      return -1;
    }
    file_offset_ += static_cast<uint64_t>(n);
    file_left_ -= static_cast<uint64_t>(n);
    log_.bytes_out += static_cast<uint64_t>(n);
    touch_file_timer();
  }
  if (file_left_ == 0) {
    eof = true;
    file_done();
  }
  return n;
}

void Exchange::close_file() {
  if (file_fd_ >= 0) ::close(file_fd_);
  file_fd_ = -1;
  file_left_ = 0;
}

void Exchange::file_done() {
  close_file();
  drop_body_state();
  count(status_);
  finish(true);
}

// The file cannot be sent whole (truncated under us, an I/O error): the client must not take
// what it got for the whole file, so the response is aborted like a server's truncated body.
bool Exchange::file_failed(const char* why) {
  log::warn("static file for client {}: {}", ds_->client().ip, why);
  close_file();
  note_end(Termination::UpstreamReset);
  drop_body_state();
  count(status_);
  finish(false);
  return true;
}

}  // namespace weir::proxy
