#pragma once
// One request's trip through weir, whatever codec carried it:
//
//   start() ─ route ─ filters.on_request ─ affinity (hash key, sticky cookie) ─ pick ─┬─ connect
//           (answered locally: 404, redirect, 431 ...)          (all full: wait queue)┘  or reuse
//   ─ request head (filters.on_upstream_request) and body up ─ response head (filters.on_response,
//   sticky cookie) ─ body down ─ done: the upstream connection back to the pool.
//
// Failures before any response byte retry on another server within `retries` and the retry
// budget; after, the only honest signal left is aborting the downstream. The upstream side
// speaks HTTP/1.1 (exchange_io.cpp); picking, queueing, connecting and retrying are in
// exchange_pick.cpp.
//
// An exchange lives in the worker's ExchangePool between requests: a connection holds one only
// while a request is in flight, so an idle keep-alive connection holds no per-request state.
#include <cstdint>
#include <string>

#include "balance/balancer.hpp"
#include "core/timer.hpp"
#include "http/body_decoder.hpp"
#include "model/ids.hpp"
#include "proxy/access_log.hpp"
#include "proxy/downstream.hpp"
#include "proxy/filter.hpp"
#include "proxy/head_edits.hpp"
#include "proxy/splice.hpp"
#include "proxy/upstream_conn.hpp"
#include "proxy/worker.hpp"

namespace weir::cache {
class Entry;
enum class WaitResult : uint8_t;
}  // namespace weir::cache

namespace weir::proxy {

struct StaticAnswer;
struct CacheState;

class Exchange final : public UpstreamOwner {
 public:
  explicit Exchange(Worker& w);
  ~Exchange() override;

  // An HTTP request whose head is parsed (views valid during the call only; `head_len` bytes of
  // the client's buffer hold it, for HTTP/1.1). Answers locally or starts the upstream side.
  void start(Downstream& ds, const http::RequestHead& req);
  // The same for a request weir makes itself (background.hpp): a cache revalidation.
  void start_background(Downstream& ds, const http::RequestHead& req) {
    background_ = true;
    start(ds, req);
  }
  // A request that could not even be read whole (400, 408, 431, a bad HTTP/2 head): weir's own
  // answer through the listener's filters, and the connection ends after it.
  void start_error(Downstream& ds, uint16_t status);
  // A connection refused on accept (403 access, 429 max_connections): answered and closed.
  void start_refusal(Downstream& ds, uint16_t status, uint32_t retry_after);
  // Layer 4: connect to a server of `backend` (retrying elsewhere), then hand the connection to
  // the downstream (upgrade()). Nothing is parsed.
  void start_tcp(Downstream& ds, BackendId backend);
  // Moves the request body up and the response down, as far as both sides allow. Returns true
  // if anything moved.
  bool pump();
  // HTTP/2: the stream's data source pulls response payload (a copy into `buf`). Sets `eof`
  // when the body is complete; returns -1 if the body cannot complete (the stream is reset).
  ssize_t pull_body(char* buf, size_t len, bool& eof);
  // The client is gone: release the server slot and connection, say nothing more (counted as
  // client_closed).
  void cancel();
  // Back into the pool: cancel() and let go of the view.
  void recycle();

  void on_upstream_event(uint32_t events) override;
  // The client's turn: the rest of its request body is awaited and nothing of it waits to go
  // to a server (buffers may go back to the pool meanwhile).
  bool waiting_for_client() const;
  bool websocket_over_h2() const { return ws_over_h2_; }
  // The head of a wait queue: a server slot was freed on this worker.
  void on_queue_wake();

  Exchange* queue_prev = nullptr;  // WaitQueue of its backend while queued
  Exchange* queue_next = nullptr;
  Exchange* pool_next = nullptr;  // ExchangePool free list

 private:
  enum class Phase : uint8_t {
    Idle,        // in the pool
    Buffering,   // request_buffering: reading the body before a server is picked
    Queued,      // every server is full: waiting for a slot
    Coalescing,  // cache: waiting for another request's response to the same key
    Upstream,    // connecting, sending, waiting for the response head
    Streaming,   // the response head went to the client; the body follows
    Done,
  };
  // Refused: connect or TLS handshake failed. ConnectTimeout: no connection in time.
  // Reset: closed or reset before any response byte. Timeout: no response in time.
  // Garbage: a response weir cannot use. Unprocessed: an HTTP/2 server refused the stream
  // (REFUSED_STREAM, or GOAWAY before it): it never saw the request.
  enum class Failure : uint8_t { Refused, ConnectTimeout, Reset, Timeout, Garbage, Unprocessed };
  // Body: the client's inactivity while its request body is incomplete (timeouts.body, 408);
  // Response: the server's, once the request is all sent or while the server is not reading.
  enum class TimerKind : uint8_t { None, Connect, Response, Queue, Body, Coalesce };

