#pragma once
// One HTTP/2 stream: the request as it arrives in HEADERS and DATA frames (MuxStream, shared
// with HTTP/3), and the answer of its exchange as HEADERS plus a data source that pulls body
// bytes from the exchange when the client's window allows: no HTTP/1.1 bytes are built or
// parsed in between.
//
// Memory per stream is bounded: request payload waits at most up to the stream's receive window
// (WINDOW_UPDATE is sent only as the exchange takes bytes), and the response waits in the
// exchange's server buffer (one block) until the client's window lets nghttp2 take it.
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/parser.hpp"
#include "proxy/mux_stream.hpp"

namespace weir::proxy {

class H2Connection;

class H2Stream final : public MuxStream {
 public:
  H2Stream(H2Connection& conn, int32_t id);
  ~H2Stream() override;

  int32_t id() const { return static_cast<int32_t>(id_); }

  // --- the session's turn
  // nghttp2's data source for this stream's response body.
  ssize_t read_response(uint8_t* buf, size_t len, uint32_t* flags);
  // nghttp2 closed the stream (either side ended or reset it): nothing may reach it any more.
  void on_closed() { closed_ = true; }
  // END_STREAM went out with the response / RST_STREAM was sent.
  bool response_sent() const { return answer_ == Answer::Sent; }
  bool reset_sent() const { return answer_ == Answer::Reset; }
  void mark_response_sent() { answer_ = Answer::Sent; }
  void reset(uint32_t code);
  bool carries_websocket() const;  // RFC 8441: its exchange is a WebSocket

  // --- Downstream, response side
  const ClientInfo& client() const override;
  void send_interim(const http::ResponseHead& head) override;
  HeadResult send_head(const ResponseOut& head) override;
  size_t send_body(std::string_view) override { return 0; }
  bool finish_body(std::string_view trailers) override;
  bool pulls_body() const override { return true; }
  void body_available() override;
  bool upgrade(UpstreamConn*, ServerSlot&) override { return false; }
  void exchange_done(bool response_complete, bool request_complete) override;

 private:
  enum class Answer : uint8_t {
    Pending,    // no final HEADERS yet
    Streaming,  // HEADERS submitted; the body is read by the data source
    Sent,       // END_STREAM went out
    Reset,      // RST_STREAM sent
  };
  // MuxStream
  uint64_t max_header_bytes() const override;
  uint32_t max_headers() const override;
  void give_window(size_t n) override;
  void refuse_trailers() override { reset(NGHTTP2_ENHANCE_YOUR_CALM); }
  void schedule() override;

  int submit(const ResponseOut& head, bool final_head);
  bool submit_trailers();

  H2Connection& conn_;
  Answer answer_ = Answer::Pending;

  // response
  std::string local_body_;  // weir's own answer (the exchange is gone when it is read)
  size_t local_read_ = 0;
  std::string resp_trailers_;  // finish_body's, sent when the data source reaches the end
  bool local_ = false;         // the answer is weir's own (its body is local_body_)
  bool deferred_ = false;      // the data source said DEFERRED: resume when bytes arrive
};

}  // namespace weir::proxy
