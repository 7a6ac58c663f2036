#include "health/probe.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iterator>
#include <limits>

#include "core/log.hpp"
#include "health/passive.hpp"
#include "http/parser.hpp"
#include "net/socket.hpp"

namespace weir::health {

std::string socket_error_reason(int err) {
  switch (err) {
    case ECONNREFUSED:
      return "connection refused";
    case ECONNRESET:
    case EPIPE:
      return "connection reset";
    case ECONNABORTED:
      return "connection aborted";
    case ETIMEDOUT:
      return "connection timed out";
    case EHOSTUNREACH:
    case EHOSTDOWN:
      return "host unreachable";
    case ENETUNREACH:
    case ENETDOWN:
      return "network unreachable";
    case EADDRNOTAVAIL:
      return "no local address available";
    case EMFILE:
    case ENFILE:
      return "out of file descriptors";
    case ENOBUFS:
    case ENOMEM:
      return "out of memory";
    case EACCES:
    case EPERM:
      return "connection not permitted";
    default:
      break;
  }
  // Anything rarer: the system's text, lower-cased to read like the rest of the line.
  std::string text = strerror(err);
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z') text[0] = static_cast<char>(text[0] + 32);
  return text;
}

std::string probe_request(const ProbeTarget& target) {
  std::string r;
  r.reserve(96 + target.check.path.size() + target.host_header.size());
  r += "GET ";
  r += target.check.path.empty() ? "/" : target.check.path;
  r += " HTTP/1.1\r\nHost: ";
  r += target.host_header;
  r += "\r\nUser-Agent: weir-health\r\nConnection: close\r\n\r\n";
  return r;
}

Probe::Probe(Reactor& reactor, std::mt19937_64& rng, ProbeTarget target,
             std::shared_ptr<model::ServerState> state)
    : reactor_(reactor), rng_(rng), target_(std::move(target)), state_(std::move(state)) {
  timer_.set_callback([this] { on_timer(); });
}

Probe::~Probe() {
  close_socket();
  timer_.cancel();
}

void Probe::start() {
  auto half = std::chrono::duration_cast<Clock::duration>(target_.check.interval) / 2;
  std::uniform_int_distribution<Clock::rep> d(0, std::max<Clock::rep>(half.count(), 0));
  schedule(Clock::duration(d(rng_)));
}

void Probe::reconfigure(ProbeTarget target) {
  target_ = std::move(target);
  // A shorter interval should not wait out the old, longer one.
  if (phase_ == Phase::Idle && timer_.armed() &&
      timer_.deadline() > Clock::now() + target_.check.interval) {
    start();
  }
}

Clock::duration Probe::jittered_interval() {
  // interval ± up to 10%, so servers checked together drift apart.
  auto base = std::chrono::duration_cast<Clock::duration>(target_.check.interval);
  std::uniform_real_distribution<double> d(0.9, 1.1);
  return std::chrono::duration_cast<Clock::duration>(base * d(rng_));
}

void Probe::schedule(Clock::duration delay) {
  phase_ = Phase::Idle;
  timer_.arm(reactor_.timers(), Clock::now() + delay);
}

void Probe::on_timer() {
  if (phase_ == Phase::Idle) {
    begin_round();
  } else {
    finish(false, fmt::format("timeout after {} ms", round_timeout_.count()));
  }
}

void Probe::begin_round() {
  started_ = Clock::now();
  round_timeout_ = target_.check.timeout;
  used_ = 0;
  sent_ = 0;
  fd_ = net::connect_nonblocking(target_.addr);
  if (fd_ < 0) {
    finish(false, socket_error_reason(errno));
    return;
  }
  if (!reactor_.add(fd_, this)) {
    int err = errno;
    close_socket();
    finish(false, socket_error_reason(err));
    return;
  }
  phase_ = Phase::Connecting;
  timer_.arm(reactor_.timers(), started_ + round_timeout_);
}

void Probe::on_event(uint32_t events) {
  switch (phase_) {
    case Phase::Idle:
      return;  // a stale event from a round already finished
    case Phase::Connecting:
      if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected();
      return;
    case Phase::Sending:
      send_request();
      return;
    case Phase::Reading:
      read_response();
      return;
  }
}

void Probe::on_connected() {
  if (int err = net::socket_error(fd_)) {
    finish(false, socket_error_reason(err));
    return;
  }
  if (target_.check.type == config::HealthType::Tcp) {
    finish(true, "");
    return;
  }
  if (target_.tls) tls_ = std::make_unique<net::tls::TlsTransport>(target_.tls->new_session());
  switch (target_.protocol) {
    case config::UpstreamProtocol::H2:
    case config::UpstreamProtocol::H2c:
      start_h2();
      break;
    case config::UpstreamProtocol::Auto:
      alpn_pending_ = tls_ != nullptr;
      if (!alpn_pending_) request_ = probe_request(target_);
      break;
    case config::UpstreamProtocol::Http1:
      request_ = probe_request(target_);
      break;
  }
  phase_ = Phase::Sending;
  send_request();
}

void Probe::start_h2() {
  h2_ = std::make_unique<H2Probe>(tls_ ? "https" : "http", target_.host_header, target_.check.path);
  request_ = h2_->take_output();
}

void Probe::send_request() {
  if (alpn_pending_) {
    // auto: the handshake runs inside this read; ALPN then says which request to send. A byte
    // the server sends first (an HTTP/2 server's SETTINGS) is kept for the response reader.
    ssize_t n = read_some(buf_.data() + used_, buf_.size() - used_);
    if (n == net::kIoError || n == 0) {
      finish(false, n == 0 ? "connection closed during the TLS handshake"
                           : "TLS: " + std::string(tls_->last_error()));
      return;
    }
    if (n > 0) used_ += static_cast<size_t>(n);
    if (!tls_->handshake_done()) return;
    alpn_pending_ = false;
    if (tls_->alpn() == "h2") {
      start_h2();
    } else {
      request_ = probe_request(target_);
    }
  }
  while (sent_ < request_.size()) {
    ssize_t n = write_some(request_.data() + sent_, request_.size() - sent_);
    if (n == net::kWouldBlock) return;
    if (n < 0) {
      finish(false, tls_ ? "TLS: " + std::string(tls_->last_error()) : socket_error_reason(errno));
      return;
    }
    sent_ += static_cast<size_t>(n);
  }
  phase_ = Phase::Reading;
  read_response();
}

void Probe::read_response() {
  for (;;) {
    if (used_ == buf_.size()) {
      finish(false, "response head too large");
      return;
    }
    ssize_t n = read_some(buf_.data() + used_, buf_.size() - used_);
    if (n == net::kWouldBlock) return;
    if (n == net::kIoError) {
      finish(false, tls_ ? "TLS: " + std::string(tls_->last_error()) : socket_error_reason(errno));
      return;
    }
    if (n == 0) {
      finish(false, used_ ? "invalid response: connection closed inside the head"
                          : "connection closed without a response");
      return;
    }
    used_ += static_cast<size_t>(n);
    if (h2_) {
      if (read_h2(used_)) return;
      used_ = 0;
      continue;
    }
    http::Header storage[64];
    http::ResponseHead head;
    http::Limits limits;
    limits.max_request_line = buf_.size();
    limits.max_head_bytes = buf_.size();
    limits.max_headers = std::size(storage);
    auto r = http::parse_response(std::string_view(buf_.data(), used_), head, storage, limits,
                                  http::Method::Get);
    if (r.status == http::ParseStatus::NeedMore) continue;
    if (r.status == http::ParseStatus::Error) {
      finish(false, "invalid response");
      return;
    }
    // The head is all a probe needs: the body is left unread and the socket closed.
    const auto& c = target_.check;
    if (head.status < c.expect_status_min || head.status > c.expect_status_max) {
      finish(false, fmt::format("status {}", head.status));
      return;
    }
    state_->observe_latency(std::chrono::duration<double>(Clock::now() - started_).count());
    finish(true, "");
    return;
  }
}

// HTTP/2: the bytes read so far go to the session; true once the round is decided.
bool Probe::read_h2(size_t n) {
  uint16_t status = 0;
  std::string error;
  switch (h2_->feed(std::string_view(buf_.data(), n), status, error)) {
    case H2Probe::Result::NeedMore:
      return false;
    case H2Probe::Result::Error:
      finish(false, error);
      return true;
    case H2Probe::Result::Done:
      break;
  }
  const auto& c = target_.check;
  if (status < c.expect_status_min || status > c.expect_status_max) {
    finish(false, fmt::format("status {}", status));
    return true;
  }
  state_->observe_latency(std::chrono::duration<double>(Clock::now() - started_).count());
  finish(true, "");
  return true;
}

ssize_t Probe::write_some(const char* data, size_t len) {
  return tls_ ? tls_->write(fd_, data, len) : net::write_some(fd_, data, len);
}

ssize_t Probe::read_some(char* buf, size_t len) {
  return tls_ ? tls_->read(fd_, buf, len) : net::read_some(fd_, buf, len);
}

void Probe::close_socket() {
  if (fd_ < 0) return;
  if (tls_) {
    tls_->shutdown(fd_);
    tls_.reset();
  }
  h2_.reset();
  alpn_pending_ = false;
  reactor_.remove(fd_);
  net::close_fd(fd_);
  fd_ = -1;
}

void Probe::finish(bool passed, std::string reason) {
  close_socket();
  timer_.cancel();
  request_.clear();
  request_.shrink_to_fit();
  const auto& c = target_.check;
  bool up = state_->up.load(std::memory_order_relaxed);
  if (passed) {
    probe_passed(*state_, started_.time_since_epoch().count());
    failures_ = 0;
    if (passes_ < std::numeric_limits<uint32_t>::max()) ++passes_;
    if (!up && passes_ >= c.rise) {
      state_->ramp_start_ns.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                                  std::memory_order_relaxed);
      state_->up.store(true, std::memory_order_relaxed);
      log::info("server {}/{} UP: {} consecutive pass{}", target_.backend, target_.server, passes_,
                passes_ == 1 ? "" : "es");
    }
  } else {
    state_->probes_failed.fetch_add(1, std::memory_order_relaxed);
    passes_ = 0;
    if (failures_ < std::numeric_limits<uint32_t>::max()) ++failures_;
    log::debug("server {}/{} health check failed: {}", target_.backend, target_.server, reason);
    if (up && failures_ >= c.fall) {
      state_->up.store(false, std::memory_order_relaxed);
      log::warn("server {}/{} DOWN: {} consecutive failure{}: {}", target_.backend, target_.server,
                failures_, failures_ == 1 ? "" : "s", reason);
    }
  }
  // Rounds start every interval (from the last start), not interval after the last end.
  auto next = started_ + jittered_interval();
  auto now = Clock::now();
  schedule(next > now ? next - now : Clock::duration::zero());
}

}  // namespace weir::health