  // exchange.cpp
  void reset_state(Downstream& ds);
  bool admit(const http::RequestHead& req);  // client_limits.rate; false: answered 429
  void note_request_id(const http::RequestHead& req);
  void note_request_facts(const http::RequestHead& req);  // for the body filters
  void note_grpc(const http::RequestHead& req);           // gRPC: its deadline
  static void websocket_key(uint64_t a, uint64_t b, char* out);
  void note_grpc_status(std::string_view field_lines);
  static int16_t parse_grpc_status(std::string_view value);
  void grpc_answer(uint16_t& status, std::string_view& body, std::string_view& content_type);
  // exchange_log.cpp
  void begin_log(Downstream& ds);
  void note_request(const http::RequestHead& req);  // the log's copy of the request line
  // The first cause given is the one logged.
  void note_end(Termination t) {
    if (!log_.ended) {
      log_.ended = true;
      log_.termination = t;
    }
  }
  Termination termination_for(uint16_t status) const;
  void write_access_log();
  bool route_and_filter(const http::RequestHead& req, std::string_view target,
                        std::string_view route_host);
  void choose_affinity(const http::RequestHead& req);
  bool build_forward_head(const http::RequestHead& req, std::string_view target,
                          std::string_view host, std::string_view route_host);
  void answer(uint16_t status, std::string_view body, bool close = false,
              std::string_view content_type = "text/plain");
  bool route_action(const config::Route& r, std::string_view target);  // redirect, respond
  // exchange_static.cpp
  bool serve_static(const http::RequestHead& req, size_t route, std::string_view path);
  void send_file_head(StaticAnswer& a);
  void send_local_head(ResponseOut& head);
  // exchange_cache.cpp
  bool cache_begin(const http::RequestHead& req, const config::Route& r, std::string_view host,
                   std::string_view target);
  void cache_edit_request(HeaderEdits& e);
  bool cache_on_head(const http::ResponseHead& resp, size_t head_len);
  void cache_edit_response(HeaderEdits& e, uint16_t status);
  // Inline checks: a route without a cache pays one test per call on the body path.
  bool cache_filling() const { return caching_ && cache_store_filling(); }
  bool cache_store_filling() const;
  void cache_tee(std::string_view payload) {
    if (caching_) cache_keep(payload);
  }
  void cache_keep(std::string_view payload);
  void cache_commit() {
    if (caching_) cache_publish();
  }
  void cache_publish();
  void cache_release() {
    caching_ = false;
    if (cache_) cache_drop();
  }
  void cache_drop();
  void cache_acquire();
  bool cache_wait();
  void cache_stop_waiting();
  void on_cache_wake(cache::WaitResult result);
  void on_coalesce_timeout();
  void only_if_cached_miss();
  bool cache_serve_stale(uint16_t status);
  void answer_from_entry(std::shared_ptr<const cache::Entry> entry, int64_t age,
                         std::string_view status_text);
  void touch_local_body_timer();
  bool pump_local_body();
  int feed_local_filter();
  ssize_t pull_local_body(char* buf, size_t len, bool& eof);
  void close_local_body();
  void local_body_done();
  bool local_body_failed(const char* why);
  void finish(bool response_complete);
  void count(uint16_t status);
  void arm(TimerKind kind, Millis after);
  void touch_response_timer();  // inactivity: every bit of progress pushes the deadline
  void touch_body_timer();      // the client's turn: its body bytes are awaited
  void touch_wait_timer();      // one of the two, by whose turn it is
  bool buffer_body();           // Phase::Buffering: reads what the client sent so far
  void on_body_timeout();
  void on_timer();
  const BackendRuntime& backend() const { return view_->snap->backend(backend_); }
  const config::Listener& listener() const;

