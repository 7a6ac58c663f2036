#pragma once
// One HTTP/2 stream: the request as it arrives in HEADERS and DATA frames, and the Downstream
// its exchange answers through. The exchange sees the same parsed request head an HTTP/1.1
// connection gives it (checked by http::interpret_request, so HTTP/1.1's rules apply to both),
// reads the body straight from the DATA payload, and its answer goes out as HEADERS plus a data
// source that pulls body bytes from the exchange when the client's window allows: no HTTP/1.1
// bytes are built or parsed in between.
//
// Memory per stream is bounded: request payload waits here at most up to the stream's receive
// window (WINDOW_UPDATE is sent only as the exchange takes bytes), and the response waits in the
// exchange's server buffer (one block) until the client's window lets nghttp2 take it.
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/block_queue.hpp"
#include "http/parser.hpp"
#include "proxy/downstream.hpp"
#include "proxy/h2_request.hpp"

namespace weir::proxy {

class Exchange;
class H2Connection;

class H2Stream final : public Downstream {
 public:
  H2Stream(H2Connection& conn, int32_t id);
  ~H2Stream() override;

  int32_t id() const { return id_; }

  // --- request, from nghttp2's callbacks
  // One field of the request head; false once the head is too large (431 when it ends).
  void add_field(std::string_view name, std::string_view value);
  void end_head(bool end_stream);
  void append_data(std::string_view data);
  // One field of a trailing HEADERS frame, kept as an HTTP/1.1 field line. Bounded like the
  // head (max_header_bytes, max_headers) and by http::kMaxTrailerBytes: beyond, the stream is
  // reset (ENHANCE_YOUR_CALM) and the request never ends.
  void add_trailer(std::string_view name, std::string_view value);
  // END_STREAM: on DATA, or on the trailing HEADERS (after their fields).
  void end_request();
  bool head_done() const { return head_ == Head::Complete; }

  // --- the session's turn
  // Starts the exchange once the head is complete; pumps it when it asked for a turn.
  bool run_exchange();
  // nghttp2's data source for this stream's response body.
  ssize_t read_response(uint8_t* buf, size_t len, uint32_t* flags);
  // nghttp2 closed the stream (either side ended or reset it): nothing may reach it any more.
  void on_closed();
  // The connection is going away: the exchange is cancelled.
  void abandon();
  bool closed() const { return closed_; }
  // END_STREAM went out with the response / RST_STREAM was sent.
  bool response_sent() const { return answer_ == Answer::Sent; }
  bool reset_sent() const { return answer_ == Answer::Reset; }
  bool request_ended() const { return req_ended_; }
  void mark_response_sent() { answer_ = Answer::Sent; }
  void reset(uint32_t code);
  size_t unconsumed() const { return unconsumed_; }
  bool has_exchange() const { return ex_ != nullptr; }
  bool carries_websocket() const;  // RFC 8441: its exchange is a WebSocket

  // --- Downstream
  const ClientInfo& client() const override;
  BodyRead read_body(BodySink& sink) override;
  bool has_body_in_place() const override { return true; }
  BodyRead body_in_place(std::string_view& bytes) override;
  void consume_body(size_t n) override;
  std::string_view request_trailers() const override { return req_trailers_; }
  void send_interim(const http::ResponseHead& head) override;
  HeadResult send_head(const ResponseOut& head) override;
  size_t send_body(std::string_view) override { return 0; }
  bool finish_body(std::string_view trailers) override;
  bool pulls_body() const override { return true; }
  void body_available() override;
  void wake() override;
  bool upgrade(UpstreamConn*, ServerSlot&) override { return false; }
  void exchange_done(bool response_complete, bool request_complete) override;

 private:
  enum class Head : uint8_t { Receiving, TooLarge, Complete };
  enum class Answer : uint8_t {
    Pending,    // no final HEADERS yet
    Streaming,  // HEADERS submitted; the body is read by the data source
    Sent,       // END_STREAM went out
    Reset,      // RST_STREAM sent
  };
  void start_exchange();
  int submit(const ResponseOut& head, bool final_head);
  bool submit_trailers();

  H2Connection& conn_;
  int32_t id_;
  Exchange* ex_ = nullptr;

  H2RequestHead head_fields_;
  Head head_ = Head::Receiving;
  Answer answer_ = Answer::Pending;
  bool started_ = false;  // the exchange was started (it may be over by now)

  // request body: DATA payload not yet taken by the exchange
  BlockQueue body_;
  size_t unconsumed_ = 0;  // DATA bytes received and not yet returned as window
  bool req_ended_ = false;
  bool trailers_refused_ = false;  // over the limits: the stream was reset
  uint32_t trailer_count_ = 0;
  size_t trailer_bytes_ = 0;  // HPACK-decoded size, as the head counts it
  std::string req_trailers_;  // the request's trailing HEADERS, as field lines

  // response
  std::string local_body_;  // weir's own answer (the exchange is gone when it is read)
  size_t local_read_ = 0;
  std::string resp_trailers_;  // finish_body's, sent when the data source reaches the end
  bool local_ = false;         // the answer is weir's own (its body is local_body_)
  bool deferred_ = false;      // the data source said DEFERRED: resume when bytes arrive
  bool wants_run_ = false;     // the exchange asked for a turn
  bool closed_ = false;        // nghttp2 closed the stream: removed at the end of the turn
};

}  // namespace weir::proxy
