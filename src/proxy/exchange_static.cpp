// A `static` route: weir answers from a file under the route's root (static_files.hpp decides
// which file and what answer; here the answer goes to the client). The body leaves by the
// cheapest way the downstream allows: sendfile(2) from the page cache to the socket (HTTP/1.1
// over plain TCP), pread into one buffer block for TLS and chunked framing, or pread straight
// into the frame HTTP/2's data source asks for. A large file is never held in memory, and a
// slow client holds one block at most.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

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

constexpr size_t kSendfileStep = 1 << 20;   // per call: other connections get their turn
constexpr uint64_t kCorkAbove = 256 << 10;  // smaller files leave in one or two sendfile calls

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
  sr.conditions = http::conditional_headers(req.headers);
  std::array<Encoding, 3> codings{};
  if (r.static_files->precompressed) {
    // The exchange copied Accept-Encoding only for routes with body filters: read it here.
    std::string_view accept;
    for (const auto& h : req.headers) {
      if (http::iequals(h.name, "accept-encoding")) {
        accept = h.value;
        break;
      }
    }
    sr.encodings = std::span<const Encoding>(codings.data(), ranked_encodings(accept, codings));
  }
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
  if (method_ != http::Method::Head && a.length > 0) {
    file_fd_ = a.fd.release();
    file_offset_ = a.offset;
    file_left_ = a.length;
  }
  send_local_head(head);
}

// weir's answer whose body is a file (file_fd_ set) or a stored response (mem_ set), or none
// (HEAD, or empty): the head, then the body as the client takes it.
void Exchange::send_local_head(ResponseOut& head) {
  if (!request_id_.empty()) edits_.set(listener().request_id, request_id_);
  status_ = head.status;
  head.last = !req_done_;
  log_.bytes_out += 200;  // the head, roughly
  const bool body = file_fd_ >= 0 || !mem_.empty();
  if (!body) {
    // As weir's own answers: the head (with the length a GET gets), no body.
    head.local = true;
    count(head.status);
    note_end(Termination::Ok);
    phase_ = Phase::Done;
    bool sent = ds_->send_head(head) == HeadResult::Sent;
    close_local_body();
    ds_->exchange_done(sent, req_done_);
    return;
  }
  if (ds_->send_head(head) != HeadResult::Sent) {
    // A fresh exchange's head always fits; one that does not is the codec's refusal.
    close_local_body();
    count(head.status);
    note_end(Termination::Local);
    phase_ = Phase::Done;
    ds_->exchange_done(false, req_done_);
    return;
  }
  sending_local_ = true;
  phase_ = Phase::Streaming;
  note_end(Termination::Ok);
  touch_local_body_timer();
  if (ds_->pulls_body()) ds_->body_available();
}

void Exchange::touch_local_body_timer() {
  // The client's reading: the listener's idle timeout (no server in this exchange).
  timer_kind_ = TimerKind::Response;
  timer_.set(w_.reactor().timers(), w_.reactor().now() + listener().timeouts.idle);
}

// The rest of the body to a downstream that takes pushes (HTTP/1.1).
bool Exchange::pump_local_body() {
  if (ds_->pulls_body()) {
    ds_->body_available();
    return false;
  }
  bool progress = false;
  if (file_fd_ < 0 && body_filter_) {
    // A stored response, compressed for this client on the way out.
    while (send_filtered(progress)) {
      if (filter_done_) break;
      int fed = feed_local_filter();
      if (fed < 0) return local_body_failed("the compressor failed");
      if (fed == 0) break;
    }
  } else if (file_fd_ < 0) {
    // A stored response: from its memory to the client's buffer (or socket).
    while (!mem_.empty()) {
      size_t n = ds_->send_body(mem_);
      if (n == 0) break;
      mem_.remove_prefix(n);
      log_.bytes_out += n;
      progress = true;
    }
  } else if (net::Stream* dst = ds_->splice_target(); dst && filtered_.empty()) {
    // Page cache to socket.
    if (!corked_ && file_left_ > kCorkAbove) {
      // Full segments while the file goes out (NGINX's tcp_nopush): measured 0.8x of NGINX's
      // req/s for a 20 MiB file without it, 1.05x with it (bench scenario 14).
      int one = 1;
      ::setsockopt(dst->fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
      corked_ = dst->fd;
    }
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
        // One step per turn: the connection's driver calls again while bytes move, and lets the
        // other connections go first after a few turns.
        if (static_cast<size_t>(n) == kSendfileStep) break;
      } else if (n == 0) {
        return local_body_failed("the file shrank while it was sent");
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
    while (send_filtered(progress)) {
      if (file_left_ == 0) break;
      std::span<char> room = filtered_.writable();
      if (room.empty()) break;
      size_t want = static_cast<size_t>(std::min<uint64_t>(file_left_, room.size()));
      ssize_t n = ::pread(file_fd_, room.data(), want, static_cast<off_t>(file_offset_));
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return local_body_failed(n == 0 ? "the file shrank while it was sent" : "read failed");
      }
      filtered_.commit(static_cast<size_t>(n));
      file_offset_ += static_cast<uint64_t>(n);
      file_left_ -= static_cast<uint64_t>(n);
    }
  }
  if (progress) touch_local_body_timer();
  if (file_left_ == 0 && mem_.empty() && filtered_.empty() && (!body_filter_ || filter_done_)) {
    if (!ds_->finish_body({})) return progress;
    local_body_done();
    return true;
  }
  return progress;
}

