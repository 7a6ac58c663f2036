#pragma once
// One QUIC connection carrying HTTP/3 (ngtcp2 for the transport, nghttp3 for HTTP/3, GnuTLS for
// the handshake): packets in from its endpoint, packets out through it, one timer (ngtcp2's
// expiry: retransmission, ACK delay, pacing, idle timeout), and an H3Stream per request.
//
// Limits: streams (limits.h3_max_concurrent_streams, more are granted as streams end), receive
// windows per stream and connection (limits.h3_stream_window / h3_connection_window: never
// auto-tuned beyond), the request head (max_header_bytes, max_headers), the idle timeout
// (limits.quic_idle_timeout: no packets at all), the listener's idle timeout (no request open:
// GOAWAY), the handshake (10 s).
//
// Ends: GOAWAY on drain or reload, then the connection closes once its streams are done;
// an error sends CONNECTION_CLOSE and keeps answering with it for the closing period (three
// PTOs); a CONNECTION_CLOSE from the client starts the draining period (silence).
#include <gnutls/gnutls.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/timer.hpp"
#include "proxy/downstream.hpp"
#include "quic/endpoint.hpp"
#include "quic/h3_stream.hpp"

namespace weir::quic {

class H3Connection {
 public:
  H3Connection(Endpoint& ep, const PathAddrs& path, proxy::ClientOrigin origin);
  ~H3Connection();
  H3Connection(const H3Connection&) = delete;
  H3Connection& operator=(const H3Connection&) = delete;

  // Sets up the server side for this first Initial (`odcid`/`token_valid`: after a Retry, the
  // client's original DCID and our Retry's SCID). False: drop it (logged).
  bool init(const ngtcp2_pkt_hd& hd, const ngtcp2_cid* retry_odcid, bool address_validated);
  // The packet that made it: false if it does not start a connection (undecryptable, invalid
  // frames), which is then forgotten without an answer. A TLS failure (no h3 in ALPN, …) is
  // answered with CONNECTION_CLOSE and returns true.
  bool first_packet(const PathAddrs& path, const uint8_t* data, size_t len, uint8_t ecn);
  // A packet for this connection.
  void on_packet(const PathAddrs& path, const uint8_t* data, size_t len, uint8_t ecn);
  void begin_drain();  // GOAWAY; close when the streams are done
  void close_now();    // the worker stops: no goodbye beyond one CONNECTION_CLOSE
  bool handshake_completed() const { return handshake_done_; }

  // For streams.
  proxy::Worker& worker() { return ep_.worker(); }
  nghttp3_conn* h3() { return h3_; }
  ngtcp2_conn* conn() { return conn_; }
  const proxy::ClientInfo& client() const { return client_; }
  uint64_t max_header_bytes() const { return max_header_bytes_; }
  uint32_t max_headers() const { return max_headers_; }
  std::vector<nghttp3_nv>& nv_scratch() { return nv_; }
  std::string& names_scratch() { return names_; }
  uint64_t send_cap() const { return send_cap_; }
  // The connection IDs the endpoint routes to this connection (as map keys).
  std::vector<std::string>& cid_keys() { return cid_keys_; }
  // Request body bytes the exchange took: the client may send that many more.
  void consumed(int64_t stream_id, size_t n);
  void schedule_turn();
  void stream_closed(int64_t id);

 private:
  friend struct Callbacks;
  friend struct H3Callbacks;
  bool setup_h3();
  void turn();
  bool write();
  void arm_timer();
  void on_timer();
  void handle_error(int liberr);
  void enter_closing();   // CONNECTION_CLOSE sent: answer with it until the period ends
  void enter_draining();  // the client closed: stay silent until the period ends
  void retire();          // forget it (freed later by the endpoint)
  void collect_closed();
  // The client reset (or stopped) stream `id`: unanswered ones spend a budget (rapid reset).
  void client_reset(int64_t id);
  uint64_t ts() const;

  Endpoint& ep_;
  PathAddrs path_;
  proxy::ClientInfo client_;
  ngtcp2_conn* conn_ = nullptr;
  nghttp3_conn* h3_ = nullptr;
  gnutls_session_t tls_ = nullptr;
  std::shared_ptr<TlsContext> tls_ctx_;
  ngtcp2_crypto_conn_ref ref_{};
  std::map<int64_t, std::unique_ptr<H3Stream>> streams_;
  Timer timer_;
  // No request open for the listener's idle timeout (a client that only keeps the connection
  // alive with PINGs): GOAWAY, then the connection closes.
  Timer idle_timer_;
  ngtcp2_connection_close_error last_error_{};
  std::vector<uint8_t> close_pkt_;  // our CONNECTION_CLOSE, resent during the closing period
  TimePoint last_close_sent_{};
  uint64_t max_header_bytes_ = 16 * 1024;
  uint32_t max_headers_ = 100;
  uint64_t send_cap_ = 256 * 1024;
  std::vector<nghttp3_nv> nv_;
  std::vector<std::string> cid_keys_;
  std::string names_;
  double reset_tokens_ = 0;  // rapid-reset budget (a token bucket, refilled per second)
  TimePoint reset_last_{};
  bool close_after_read_ = false;  // a budget ran out inside a callback: close after this read
  bool handshake_done_ = false;
  bool goaway_ = false;
  bool closing_ = false;  // closing or draining period: no more streams, no more writes
  bool retired_ = false;
  bool turn_queued_ = false;
  bool in_turn_ = false;
};

}  // namespace weir::quic