  // exchange_pick.cpp
  void start_attempt();
  ServerId pick_server(bool& saw_full);
  ServerId pick_standby(const balance::TriedSet& skip, bool& saw_full);
  bool sticky_usable(ServerId id) const;
  void enqueue();
  void leave_queue();
  void queue_tick();
  void use_server(ServerId id, bool allow_pooled);
  void attach_upstream(UpstreamConn* up, bool fresh);
  void upstream_failed(Failure why);
  bool retry_elsewhere(bool unseen);
  void release_upstream(bool reusable);
  void abort();
  void client_closed();  // counts a request its client gave up (499 / client_closed)
  void client_gone();    // the client's body ended early: count, let go, end the exchange
  void keep_for_replay(std::string_view bytes);
  bool replayable() const { return !req_bytes_consumed_ || replay_ok_; }

  // exchange_io.cpp
  bool flush_upstream(std::string_view in_place = {}, size_t* in_place_taken = nullptr);
  bool pump_request();
  bool pump_response();
  bool handle_response_head();
  bool send_response_head(const http::ResponseHead& resp, size_t head_len);
  void hand_over();
  bool push_body();
  enum class Feed : uint8_t { Idle, Moved, Failed };
  Feed feed_filter();
  bool push_filtered();
  bool send_filtered(bool& progress);
  bool check_truncated();
  net::Stream* splice_target();
  bool splice_body(net::Stream& dst);
  void drop_body_state();  // splice pipe and body filter of this response
  void response_done();
  void on_connected();
  bool send_proxy_header();
  // HTTP/2 servers (upstream_h2.hpp): the stream's connection came up or failed; the head.
  bool h2_connect_state();
  bool h2_response_head();
  bool h2_backend() const;

  Worker& w_;
  Downstream* ds_ = nullptr;
  ViewPtr view_;
  const FilterChain* filters_ = nullptr;
  Phase phase_ = Phase::Idle;
  LazyTimer timer_;
  TimerKind timer_kind_ = TimerKind::None;

  // the request
  BackendId backend_;
  ServerId server_;
  ServerId sticky_server_;  // the server the request's sticky cookie names, if valid
  http::Method method_ = http::Method::Get;
  bool tcp_mode_ = false;
  bool idempotent_ = true;
  bool want_upgrade_ = false;
  bool ws_over_h2_ = false;  // RFC 8441: an HTTP/2 stream's WebSocket, to an HTTP/1.1 server
  bool ws_shut_ = false;     // ... whose client ended its side: the server's half-closed
  bool has_key_hash_ = false;
  uint64_t key_hash_ = 0;
  std::string fwd_head_;  // the forwarded head, kept for retries (capacity kept in the pool)
  size_t head_sent_ = 0;  // bytes of fwd_head_ written upstream on this attempt
  bool req_chunked_out_ = false;
  bool req_done_ = false;            // the whole request body went into the upstream buffer
  bool req_bytes_consumed_ = false;  // some body bytes left the client
  // A copy of the body bytes taken from the client (framing included), while they fit in
  // replay_limit_ (kReplayMax, or the request_buffering max): a request that no server saw can
  // go out again with its body, and a buffered body waits here for its server. `replay_ok_`
  // turns false for good once the body outgrows the limit. `replay_sent_`: how much of it is in
  // the current upstream's buffer (or gone).
  static constexpr size_t kReplayMax = 8 * 1024;
  std::string replay_body_;
  size_t replay_limit_ = kReplayMax;
  size_t replay_sent_ = 0;
  bool replay_ok_ = true;
  bool body_read_done_ = false;  // the client's body is all taken (buffered or sent)
  uint64_t buffer_max_ = 0;      // request_buffering: read this much before picking a server
  bool body_in_place_ = false;   // the body goes to the server from the downstream's own bytes
  HeaderEdits edits_;            // request edits, then response edits (kept in the pool)
  std::optional<config::RequestBuffering> route_buffering_;
  const config::RouteRewrite* rewrite_ = nullptr;  // the route's (the view keeps it alive)
  std::string rewritten_;   // the rewritten target (capacity kept)  // the route's, if it has one
  std::string local_body_;  // weir's own answer body (when it is not a literal)
  // The request's Accept-Encoding fields (comma-joined, capacity kept), when the route has body
  // filters; fields beyond kMaxAcceptEncoding bytes are left out.
  static constexpr size_t kMaxAcceptEncoding = 1024;
  std::string accept_encoding_;
  // What the access log line needs, copied while the request's views live (capacity kept).
  // The request's text, allocated on the first logged request (an exchange of a listener that
  // does not log stays small: the pool keeps up to 256 of them).
  struct LogText {
    std::string client, method, host, path, user_agent, referer;
  };
  struct LogNote {
    bool on = false;
    int64_t start_ms = 0;  // wall clock
    std::unique_ptr<LogText> text;
    std::string_view proto, tls;  // static strings
    uint64_t bytes_in = 0, bytes_out = 0;
    double upstream_ms = -1;
    ServerId server;  // the last one tried
    bool ended = false;
    Termination termination = Termination::Ok;
  } log_;
  TimePoint log_start_{};
  size_t slot_ =
      0;  // the client's listen slot (the downstream may be gone when the line is written)
  std::string request_id_;   // `request_id`: the request's, or the one weir made (capacity kept)
  bool own_answer_ = false;  // route respond/redirect: the listener's error_pages do not apply

