#pragma once
// The client side of one exchange, as the exchange sees it: an HTTP/1.1 connection (one
// exchange at a time) or one HTTP/2 stream. The exchange writes its answer here and reads the
// request body from here; the codec behind it does the framing. A tcp-mode connection is a
// downstream too (no answer, only upgrade()).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/buffer.hpp"
#include "http/parser.hpp"
#include "model/ids.hpp"
#include "proxy/client_origin.hpp"
#include "proxy/head_edits.hpp"

namespace weir::net {
struct Stream;
struct PeerAddress;
}  // namespace weir::net

namespace weir::proxy {

class UpstreamConn;
class Worker;
struct WorkerView;

// A server's in-flight slot (ServerState::active, the balancer's count), held by whoever uses
// the server: an exchange, then the tunnel a 101 or a tcp-mode connect hands it to.
struct ServerSlot {
  std::shared_ptr<WorkerView> view;
  model::BackendId backend;
  model::ServerId server;
  bool held() const { return server.valid(); }
  // Gives the slot back (and wakes the first request waiting for one). Idempotent.
  void release(Worker& w);
};

enum class HeadResult : uint8_t {
  Sent,
  Later,    // no room now: call again once the client has taken earlier bytes
  Refused,  // this codec cannot carry this head at all (too large)
};

// Who is asking: the same for every exchange of a connection.
enum class ClientProto : uint8_t { Http1, Http2, Tcp, Http3 };
// "HTTP/1.1", "HTTP/2", "tcp", "HTTP/3" (for logs)
constexpr const char* to_string(ClientProto p) {
  return p == ClientProto::Http2   ? "HTTP/2"
         : p == ClientProto::Tcp   ? "tcp"
         : p == ClientProto::Http3 ? "HTTP/3"
                                   : "HTTP/1.1";
}

// TLS versions as ClientInfo keeps them (one byte): 0 plain, else 10..13 for TLS 1.0..1.3.
constexpr const char* tls_version_name(uint8_t v) {
  return v == 13 ? "TLSv1.3" : v == 12 ? "TLSv1.2" : v == 11 ? "TLSv1.1" : v == 10 ? "TLSv1" : "";
}

// Kept by every client connection, so kept small (an idle connection's size is what 10,000 of
// them cost): the address in 20 bytes, rarely needed state out of line (ClientOrigin::extras).
struct ClientInfo {
  std::string ip;           // "1.2.3.4" / "::1" (v4-mapped shown as v4)
  ClientOrigin origin;      // address and port, listen slot, local address, limits hold
  uint8_t tls_version = 0;  // tls_version_name()
  ClientProto proto = ClientProto::Http1;
  bool tls = false;  // the client connection is TLS (X-Forwarded-Proto, Secure cookies, HSTS)
  // The listen socket slot: the listener is looked up in the current view.
  uint32_t slot() const { return origin.slot; }
  const net::PeerAddress& addr() const { return origin.addr; }
};

// Where request body bytes go upstream: the server connection's output buffer, with the
// upstream codec's framing (chunked when the length is not known up front).
class BodySink {
 public:
  BodySink(Buffer& out, bool chunked) : out_(out), chunked_(chunked) {}
  uint64_t taken() const { return taken_; }  // payload bytes put so far
  // Payload bytes that fit now (framing room kept aside).
  size_t room() const;
  void put(std::string_view payload);
  // The body is complete: the chunked terminator, carrying `trailers` (field lines, see
  // http::kMaxTrailerBytes) filtered by http::trailer_field_allowed. Without chunked framing
  // trailers cannot travel and are dropped. False if there is no room yet.
  bool finish(std::string_view trailers = {});
  // finish(trailers) would succeed now. A downstream reports Done only then.
  bool can_finish(std::string_view trailers) const;

 private:
  Buffer& out_;
  bool chunked_;
  uint64_t taken_ = 0;
};

enum class BodyRead : uint8_t {
  Idle,      // nothing to move now
  Progress,  // bytes moved
  Done,      // the whole request body has been handed over
  Error,     // the client's body framing is broken: 400
  Gone,      // the client went away before the end of its body
};

class Downstream {
 public:
  virtual ~Downstream() = default;
  virtual const ClientInfo& client() const = 0;

  // Request body: moves decoded payload into `sink` as far as it has room.
  virtual BodyRead read_body(BodySink& sink) = 0;
  // A downstream that holds the request body as received, contiguous and needing no framing
  // (HTTP/2 DATA payload of a request with a content-length): the exchange writes it to the
  // server straight from there, no upstream buffer in between. body_in_place() gives what is
  // there now (Done: it is the last of it); consume_body() says how much the server took.
  virtual bool has_body_in_place() const { return false; }
  virtual BodyRead body_in_place(std::string_view& bytes) {
    bytes = {};
    return BodyRead::Idle;
  }
  virtual void consume_body(size_t) {}
  // The request's trailer fields as HTTP/1.1 field lines ("Name: value\r\n" each, possibly
  // none), unfiltered; valid once read_body or body_in_place returned Done.
  virtual std::string_view request_trailers() const { return {}; }

  // An interim answer (100 Continue, 103): HTTP/1.1 relays a bare status line, HTTP/2 sends
  // informational HEADERS.
  virtual void send_interim(const http::ResponseHead& head) = 0;
  // The final head (the server's or weir's own). `head.body` says how the body that follows is
  // delimited (None: there is none).
  virtual HeadResult send_head(const ResponseOut& head) = 0;
  // Response body payload; returns the bytes taken (fewer when the client is slow: the rest
  // waits in the server's buffer — backpressure).
  virtual size_t send_body(std::string_view payload) = 0;
  // The client's socket, when body bytes may go to it unframed and unencrypted straight from the
  // server's socket (splice): HTTP/1.1 over plain TCP, nothing queued before them. Else null.
  virtual net::Stream* splice_target() { return nullptr; }
  // The whole body was sent; `trailers`: the response's trailer fields as HTTP/1.1 field lines
  // (possibly none), forwarded where the codec can carry them (HTTP/1.1 chunked, HTTP/2), those
  // http::trailer_field_allowed refuses left out. Pull mode: called before the data source
  // sees the end, so the stream keeps a copy. False: no room for the codec's end marker yet.
  virtual bool finish_body(std::string_view trailers) = 0;
  // True if this downstream pulls body bytes itself (HTTP/2: the stream's data source reads the
  // exchange's response body when its window allows) instead of taking send_body() pushes.
  virtual bool pulls_body() const { return false; }
  // Pull mode: response bytes (or the server's end) arrived; the data source may read again.
  virtual void body_available() {}
  // Upstream I/O happened outside the downstream's own turn: run the exchange soon.
  virtual void wake() = 0;
  // A 101 answer (or a tcp-mode connect): from now on bytes flow both ways unchanged. The
  // downstream takes over `up` and the server slot. False if it cannot tunnel (then nothing
  // was taken).
  virtual bool upgrade(UpstreamConn* up, ServerSlot& slot) = 0;
  // The exchange is over. `response_complete`: the client got the whole answer;
  // `request_complete`: the request (and body) was read whole, so the connection can go on.
  virtual void exchange_done(bool response_complete, bool request_complete) = 0;
};

}  // namespace weir::proxy
