#pragma once
// HTTP/2 towards a client (nghttp2, server side). Each stream becomes one exchange that runs
// through the same proxy logic as HTTP/1.1: a stream ClientConn whose "client socket" is the
// stream's pipe (H2Pipe). The pipe carries the request as HTTP/1.1 bytes, built from the HEADERS
// and DATA frames, and takes the exchange's HTTP/1.1 response, which the session turns back into
// HEADERS and DATA frames. So routing, balancing, limits, retries, sticky sessions, queues and
// upstream pools need no second implementation, and the upstream side stays HTTP/1.1.
//
// Memory per stream is bounded: the request pipe holds at most the stream's receive window
// (flow control: WINDOW_UPDATE is sent only as the exchange reads), the response pipe at most
// kH2ResponsePipe bytes (a full pipe stops the exchange from reading its server). A stream whose
// client does not open its window therefore holds its server, not the worker's memory.
//
// Hostile clients: concurrent streams, header list size and count, CONTINUATION count, queued
// ACKs (nghttp2 options), plus two budgets of our own: client resets of unfinished streams
// (rapid reset, CVE-2023-44487) and cheap frames that do no work (PING, SETTINGS, PRIORITY,
// empty DATA, WINDOW_UPDATEs beyond what our DATA frames justify). Spending a budget sends
// GOAWAY(ENHANCE_YOUR_CALM) and closes the connection.
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "net/stream.hpp"
#include "proxy/h2_stream.hpp"

namespace weir::config {
struct GlobalLimits;
}

namespace weir::proxy {

class ClientConn;
class Worker;

class H2Session {
 public:
  // `io` is the connection's stream (TLS or plain); `conn` the connection that owns it.
  H2Session(Worker& w, ClientConn& conn, net::Stream& io);
  ~H2Session();
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  // Sends our SETTINGS. False if nghttp2 could not be set up.
  bool start(const config::GlobalLimits& limits);
  // One turn: feeds io.in to nghttp2, runs the exchanges that can move, writes frames into
  // io.out. Returns true if anything moved.
  bool pump();
  // Nothing more will be read or written: close the connection once io.out is flushed.
  bool finished() const;
  // Graceful end (drain, reload, idle): GOAWAY, no new streams; the open ones finish.
  void goaway();
  // The connection is closing: every exchange is closed now.
  void abort_all();
  size_t open_streams() const { return streams_.size(); }

  // From H2Pipe (an exchange read or wrote): the connection gets a turn soon.
  void stream_changed(H2Stream& s);
  void stream_exchange_closed(H2Stream& s);
  // The exchange has read request bytes up to stream position `taken`: return their window.
  void consume_request(H2Stream& s, uint64_t taken);
  // From a stream's exchange: the server's response head, parsed, with extra header lines
  // ("Name: value\r\n"…); the body then comes through the pipe as raw payload. False if the
  // stream cannot take it (the exchange then aborts).
  bool submit_parsed_head(H2Stream& s, const http::ResponseHead& head, std::string_view extra);
  void submit_interim(H2Stream& s, const http::ResponseHead& head);

 private:
  friend struct H2Callbacks;
  H2Stream* find(int32_t id);
  void finish_request_head(H2Stream& s, bool end_stream);  // h2_stream.cpp
  void start_exchange(H2Stream& s);
  void local_response(H2Stream& s, uint16_t status, std::string_view body);  // h2_stream.cpp
  bool emit_response(H2Stream& s);                                           // h2_stream.cpp
  bool submit_head(H2Stream& s);                                             // h2_stream.cpp
  int submit_fields(H2Stream& s, const http::ResponseHead& head, std::string_view extra,
                    bool final_head);  // h2_stream.cpp
  void reset(H2Stream& s, uint32_t code);
  void detach_exchange(H2Stream& s);
  bool run_exchanges();
  void collect_closed();
  double now_seconds() const;
  bool spend(double& tokens, double& last, double rate, double cap);
  void glitch(const char* what);
  void calm_down(const char* why);

  Worker& w_;
  ClientConn& conn_;
  net::Stream& io_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::unique_ptr<H2Stream>> streams_;
  uint64_t max_header_bytes_ = 16 * 1024;
  uint32_t max_headers_ = 100;
  bool goaway_sent_ = false;
  bool failed_ = false;        // a connection error: send what is queued (GOAWAY) and close
  std::string names_scratch_;  // response field names, lower-cased (submit_head)
  std::vector<nghttp2_nv> nv_scratch_;
  // budgets (token buckets, refilled per second)
  double reset_tokens_ = 0, reset_last_ = 0;
  double glitch_tokens_ = 0, glitch_last_ = 0;
  uint64_t window_credit_ = 0;  // WINDOW_UPDATEs our DATA frames justify
};

}  // namespace weir::proxy
