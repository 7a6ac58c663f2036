#pragma once
// A client connection speaking HTTP/2 (nghttp2, server side): ALPN h2 after a TLS handshake,
// or the h2c preface on a listener with `h2c: true` (an H1Connection hands the socket over).
// Each stream is an H2Stream that drives one Exchange directly — the same exchange an
// HTTP/1.1 request runs — so routing, filters, balancing, limits, retries, sticky sessions,
// queues and upstream pools have one implementation.
//
// Hostile clients: concurrent streams, header list size and count, CONTINUATION count, queued
// ACKs (nghttp2 options), plus two budgets of our own: client resets of unfinished streams
// (rapid reset, CVE-2023-44487) and cheap frames that do no work (PING, SETTINGS, PRIORITY,
// empty DATA, WINDOW_UPDATEs beyond what our DATA frames justify). Spending a budget sends
// GOAWAY(ENHANCE_YOUR_CALM) and closes the connection.
//
// Stream ids (RFC 9113 §5.1.1), which nghttp2 leaves to us: a HEADERS frame on a client stream
// id at or below the highest one the client has used, for a stream that is not open, is a
// connection error PROTOCOL_ERROR (GOAWAY, then close), unless our side reset that stream
// lately (the client may have sent it before it saw the reset) or the stream came after a
// GOAWAY of ours (ignored). See check_headers_stream().
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxy/client_conn.hpp"
#include "proxy/h2_stream.hpp"

namespace weir::proxy {

class H2Connection final : public ClientConn {
 public:
  H2Connection(Worker& w, ClientOrigin origin, bool tls);
  ~H2Connection() override;

  // The socket was handed over: SETTINGS out, then the frames already buffered.
  void start() override;
  void begin_drain() override { goaway(); }
  void on_new_config() override { goaway(); }
  bool holds_tunnel() const override;

  // For streams.
  Worker& worker() { return w_; }
  nghttp2_session* session() { return session_; }
  const ClientInfo& client() const { return client_; }
  uint64_t max_header_bytes() const { return max_header_bytes_; }
  uint32_t max_headers() const { return max_headers_; }
  std::vector<nghttp2_nv>& nv_scratch() { return nv_; }
  std::string& names_scratch() { return names_; }
  size_t open_streams() const { return streams_.size(); }

 private:
  friend struct H2Callbacks;
  bool turn() override;
  void on_timeout() override;
  void on_close() override;
  bool idle() const override { return streams_.empty(); }

  bool setup();
  H2Stream* find(int32_t id);
  void goaway();
  bool run_streams();
  void collect_closed();
  bool finished() const;
  double now_seconds() const;
  bool spend(double& tokens, double& last, double rate, double cap);
  void glitch(const char* what);
  void calm_down(const char* why);
  void protocol_error(const char* why);
  // A HEADERS frame begins on stream `id` (before nghttp2 acts on it).
  void check_headers_stream(int32_t id);
  // Our side reset stream `id` (RST_STREAM queued or sent, by a stream or by nghttp2).
  void note_reset(int32_t id);
  bool reset_lately(int32_t id) const;

  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::unique_ptr<H2Stream>> streams_;
  uint64_t max_header_bytes_ = 16 * 1024;
  uint32_t max_headers_ = 100;
  bool goaway_sent_ = false;
  bool failed_ = false;  // a connection error: send what is queued (GOAWAY) and close
  std::string names_;    // response field names, lower-cased (H2Stream::submit)
  std::vector<nghttp2_nv> nv_;
  // budgets (token buckets, refilled per second)
  double reset_tokens_ = 0, reset_last_ = 0;
  double glitch_tokens_ = 0, glitch_last_ = 0;
  uint64_t window_credit_ = 0;  // WINDOW_UPDATEs our DATA frames justify
  // stream ids
  int32_t highest_client_stream_ = 0;  // the highest stream id of a client HEADERS frame
  int32_t goaway_last_stream_ = 0;     // the last stream id of our GOAWAY (goaway_sent_)
  std::vector<int32_t> resets_;        // streams we reset lately: a ring of up to reset_memory_
  size_t resets_next_ = 0;             // the ring's oldest entry once it is full
  size_t reset_memory_ = 100;          // h2_max_concurrent_streams, within [16, 1024]
};

}  // namespace weir::proxy
