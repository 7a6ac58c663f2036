#pragma once
// The request side of one stream of a multiplexed client connection — an HTTP/2 stream
// (H2Stream) or an HTTP/3 one (quic::H3Stream): the request head as the codec decodes its
// fields, turned into the http::RequestHead an HTTP/1.1 connection parses (H2RequestHead: the
// same rules for both, RFC 9114 §4.3 follows RFC 9113 §8.2), the body as it arrives, the
// trailers, and the Exchange the stream drives. The codecs differ in how they give flow-control
// credit back, reset a stream and answer (the response side stays in the subclasses).
//
// Memory: request payload waits here at most up to the stream's receive window, since the
// window opens (give_window) only as the exchange takes bytes; trailers are bounded like the
// head (max_header_bytes, max_headers) and by http::kMaxTrailerBytes.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/block_queue.hpp"
#include "proxy/downstream.hpp"
#include "proxy/h2_request.hpp"

namespace weir::proxy {

class Exchange;

class MuxStream : public Downstream {
 public:
  ~MuxStream() override;

  int64_t stream_id() const { return id_; }

  // --- request, from the codec's callbacks
  // One field of the request head; past the limits the answer is 431 once the head ends.
  void add_field(std::string_view name, std::string_view value);
  void end_head(bool end_stream);
  void append_data(std::string_view data);
  // One trailer field, kept as an HTTP/1.1 field line; past the limits the stream is reset
  // (refuse_trailers) and the request never ends.
  void add_trailer(std::string_view name, std::string_view value);
  // The end of the request (with its body, or after its trailers).
  void end_request();
  bool head_done() const { return head_ == Head::Complete; }

  // --- the connection's turn (subclasses call abandon() in their destructors)
  // Starts the exchange once the head is complete; pumps it when it asked for a turn.
  bool run_exchange();
  // The connection is going away (or the stream ended): the exchange is cancelled.
  void abandon();
  bool closed() const { return closed_; }
  bool request_ended() const { return req_ended_; }
  size_t unconsumed() const { return unconsumed_; }
  bool has_exchange() const { return ex_ != nullptr; }

  // --- Downstream, request side
  BodyRead read_body(BodySink& sink) override;
  bool has_body_in_place() const override { return true; }
  BodyRead body_in_place(std::string_view& bytes) override;
  void consume_body(size_t n) override;
  std::string_view request_trailers() const override { return req_trailers_; }
  void wake() override;

 protected:
  MuxStream(Worker& w, int64_t id);

  // What the codec does.
  virtual uint64_t max_header_bytes() const = 0;
  virtual uint32_t max_headers() const = 0;
  // `n` request bytes were taken (or will never be read): the client may send that many more.
  virtual void give_window(size_t n) = 0;
  // The trailers went past the limits: reset the stream (the codec's "calm down" code).
  virtual void refuse_trailers() = 0;
  // Run the connection's turn soon.
  virtual void schedule() = 0;
  // The head went past the limits (its 431 is due). By default the answer waits for the end of
  // the head block; a codec that can stop the client sending the rest does so here.
  virtual void head_too_large() {}
  // Forget what the exchange did not read (its exchange ended): window back, body dropped.
  void drop_request_body();

  Worker& w_;
  int64_t id_;
  Exchange* ex_ = nullptr;
  bool started_ = false;    // the exchange was started (it may be over by now)
  bool wants_run_ = false;  // the exchange asked for a turn
  bool closed_ = false;     // the codec closed the stream: nothing may reach it any more
  bool reset_ = false;      // our side reset it: the exchange gets no more turns
  bool req_ended_ = false;

 private:
  enum class Head : uint8_t { Receiving, TooLarge, Complete };
  void start_exchange();

  H2RequestHead head_fields_;
  Head head_ = Head::Receiving;
  BlockQueue body_;        // request payload not yet taken by the exchange
  size_t unconsumed_ = 0;  // payload received and not yet given back as window
  bool trailers_refused_ = false;
  uint32_t trailer_count_ = 0;
  size_t trailer_bytes_ = 0;  // decoded size, as the head counts it
  std::string req_trailers_;
};

// The fields of a response head as HTTP/2 and HTTP/3 carry them, ":status" aside: names
// lower-cased into `names` (sized here once, so the views stay valid until it changes), the
// fields that belong to one HTTP/1.1 connection left out, and for a body of known length the
// length that holds (a stored response answered with a range, a file), written into `length`.
// f(name, value) for each, in order.
template <class F>
void for_each_mux_field(const ResponseOut& head, std::string& names, char (&length)[24], F&& f);
// The trailer field lines that may travel (http::trailer_field_allowed), names lower-cased into
// `names`: f(name, value).
template <class F>
void for_each_mux_trailer(std::string_view lines, std::string& names, F&& f);

// Response fields that mean something only to one HTTP/1.1 connection (RFC 9113 §8.2.2,
// RFC 9114 §4.2).
bool connection_specific(std::string_view lower);

}  // namespace weir::proxy

#include "proxy/mux_stream_fields.hpp"
