#pragma once
// One client connection speaking HTTP/1.1 (also where every http-listener connection starts:
// TLS handshake, then ALPN h2 or the h2c preface hand the socket to an H2Connection).
//
// Phases: Handshake (TLS) → Head (waiting for / parsing a request head) → Exchange (an Exchange
// from the worker's pool runs the request; this connection is its Downstream, doing the
// HTTP/1.1 framing both ways) → Head again on keep-alive, or Tunnel after a 101. Closing,
// lingering, turns and buffers are the driver's (net::Connection).
#include <memory>
#include <string>

#include "http/body_decoder.hpp"
#include "proxy/client_conn.hpp"
#include "proxy/forward.hpp"

namespace weir::proxy {

class Exchange;
class Tunnel;

class H1Connection final : public ClientConn, public Downstream {
 public:
  H1Connection(Worker& w, int fd, ClientOrigin origin);
  ~H1Connection() override;

  void start() override;
  void begin_drain() override;
  bool holds_tunnel() const override { return phase_ == Phase::Tunnel; }

  // Downstream
  const ClientInfo& client() const override { return client_; }
  BodyRead read_body(BodySink& sink) override;
  std::string_view request_trailers() const override {
    return req_trailers_ ? std::string_view(*req_trailers_) : std::string_view{};
  }
  void send_interim(const http::ResponseHead& head) override;
  HeadResult send_head(const ResponseOut& head) override;
  size_t send_body(std::string_view payload) override;
  net::Stream* splice_target() override;
  bool finish_body(std::string_view trailers) override;
  void wake() override { run(); }
  bool upgrade(UpstreamConn* up, ServerSlot& slot) override;
  void exchange_done(bool response_complete, bool request_complete) override;

 private:
  enum class Phase : uint8_t { Handshake, Head, Exchange, Tunnel };
  enum class TimerKind : uint8_t { None, Header, Idle, Tunnel };

  bool turn() override;
  void on_timeout() override;
  void on_close() override;
  void on_read_failed() override;
  // Empty buffers go back to the pool between requests, and while the exchange waits for the
  // rest of a slow request body (a slow-body client holds no block).
  bool idle() const override;

  bool check_handshake();
  bool handle_head();
  bool h2c_preface(bool& wait) const;
  void reject(uint16_t status);  // a request that could not be read: weir answers and closes
  void arm(TimerKind kind);

  // Small members first, together (an idle connection's size is what 10,000 of them cost).
  Phase phase_ = Phase::Head;
  TimerKind timer_kind_ = TimerKind::None;
  OutFraming framing_ = OutFraming::None;
  uint8_t version_minor_ = 1;
  bool keep_alive_ = true;
  bool draining_ = false;
  bool served_ = false;  // at least one exchange ended (an idle connection is a kept-alive one)
  Exchange* ex_ = nullptr;
  std::unique_ptr<Tunnel> tunnel_;
  http::BodyDecoder req_body_;  // the request body's framing (the current request)
  // its chunked trailer section, as the decoder handed it out (allocated when one comes)
  std::unique_ptr<std::string> req_trailers_;
};

}  // namespace weir::proxy
