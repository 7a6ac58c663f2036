#pragma once
// One HTTP/3 request stream: the request as nghttp3 decodes it (QPACK fields, DATA payload),
// and the Downstream its exchange answers through — the same exchange HTTP/1.1 and HTTP/2 run.
// The head is turned into the http::RequestHead an HTTP/1.1 connection parses by the HTTP/2
// code (H2RequestHead: pseudo-fields, cookie crumbs, the same checks), since HTTP/3 fields
// follow HTTP/2's rules (RFC 9114 §4.3).
//
// Memory per stream is bounded both ways: request payload waits here at most up to the stream's
// receive window (limits.h3_stream_window: the window opens only as the exchange takes bytes),
// and response bytes are pulled from the exchange into blocks that stay until the client
// acknowledges them (QUIC may retransmit them), at most kSendCap beyond what was acknowledged.
#include <nghttp3/nghttp3.h>

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "core/block_queue.hpp"
#include "core/buffer.hpp"
#include "proxy/downstream.hpp"
#include "proxy/h2_request.hpp"

namespace weir::proxy {
class Exchange;
}

namespace weir::quic {

class H3Connection;

class H3Stream final : public proxy::Downstream {
 public:
  H3Stream(H3Connection& conn, int64_t id);
  ~H3Stream() override;
  int64_t id() const { return id_; }

  // --- request, from nghttp3's callbacks
  void add_field(std::string_view name, std::string_view value);
  void end_head(bool fin);
  void append_data(std::string_view data);
  void add_trailer(std::string_view name, std::string_view value);
  void end_request();

  // --- the connection's turn
  bool run_exchange();
  // nghttp3's data reader.
  nghttp3_ssize read_data(nghttp3_vec* vec, size_t veccnt, uint32_t* flags);
  // The client acknowledged `n` more bytes of the response stream (frames included: only DATA
  // payload is ours, nghttp3 tells us per stream what it gave us).
  void acked(uint64_t n);
  void on_closed() { closed_ = true; }
  void abandon();  // the connection is going away: the exchange is cancelled
  bool closed() const { return closed_; }
  // The whole answer went to nghttp3 (a client reset after that is no abuse).
  bool answered() const { return answer_ == Answer::Done || (local_ && local_given_ > 0); }
  size_t unconsumed() const { return unconsumed_; }
  void stop_reading();  // the answer is complete: the rest of the request body is not wanted

  // --- Downstream
  const proxy::ClientInfo& client() const override;
  proxy::BodyRead read_body(proxy::BodySink& sink) override;
  bool has_body_in_place() const override { return true; }
  proxy::BodyRead body_in_place(std::string_view& bytes) override;
  void consume_body(size_t n) override;
  std::string_view request_trailers() const override { return req_trailers_; }
  void send_interim(const http::ResponseHead& head) override;
  proxy::HeadResult send_head(const proxy::ResponseOut& head) override;
  size_t send_body(std::string_view) override { return 0; }
  bool finish_body(std::string_view trailers) override;
  bool pulls_body() const override { return true; }
  void body_available() override;
  void wake() override;
  bool upgrade(proxy::UpstreamConn*, proxy::ServerSlot&) override { return false; }
  void exchange_done(bool response_complete, bool request_complete) override;

 private:
  enum class Head : uint8_t { Receiving, TooLarge, Complete };
  enum class Answer : uint8_t { Pending, Streaming, Done, Reset };
  void start_exchange();
  int submit(const proxy::ResponseOut& head, bool final_head);
  bool submit_trailers();
  void reset(uint64_t code);
  // Pulls response bytes from the exchange into the send blocks, up to the cap.
  void fill();

  H3Connection& conn_;
  int64_t id_;
  proxy::Exchange* ex_ = nullptr;

  proxy::H2RequestHead head_fields_;
  Head head_ = Head::Receiving;
  Answer answer_ = Answer::Pending;
  bool started_ = false;
  bool wants_run_ = false;
  bool closed_ = false;
  bool req_ended_ = false;
  bool trailers_refused_ = false;
  bool reading_stopped_ = false;

  // request body
  BlockQueue body_;
  size_t unconsumed_ = 0;  // payload received, not yet returned as window
  uint32_t trailer_count_ = 0;
  size_t trailer_bytes_ = 0;
  std::string req_trailers_;

  // response body: blocks of bytes given to nghttp3 (until acknowledged) and not yet given
  std::deque<Buffer> out_;
  uint64_t out_bytes_ = 0;   // in out_
  uint64_t given_ = 0;       // of out_'s bytes, those nghttp3 has (from the front)
  uint64_t ack_credit_ = 0;  // acknowledged bytes of weir's own body (local answers)
  bool eof_ = false;         // the exchange's body ended (eof seen by fill())
  bool eof_given_ = false;
  bool deferred_ = false;  // read_data said WOULDBLOCK: resume when bytes or acks arrive
  std::string local_body_;
  size_t local_given_ = 0;
  bool local_ = false;
  std::string resp_trailers_;
};

}  // namespace weir::quic