  // attempts
  balance::TriedSet tried_;
  uint32_t attempts_ = 0;
  bool retried_stale_ = false;
  uint8_t unprocessed_retries_ = 0;  // streams an HTTP/2 server refused, sent again
  // gRPC (content-type application/grpc*): its status, once known (-1: not yet), for
  // weir_requests_total's grpc_status label; weir's own errors are answered in gRPC's terms.
  bool grpc_ = false;
  int16_t grpc_status_ = -1;
  Millis response_timeout_{0};  // the backend's, or the request's grpc-timeout if shorter
  Millis grpc_timeout_{0};      // the request's grpc-timeout (0: none)
  Failure last_failure_ = Failure::Refused;
  TimePoint request_start_{};
  TimePoint attempt_start_{};
  TimePoint queue_deadline_{};
  UpstreamConn* up_ = nullptr;

  // the response
  bool resp_bytes_ = false;     // any response byte reached us on this attempt
  bool head_filtered_ = false;  // this attempt's final head went through the filters
  uint16_t status_ = 0;
  bool resp_keep_alive_ = false;
  http::BodyDecoder resp_body_;
  std::unique_ptr<SplicePipe> pipe_;         // while the body is spliced
  std::unique_ptr<BodyFilter> body_filter_;  // a filter transforms this response's body
  Buffer filtered_;                          // its output not yet taken by the client (a block)
  bool filter_done_ = false;                 // every output byte is in filtered_
  // The response's trailer fields, as HTTP/1.1 field lines ("Name: value\r\n" each, at most
  // 16 KiB): from the server's chunked trailer section or its HTTP/2 trailing HEADERS. Cleared
  // at each attempt; handed to Downstream::finish_body at the end of the body.
  std::string resp_trailers_;
  // weir's answer with a body of its own, sent as the client takes it: a `static` route's
  // file (`file_left_` bytes of `file_fd_`, owned, from `file_offset_`) or a stored response
  // (`mem_`, the rest of `mem_entry_`'s body).
  bool sending_local_ = false;
  int file_fd_ = -1;
  int corked_ = 0;  // the client socket TCP_CORK was set on while a file goes out (0: none)
  uint64_t file_offset_ = 0;
  uint64_t file_left_ = 0;
  std::shared_ptr<const cache::Entry> mem_entry_;
  std::string_view mem_;
  // The cache of this request's route (exchange_cache.cpp); allocated on first use, kept.
  std::unique_ptr<CacheState> cache_;
  bool caching_ = false;     // cache_ is in use for this request
  bool background_ = false;  // no client: a background revalidation (background.hpp)
};

// Exchanges not in use, per worker: a request takes one, its end gives it back.
class ExchangePool {
 public:
  explicit ExchangePool(Worker& w) : w_(w) {}
  ~ExchangePool();
  Exchange* take();
  void give_back(Exchange* e);
  // After the current batch of events: the exchange's own call stack may still be running.
  void give_back_later(Exchange* e);
  size_t cached() const { return cached_; }
  // Frees cached exchanges beyond `keep`.
  void trim(size_t keep);

 private:
  static constexpr size_t kMaxCached = 256;
  Worker& w_;
  Exchange* free_ = nullptr;
  size_t cached_ = 0;
  Exchange* later_ = nullptr;  // given back at the end of the current batch
  bool later_scheduled_ = false;
};

}  // namespace weir::proxy
