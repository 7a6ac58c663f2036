#pragma once
// One server's active health check: a timer-driven state machine on the health checker's
// reactor. Each round opens one non-blocking connection (tcp: the connect is the check; http:
// a GET whose response head must carry an expected status), then closes it and counts a pass
// or a failure. `rise` passes in a row bring a down server up, `fall` failures take an up
// server down; each transition is one log line naming the reason.
#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "balance/balancer.hpp"
#include "config/config.hpp"
#include "core/reactor.hpp"
#include "core/timer.hpp"
#include "health/probe_h2.hpp"
#include "net/address.hpp"
#include "net/tls/tls.hpp"

namespace weir::health {

// What one probe checks, copied out of a snapshot (a probe outlives the snapshot it came from).
struct ProbeTarget {
  std::string backend;
  std::string server;
  net::SocketAddress addr;
  std::string host_header;  // the server address's host ("[v6]" bracketed), for `Host:`
  config::HealthCheck check;
  std::shared_ptr<net::tls::ClientContext> tls;  // http checks of a TLS server go over TLS
  // http checks speak the backend's protocol: HTTP/2 for h2 and h2c, and for auto when the
  // server's ALPN chooses h2.
  config::UpstreamProtocol protocol = config::UpstreamProtocol::Http1;
};

// A short, human reason for a socket error ("connection refused"), never a raw errno number.
std::string socket_error_reason(int err);

// The request an http probe sends.
std::string probe_request(const ProbeTarget& target);

class Probe final : public EventHandler {
 public:
  // Head bytes beyond this fail the probe: the body is never read, the head must be small.
  static constexpr size_t kReadBufferSize = 4096;

  // `rng` is the checker's (same thread) and must outlive the probe.
  Probe(Reactor& reactor, std::mt19937_64& rng, ProbeTarget target,
        std::shared_ptr<model::ServerState> state);
  ~Probe() override;
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  // Schedules the first round after a random 0..interval/2, so many servers do not fire at once.
  void start();
  // A reload: new settings apply from the next round (counters and state are kept).
  void reconfigure(ProbeTarget target);

  void on_event(uint32_t events) override;

 private:
  enum class Phase : uint8_t { Idle, Connecting, Sending, Reading };

  void on_timer();
  void begin_round();
  void on_connected();
  void send_request();
  void start_h2();
  bool read_h2(size_t n);
  void read_response();
  void finish(bool passed, std::string reason);
  void close_socket();
  ssize_t write_some(const char* data, size_t len);
  ssize_t read_some(char* buf, size_t len);
  void schedule(Clock::duration delay);
  Clock::duration jittered_interval();

  Reactor& reactor_;
  std::mt19937_64& rng_;
  ProbeTarget target_;
  std::shared_ptr<model::ServerState> state_;
  Timer timer_;  // Idle: the next round; otherwise: this round's timeout
  Phase phase_ = Phase::Idle;
  int fd_ = -1;
  std::unique_ptr<net::tls::TlsTransport> tls_;  // this round's TLS session, if any
  std::unique_ptr<H2Probe> h2_;                  // this round's HTTP/2 request, if any
  bool alpn_pending_ = false;                    // auto: HTTP/2 or not once TLS is done
  TimePoint started_{};
  config::Duration round_timeout_{};
  std::string request_;
  size_t sent_ = 0;
  std::array<char, kReadBufferSize> buf_{};
  size_t used_ = 0;
  uint32_t passes_ = 0;    // consecutive
  uint32_t failures_ = 0;  // consecutive
};

}  // namespace weir::health
