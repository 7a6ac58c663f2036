#pragma once
// One HTTP/2 stream seen as an HTTP/1.1 exchange: the request pipe (HTTP/1.1 bytes built from
// HEADERS and DATA) and the response pipe (HTTP/1.1 bytes written by the exchange, turned back
// into HEADERS and DATA). The functions here translate; H2Session (h2_session.hpp) drives.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "http/body_decoder.hpp"
#include "net/stream.hpp"

namespace weir::proxy {

class ClientConn;
class H2Session;
class H2Pipe;

// The response pipe: an exchange may run this far ahead of what the client's window takes.
constexpr size_t kH2ResponsePipe = 64 * 1024;

// One stream: the request bytes waiting for its exchange, the response bytes coming back.
struct H2Stream {
  int32_t id = 0;
  H2Session* session = nullptr;
  ClientConn* exchange = nullptr;  // null once the exchange has closed
  H2Pipe* pipe = nullptr;          // owned by the exchange's Stream

  // request: head fields until END_HEADERS, then HTTP/1.1 bytes for the exchange to read
  std::string method, path, authority, cookie, fields;
  size_t header_bytes = 0;  // HPACK-decoded size (RFC 9113 §6.5.2 accounting)
  uint32_t header_count = 0;
  bool too_large = false;
  bool has_content_length = false;
  bool chunked_body = false;              // no content-length: the body is sent on as chunked
  std::string req;                        // HTTP/1.1 request bytes not yet read by the exchange
  size_t req_read = 0;                    // offset of the first unread byte in `req`
  uint64_t req_total = 0;                 // bytes ever appended (stream position of req.end())
  uint64_t req_taken = 0;                 // bytes ever read by the exchange
  std::map<uint64_t, size_t> data_marks;  // stream position where DATA ends → DATA bytes
  size_t unconsumed = 0;                  // DATA bytes received and not yet returned as window
  bool req_ended = false;                 // END_STREAM seen (and the chunked terminator appended)
  bool head_done = false;                 // the request head is complete (END_HEADERS)
  bool wants_start = false;               // head done: start the exchange on the next turn
  bool started = false;                   // the exchange was started (or answered locally)

  // response: HTTP/1.1 bytes written by the exchange, parsed into HEADERS and DATA
  std::string resp;
  size_t resp_read = 0;
  bool head_sent = false;  // final HEADERS submitted
  bool body_done = false;
  bool deferred = false;         // the data source said DEFERRED: resume when bytes arrive
  bool exchange_closed = false;  // the exchange finished (or aborted)
  bool reset_sent = false;
  bool closed = false;         // nghttp2 closed the stream: remove at the end of the turn
  bool response_done = false;  // END_STREAM sent with the response
  bool wants_run = false;      // the exchange has bytes to read or room to write
  bool raw_body = false;       // the pipe carries payload bytes only (the head went over parsed)
  bool response_complete = false;  // the exchange wrote its whole response into the pipe
  http::BodyDecoder body;
  http::Method req_method = http::Method::Get;

  size_t resp_avail() const { return resp.size() - resp_read; }
  size_t req_avail() const { return req.size() - req_read; }
};

// The Transport of a stream exchange: reads the request pipe, writes the response pipe.
class H2Pipe final : public net::Transport {
 public:
  explicit H2Pipe(H2Stream* s) : s_(s) {}
  ssize_t read(int fd, char* buf, size_t len) override;
  ssize_t write(int fd, const char* buf, size_t len) override;
  bool drained() const override { return !s_ || s_->req_avail() == 0; }
  void shutdown(int fd) override;  // the exchange is closing
  void detach() { s_ = nullptr; }

 private:
  H2Stream* s_;
};

// Request side (called from nghttp2 callbacks): one header field of the request head (pseudo
// fields, cookie crumbs joined, host folded into :authority), body bytes, END_STREAM.
void add_request_field(H2Stream& s, std::string_view name, std::string_view value);
void append_request_data(H2Stream& s, std::string_view data);
void end_request(H2Stream& s);
// Response side: the nghttp2 data source of a stream: decodes body bytes from the response pipe.
ssize_t response_body(H2Stream& s, uint8_t* buf, size_t len, uint32_t* flags);

}  // namespace weir::proxy
