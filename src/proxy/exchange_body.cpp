// A response body on its way to the client, by the cheapest path its downstream and filters
// allow: spliced socket to socket (HTTP/1.1 over plain TCP, no filter), pushed from the
// server's buffer (HTTP/1.1), pulled by the stream's data source (HTTP/2), or through a body
// filter's bounded output buffer. Whatever the path, only what the client side took is
// consumed from the server's buffer, and a server that ends before its body does is never
// passed off as a whole response. A chunked body's trailer section is collected in
// resp_trailers_ as the decoder hands it out (only what is committed) and goes to
// Downstream::finish_body with the end of the body.
#include <cerrno>
#include <cstring>

#include "core/log.hpp"
#include "proxy/exchange.hpp"

namespace weir::proxy {

// The response body to a downstream that takes pushes (HTTP/1.1): each decoded payload span is
// offered as it lies in the server's buffer; only what the client side took is consumed.
bool Exchange::push_body() {
  if (body_filter_) return push_filtered();
  auto& us = up_->stream;
  bool progress = false;
  while (!resp_body_.done() && !us.in.empty()) {
    std::string_view avail = us.in.readable();
    http::BodyDecoder probe = resp_body_;
    auto st = probe.decode(avail);
    if (st.status == http::BodyDecoder::Status::Error) {
      log::debug("server response body invalid; aborting client {}", ds_->client().ip);
      abort();
      return true;
    }
    size_t taken = st.payload.empty() ? 0 : ds_->send_body(st.payload);
    log_.bytes_out += taken;
    cache_tee(st.payload.substr(0, taken));
    if (taken == st.payload.size()) {
      resp_body_ = probe;
      resp_trailers_.append(st.trailer);  // bounded by the decoder (max_trailer_bytes)
      us.in.consume(st.consumed);
      if (st.consumed == 0) break;
      progress = true;
      continue;
    }
    if (taken > 0) {
      // Part of the payload: decode again, up to the end of what was taken.
      size_t upto = static_cast<size_t>(st.payload.data() - avail.data()) + taken;
      us.in.consume(resp_body_.decode(avail.substr(0, upto)).consumed);
      progress = true;
    }
    break;
  }
  if (progress) touch_response_timer();
  if (!resp_body_.done() && us.in.empty()) {
    if (us.eof && resp_body_.finish_eof()) {
      // close-delimited body complete
    } else if (us.eof || us.failed) {
      abort();  // truncated: the client must not take it for a whole response
      return true;
    }
  }
  if (resp_body_.done()) {
    if (!ds_->finish_body(resp_trailers_)) return progress;
    response_done();
    return true;
  }
  return progress;
}

// Socket to socket through a pipe, when nothing needs to see the bytes: both sides plain TCP,
// a body that is its own framing, nothing buffered before it on either side.
net::Stream* Exchange::splice_target() {
  auto& us = up_->stream;
  // An HTTP/2 stream has no socket of its own to splice from.
  if (us.transport || up_->h2 || !us.in.empty() || body_filter_ || cache_filling()) return nullptr;
  auto kind = resp_body_.kind();
  if (kind != http::BodyKind::ContentLength && kind != http::BodyKind::UntilClose) return nullptr;
  if (!pipe_) {
    net::Stream* dst = ds_->splice_target();
    if (!dst) return nullptr;
    pipe_ = w_.pipes().take();
    if (!pipe_) return nullptr;
    return dst;
  }
  return ds_->splice_target();
}

bool Exchange::splice_body(net::Stream& dst) {
  auto& us = up_->stream;
  bool progress = false;
  for (int round = 0; round < 4; ++round) {
    bool moved = false;
    if (us.readable && !us.eof && !us.failed && pipe_->room() > 0 && !resp_body_.done()) {
      size_t want = pipe_->room();
      if (resp_body_.kind() == http::BodyKind::ContentLength)
        want = static_cast<size_t>(std::min<uint64_t>(want, resp_body_.remaining()));
      ssize_t n = pipe_->fill(us.fd, want);
      if (n > 0) {
        resp_body_.skip(static_cast<uint64_t>(n));
        moved = true;
      } else if (n == 0) {
        us.eof = true;
        moved = true;
      } else if (n == net::kWouldBlock) {
        us.readable = false;
      } else {
        us.failed = true;
        us.error = errno;
      }
    }
    if (pipe_->held() > 0 && dst.writable) {
      ssize_t n = pipe_->drain(dst.fd);
      if (n > 0) {
        log_.bytes_out += static_cast<uint64_t>(n);
        moved = true;
        if (pipe_->held() > 0) dst.writable = false;
      } else if (n == net::kWouldBlock) {
        dst.writable = false;
      } else {
        dst.write_failed = true;
        dst.error = errno;
        return true;  // the driver closes the connection
      }
    }
    progress |= moved;
    if (!moved) break;
  }
  if (progress) touch_response_timer();
  if (pipe_->held() > 0) return progress;
  if (!resp_body_.done()) {
    if (us.eof && resp_body_.finish_eof()) {
      // close-delimited body complete
    } else if (us.eof || us.failed) {
      abort();  // truncated: the client must not take it for a whole response
      return true;
    } else {
      return progress;
    }
  }
  drop_body_state();
  response_done();
  return true;
}

void Exchange::drop_body_state() {
  if (sending_local_) close_local_body();
  if (!pipe_ && !body_filter_ && !filtered_.allocated()) return;
  if (pipe_) w_.pipes().give_back(std::move(pipe_));
  body_filter_.reset();
  filtered_.clear();
  w_.buffers().release(filtered_);
}

ssize_t Exchange::pull_body(char* buf, size_t len, bool& eof) {
  eof = false;
  if (phase_ == Phase::Streaming && sending_local_) return pull_local_body(buf, len, eof);
  if (phase_ != Phase::Streaming || !up_) return -1;
  auto& us = up_->stream;
  size_t n = 0;
  if (body_filter_) {
    while (n < len) {
      if (!filtered_.empty()) {
        std::string_view out = filtered_.readable().substr(0, len - n);
        std::memcpy(buf + n, out.data(), out.size());
        filtered_.consume(out.size());
        n += out.size();
        continue;
      }
      if (filter_done_) break;
      Feed f = feed_filter();
      if (f == Feed::Failed) {
        abort();
        return -1;
      }
      if (f == Feed::Idle) break;
    }
    if (n > 0) {
      log_.bytes_out += n;
      touch_response_timer();
      ds_->wake();
    }
    if (filter_done_ && filtered_.empty()) {
      ds_->finish_body(resp_trailers_);  // the stream keeps a copy: the exchange goes now
      eof = true;
      response_done();
    } else if (n == 0 && check_truncated()) {
      return -1;
    }
    return static_cast<ssize_t>(n);
  }
  const bool raw = resp_body_.kind() == http::BodyKind::ContentLength ||
                   resp_body_.kind() == http::BodyKind::UntilClose;
  while (n < len && !resp_body_.done()) {
    if (us.in.empty()) {
      // A body that is its own framing goes from the server's socket straight into the
      // frame: a stream whose client does not read holds no buffer of weir's.
      if (!raw) break;
      size_t want = len - n;
      if (resp_body_.kind() == http::BodyKind::ContentLength)
        want = static_cast<size_t>(std::min<uint64_t>(want, resp_body_.remaining()));
      ssize_t r = us.read_direct(buf + n, want);
      if (r <= 0) break;
      cache_tee({buf + n, static_cast<size_t>(r)});
      resp_body_.skip(static_cast<uint64_t>(r));
      n += static_cast<size_t>(r);
      continue;
    }
    std::string_view avail = us.in.readable();
    auto st = resp_body_.decode(avail.substr(0, std::min(avail.size(), len - n)));
    if (st.status == http::BodyDecoder::Status::Error) {
      abort();
      return -1;
    }
    if (!st.payload.empty()) std::memcpy(buf + n, st.payload.data(), st.payload.size());
    resp_trailers_.append(st.trailer);
    cache_tee(st.payload);
    n += st.payload.size();
    us.in.consume(st.consumed);
    if (st.consumed == 0) break;
  }
  if (n > 0) {
    log_.bytes_out += n;
    touch_response_timer();
    ds_->wake();  // room in the server's buffer: read on
  }
  if (!resp_body_.done() && us.in.empty() && us.eof) {
    if (!resp_body_.finish_eof()) {
      abort();  // truncated
      return -1;
    }
  }
  if (!resp_body_.done() && us.in.empty() && us.failed) {
    abort();
    return -1;
  }
  if (resp_body_.done()) {
    ds_->finish_body(resp_trailers_);  // the stream keeps a copy: the exchange goes now
    eof = true;
    response_done();
  }
  return static_cast<ssize_t>(n);
}

// The server's body into the body filter, as far as its output buffer has room. Failed: the
// server's framing is broken, or the filter failed (the exchange is not aborted here).
Exchange::Feed Exchange::feed_filter() {
  auto& us = up_->stream;
  if (filtered_.free_space() == 0) return Feed::Idle;
  size_t before = filtered_.size();
  if (!resp_body_.done() && !us.in.empty()) {
    std::string_view avail = us.in.readable();
    http::BodyDecoder probe = resp_body_;
    auto st = probe.decode(avail);
    if (st.status == http::BodyDecoder::Status::Error) return Feed::Failed;
    BodyFilter::Step fs = body_filter_->on_body(st.payload, false, filtered_);
    if (body_filter_->failed()) return Feed::Failed;
    cache_tee(st.payload.substr(0, fs.used));
    if (fs.used == st.payload.size()) {
      resp_body_ = probe;
      resp_trailers_.append(st.trailer);
      us.in.consume(st.consumed);
      return st.consumed > 0 || filtered_.size() != before ? Feed::Moved : Feed::Idle;
    }
    if (fs.used > 0) {
      size_t upto = static_cast<size_t>(st.payload.data() - avail.data()) + fs.used;
      us.in.consume(resp_body_.decode(avail.substr(0, upto)).consumed);
      return Feed::Moved;
    }
    return filtered_.size() != before ? Feed::Moved : Feed::Idle;
  }
  if (resp_body_.done() || (us.eof && us.in.empty() && resp_body_.finish_eof())) {
    BodyFilter::Step fs = body_filter_->on_body({}, true, filtered_);
    if (body_filter_->failed()) return Feed::Failed;
    if (fs.done) filter_done_ = true;
    return fs.done || filtered_.size() != before ? Feed::Moved : Feed::Idle;
  }
  return Feed::Idle;
}

// `filtered_` to a downstream that takes pushes. False: some is left (the client is slower:
// the rest waits there).
bool Exchange::send_filtered(bool& progress) {
  if (filtered_.empty()) return true;
  size_t n = ds_->send_body(filtered_.readable());
  log_.bytes_out += n;
  filtered_.consume(n);
  progress |= n > 0;
  return filtered_.empty();
}

// A body filter's output to a downstream that takes pushes.
bool Exchange::push_filtered() {
  bool progress = false;
  while (send_filtered(progress)) {
    if (filter_done_) break;
    Feed f = feed_filter();
    if (f == Feed::Failed) {
      abort();
      return true;
    }
    if (f == Feed::Idle) break;
    progress = true;
  }
  if (progress) touch_response_timer();
  if (filter_done_ && filtered_.empty()) {
    if (!ds_->finish_body(resp_trailers_)) return progress;
    response_done();
    return true;
  }
  if (!filter_done_ && check_truncated()) return true;
  return progress;
}

// The server ended (or failed) before its body did: abort so the client cannot take a truncated
// body for a whole one. True if aborted.
bool Exchange::check_truncated() {
  auto& us = up_->stream;
  if (resp_body_.done() || !us.in.empty()) return false;
  if (us.failed || (us.eof && !resp_body_.finish_eof())) {
    abort();
    return true;
  }
  return false;
}

}  // namespace weir::proxy
