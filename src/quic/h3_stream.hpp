#pragma once
// One HTTP/3 request stream: the request as nghttp3 decodes it (QPACK fields, DATA payload:
// proxy::MuxStream, shared with HTTP/2), and the answer of its exchange — the same exchange
// HTTP/1.1 and HTTP/2 run — as a HEADERS frame plus a data reader.
//
// Memory per stream is bounded both ways: request payload waits here at most up to the stream's
// receive window (limits.h3_stream_window: the window opens only as the exchange takes bytes),
// and response bytes are pulled from the exchange into blocks that stay until the client
// acknowledges them (QUIC may retransmit them), at most H3Connection::send_cap() beyond what was
// acknowledged.
#include <nghttp3/nghttp3.h>

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "core/buffer.hpp"
#include "proxy/mux_stream.hpp"

namespace weir::quic {

class H3Connection;

class H3Stream final : public proxy::MuxStream {
 public:
  H3Stream(H3Connection& conn, int64_t id);
  ~H3Stream() override;
  int64_t id() const { return id_; }

  // --- the connection's turn
  // nghttp3's data reader.
  nghttp3_ssize read_data(nghttp3_vec* vec, size_t veccnt, uint32_t* flags);
  // The client acknowledged `n` more bytes of the response body (nghttp3 counts only what
  // read_data gave it): they may go.
  void acked(uint64_t n);
  void on_closed() { closed_ = true; }
  // The whole answer went to nghttp3 (a client reset after that is no abuse).
  bool answered() const { return answer_ == Answer::Done || (local_ && local_given_ > 0); }

  // --- Downstream, response side
  const proxy::ClientInfo& client() const override;
  void send_interim(const http::ResponseHead& head) override;
  proxy::HeadResult send_head(const proxy::ResponseOut& head) override;
  size_t send_body(std::string_view) override { return 0; }
  bool finish_body(std::string_view trailers) override;
  bool pulls_body() const override { return true; }
  void body_available() override;
  bool upgrade(proxy::UpstreamConn*, proxy::ServerSlot&) override { return false; }
  void exchange_done(bool response_complete, bool request_complete) override;

 private:
  enum class Answer : uint8_t { Pending, Streaming, Done, Reset };
  // MuxStream
  uint64_t max_header_bytes() const override;
  uint32_t max_headers() const override;
  void give_window(size_t n) override;
  void refuse_trailers() override { reset(NGHTTP3_H3_EXCESSIVE_LOAD); }
  void schedule() override;
  // STOP_SENDING at once and the 431 without waiting for the rest of the section: a header
  // section (a QPACK reference bomb) could otherwise be decoded to any size first.
  void head_too_large() override;

  int submit(const proxy::ResponseOut& head, bool final_head);
  bool submit_trailers();
  void reset(uint64_t code);
  void stop_reading(uint64_t code);  // STOP_SENDING: the rest of the request is not wanted
  // Pulls response bytes from the exchange into the send blocks, up to the cap.
  void fill();

  H3Connection& conn_;
  Answer answer_ = Answer::Pending;
  bool reading_stopped_ = false;

  // response body: blocks of bytes given to nghttp3 (until acknowledged) and not yet given
  std::deque<Buffer> out_;
  uint64_t out_bytes_ = 0;  // in out_
  uint64_t given_ = 0;      // of out_'s bytes, those nghttp3 has (from the front)
  bool eof_ = false;        // the exchange's body ended (eof seen by fill())
  bool eof_given_ = false;
  bool deferred_ = false;  // read_data said WOULDBLOCK: resume when bytes or acks arrive
  std::string local_body_;
  size_t local_given_ = 0;
  bool local_ = false;
  std::string resp_trailers_;
};

}  // namespace weir::quic
