#pragma once
// One client connection speaking HTTP/1.1, and the request it has in flight.
//
// Phases: Head (waiting for / parsing a request head) → Exchange (request forwarded and the
// response streamed back, bodies both ways with backpressure) → Head again on keep-alive, or
// Tunnel after a 101, or Lingering (half-closed, draining input) → closed.
// The code is split by phase: client_conn.cpp (client side, local answers, timers),
// exchange.cpp (upstream side: connect, retry, stream), tunnel.cpp.
#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "balance/balancer.hpp"
#include "core/reactor.hpp"
#include "core/timer.hpp"
#include "http/body_decoder.hpp"
#include "net/stream.hpp"
#include "proxy/forward.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {

class UpstreamConn;
class H2Session;
struct H2Stream;

class ClientConn final : public EventHandler {
 public:
  ClientConn(Worker& w, int fd, const sockaddr_storage& peer, size_t slot);
  // One stream of an HTTP/2 connection: an exchange whose client side is the stream's pipe
  // (H2Pipe) instead of a socket. It lives for one request and is not in the worker's list.
  ClientConn(Worker& w, const ClientConn& connection, std::unique_ptr<net::Transport> pipe,
             H2Stream* stream);
  ~ClientConn() override;

  void start();
  void start_tcp();
  void start_stream();
  // The stream's pipe has request bytes to read or room for response bytes.
  void on_pipe_ready();
  // Another turn soon, after the current events (HTTP/2: an exchange produced output).
  void schedule_turn();
  // A new config was installed: HTTP/2 connections send GOAWAY so clients reconnect.
  void on_new_config();
  const std::string& peer_ip() const { return client_ip_; }
  // The stream is gone (reset by the client): nothing may reach it any more.
  void detach_stream() { h2_stream_ = nullptr; }
  void on_event(uint32_t events) override;
  void on_upstream_event(uint32_t events);
  void begin_drain();
  void close();

  ClientConn* prev = nullptr;  // Worker's intrusive list
  ClientConn* next = nullptr;
  ClientConn* queue_prev = nullptr;  // WaitQueue of its backend while queued
  ClientConn* queue_next = nullptr;

  // The head of a wait queue: a server slot was freed on this worker.
  void on_queue_wake();

 private:
  enum class Phase : uint8_t { Head, Exchange, Tunnel, Lingering, H2, Closed };
  enum class TimerKind : uint8_t { None, Idle, Header, Connect, Response, Tunnel, Linger, Queue };
  enum class Failure : uint8_t { Refused, Reset, Timeout, Garbage };

  // client side (client_conn.cpp)
  void run();
  bool handle_head();
  void begin_request(const http::RequestHead& req, size_t head_len);
  void choose_affinity(const http::RequestHead& req);
  void send_local(uint16_t status, std::string_view body, bool close,
                  std::string_view extra_headers = {});
  void finish_exchange_bookkeeping(uint16_t status, int backend);
  void close_after_flush();
  void arm(TimerKind kind, Millis after);
  void on_timer();
  void ensure_buffers();
  bool check_alpn();
  bool check_h2c_preface(bool& wait);
  void become_h2();
  void run_h2();
  bool redirect_https(std::string_view host, std::string_view target, size_t head_len);
  void append_hsts(std::string& out) const;
  void finish_turn();  // a pending turn callback ran: free the object if it closed meanwhile

  // upstream side (exchange.cpp)
  void start_attempt();
  int pick_server(bool& saw_full);
  bool sticky_usable(int idx) const;
  void enqueue();
  void leave_queue();
  void queue_tick();
  void use_server(int idx, bool allow_pooled);
  bool flush_upstream();
  void attach_upstream(UpstreamConn* up, bool fresh);
  bool pump_request();
  bool pump_response();
  bool handle_response_head();
  void response_done();
  void upstream_failed(Failure why);
  void release_upstream(bool reusable);
  void abort_exchange();

  // tunnel (tunnel.cpp)
  bool pump_tunnel();

  Worker& w_;
  net::Stream client_;
  std::string client_ip_;
  size_t slot_;  // listen socket slot; the listener is looked up in the current view
  const config::Listener& listener_cfg() const;
  size_t listener_index(const WorkerView& v) const { return v.slot_listener[slot_]; }
  Phase phase_ = Phase::Head;
  Timer timer_;
  TimerKind timer_kind_ = TimerKind::None;
  bool close_after_flush_ = false;
  bool keep_alive_ = true;
  bool tcp_mode_ = false;  // a layer-4 listener: connect, then tunnel
  bool draining_ = false;
  bool yield_pending_ = false;  // a turn is queued with Reactor::yield
  bool turn_pending_ = false;   // a turn is queued with schedule_turn
  int pending_turns_ = 0;       // queued turn callbacks: the last one frees us if we closed
  bool tls_ = false;            // the client connection is TLS (X-Forwarded-Proto, Secure)
  bool alpn_checked_ = false;
  bool stream_mode_ = false;  // an HTTP/2 stream's exchange
  std::unique_ptr<H2Session> h2_;
  H2Stream* h2_stream_ = nullptr;  // stream mode: where response heads go (null once detached)
  bool clean_end_ = false;         // the last exchange read its request whole (no lingering needed)
  bool shut_wr_ = false;           // tunnel: we half-closed the client
  bool up_shut_wr_ = false;        // tunnel: we half-closed the server

  // the request in flight
  ViewPtr view_;
  int backend_ = -1;
  int server_ = -1;
  Buffer fwd_head_;  // the forwarded head, kept for retries (a pooled block, none while idle)
  http::Method method_ = http::Method::Get;
  uint8_t version_minor_ = 1;
  bool idempotent_ = true;
  bool want_upgrade_ = false;
  http::BodyDecoder req_body_;
  bool req_chunked_out_ = false;
  bool req_done_ = false;
  uint64_t req_body_forwarded_ = 0;
  bool req_bytes_consumed_ = false;  // some body bytes left the client buffer: no replay
  size_t head_sent_ = 0;             // bytes of fwd_head_ written upstream on this attempt
  balance::TriedSet tried_;
  uint64_t key_hash_ = 0;  // hash of the backend's hash_key for this request
  bool has_key_hash_ = false;
  int sticky_server_ = -1;  // the server the request's sticky cookie names, if valid
  uint32_t attempts_ = 0;
  bool retried_stale_ = false;
  Failure last_failure_ = Failure::Refused;
  TimePoint request_start_{};
  TimePoint attempt_start_{};
  bool queued_ = false;
  TimePoint queue_deadline_{};
  UpstreamConn* up_ = nullptr;
  bool resp_head_done_ = false;
  bool resp_bytes_ = false;  // any response byte reached us on this attempt
  uint16_t resp_status_ = 0;
  bool resp_keep_alive_ = false;
  http::BodyDecoder resp_body_;
  OutFraming resp_framing_ = OutFraming::None;
};

}  // namespace weir::proxy