// HTTP/2: the stream's data source reads the body straight into its frame.
ssize_t Exchange::pull_local_body(char* buf, size_t len, bool& eof) {
  ssize_t n = 0;
  if (file_fd_ < 0 && body_filter_) {
    size_t k = 0;
    while (k < len) {
      if (!filtered_.empty()) {
        std::string_view out = filtered_.readable().substr(0, len - k);
        std::memcpy(buf + k, out.data(), out.size());
        filtered_.consume(out.size());
        k += out.size();
        continue;
      }
      if (filter_done_) break;
      int fed = feed_local_filter();
      if (fed < 0) {
        local_body_failed("the compressor failed");
        return -1;
      }
      if (fed == 0) break;
    }
    n = static_cast<ssize_t>(k);
  } else if (file_fd_ < 0) {
    size_t k = std::min(len, mem_.size());
    std::memcpy(buf, mem_.data(), k);
    mem_.remove_prefix(k);
    n = static_cast<ssize_t>(k);
  } else if (size_t want = static_cast<size_t>(std::min<uint64_t>(file_left_, len)); want > 0) {
    do {
      n = ::pread(file_fd_, buf, want, static_cast<off_t>(file_offset_));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      local_body_failed(n == 0 ? "the file shrank while it was sent" : "read failed");
      return -1;
    }
    file_offset_ += static_cast<uint64_t>(n);
    file_left_ -= static_cast<uint64_t>(n);
  }
  if (n > 0) {
    log_.bytes_out += static_cast<uint64_t>(n);
    touch_local_body_timer();
  }
  if (file_left_ == 0 && mem_.empty() && filtered_.empty() && (!body_filter_ || filter_done_)) {
    eof = true;
    local_body_done();
  }
  return n;
}

// The rest of a stored body into the body filter, as far as its output block has room:
// 1 progress, 0 none possible now, -1 the filter failed.
int Exchange::feed_local_filter() {
  if (filtered_.free_space() == 0) return 0;
  size_t before = filtered_.size();
  BodyFilter::Step st = body_filter_->on_body(mem_, mem_.empty(), filtered_);
  if (body_filter_->failed()) return -1;
  mem_.remove_prefix(st.used);
  if (st.done) filter_done_ = true;
  return st.used > 0 || st.done || filtered_.size() != before ? 1 : 0;
}

void Exchange::close_local_body() {
  corked_ = 0;  // the connection may be gone: nothing to uncork then
  if (file_fd_ >= 0) ::close(file_fd_);
  file_fd_ = -1;
  file_left_ = 0;
  mem_ = {};
  mem_entry_.reset();
  sending_local_ = false;
}

void Exchange::local_body_done() {
  if (corked_) {
    // The last partial segment leaves now, not after the kernel's 200 ms.
    int zero = 0;
    ::setsockopt(corked_, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
  }
  close_local_body();
  drop_body_state();
  count(status_);
  finish(true);
}

// The file cannot be sent whole (truncated under us, an I/O error): the client must not take
// what it got for the whole file, so the response is aborted like a server's truncated body.
bool Exchange::local_body_failed(const char* why) {
  log::warn("static file for client {}: {}", ds_->client().ip, why);
  close_local_body();
  note_end(Termination::UpstreamReset);
  drop_body_state();
  count(status_);
  finish(false);
  return true;
}

}  // namespace weir::proxy
