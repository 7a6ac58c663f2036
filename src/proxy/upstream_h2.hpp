#pragma once
// HTTP/2 towards servers (upstream.md: backend `protocol: h2 | h2c | auto`).
//
// An H2Session is one connection to one server (nghttp2, client side), pooled per worker by
// H2Pool and shared by the requests of every client of that worker, HTTP/1.1 and HTTP/2 alike.
// Each request gets an H2Channel: one stream, seen by its exchange through an UpstreamConn
// without a socket (`UpstreamConn::h2`), so the exchange's body paths stay what they are for
// HTTP/1.1:
//   - `stream.in` holds the response's DATA payload. The stream's receive window is one buffer
//     block and it opens only as the exchange takes bytes (sync_consumed): a slow client slows
//     its stream, never grows memory, and the other streams go on.
//   - `stream.out` holds request body bytes the exchange put there; the stream's data source
//     takes them as the server's window allows (backpressure to the client the same way).
//   - `stream.eof` is END_STREAM, `stream.failed` a reset or a dead connection; refused() says
//     the server never processed the stream (REFUSED_STREAM, or above a GOAWAY's last stream).
// The response head and trailers arrive as fields: head() builds the same http::ResponseHead an
// HTTP/1.1 server's bytes would parse into; trailers go to the exchange as field lines.
//
// The server's SETTINGS_MAX_CONCURRENT_STREAMS bounds the streams weir puts on a connection
// (more requests open another one); GOAWAY lets in-flight streams finish and takes the
// connection out of the pool; idle connections are kept up to the pool's limit, checked with
// PING, and closed after the idle timeout.
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/buffer_pool.hpp"
#include "core/clock.hpp"
#include "core/reactor.hpp"
#include "core/timer.hpp"
#include "http/body_decoder.hpp"
#include "http/parser.hpp"
#include "net/address.hpp"
#include "net/stream.hpp"

namespace weir::model {
struct ServerRuntime;
}
namespace weir::net::tls {
class ClientContext;
}

namespace weir::proxy {

class Worker;
class UpstreamConn;
class H2Session;
class H2Pool;

class H2Channel {
 public:
  // The largest field block (head or trailers) a server may send; larger resets the stream.
  static constexpr size_t kMaxFieldBlock = 64 * 1024;

  explicit H2Channel(UpstreamConn& up) : up_(up) {}
  ~H2Channel();
  H2Channel(const H2Channel&) = delete;
  H2Channel& operator=(const H2Channel&) = delete;

  // --- the exchange's side
  // The connection is up (TCP, TLS with h2 chosen, preface sent): the request may go.
  bool ready() const;
  // The connection could not be made (refused, TLS failed, h2 not chosen): nothing was sent.
  bool connect_failed() const { return connect_failed_; }
  // The server did not process the stream: safe to send again, on another connection.
  bool refused() const { return refused_; }
  // Submits the request once (`head`: the HTTP/1.1 head the exchange built) and keeps its body
  // moving: `chunked` says `out` holds chunked framing, `done` that the body is all in `out`,
  // `trailers` the request's trailer field lines (sent after the body). True if anything moved.
  bool flush(std::string_view head, bool chunked, bool done, std::string_view trailers);
  bool submitted() const { return stream_id_ > 0; }
  // Returns the window of the response bytes the exchange took out of `in` since the last call.
  void sync_consumed();
  // 1xx heads that came before the final one, oldest first (pop after use).
  bool has_interim() const { return !interim_.empty(); }
  void interim(http::ResponseHead& out, std::span<http::Header> storage) const;
  void pop_interim() { interim_.erase(interim_.begin()); }
  // The final head is here: filled as parse_response would (body framing decided by
  // content-length, the request method, and END_STREAM on the head). `http2_client`: a head
  // that ended the stream stays bodiless for an HTTP/2 client (gRPC's trailers-only answer);
  // an HTTP/1.1 client gets Content-Length: 0.
  bool head_ready() const { return head_ready_; }
  bool head(http::ResponseHead& out, std::span<http::Header> storage, http::Method method,
            bool http2_client) const;
  // Where trailer field lines go ("Name: value\r\n" each), set by the exchange.
  void set_trailer_sink(std::string* sink) { trailer_sink_ = sink; }
  // The exchange lets go: RST_STREAM unless the stream ended both ways (`complete`: NO_ERROR,
  // else CANCEL — a client that went away cancels its request upstream).
  void release(bool complete);

  // --- the session's side
  void attach(H2Session* s) { session_ = s; }
  void on_ready();
  void on_connect_failed();
  void on_session_gone(bool refused);
  void begin_fields(bool trailers);
  bool add_field(std::string_view name, std::string_view value);
  void end_fields(bool end_stream);
  bool on_data(std::string_view data);
  void on_closed(uint32_t error_code);
  ssize_t read_body(uint8_t* buf, size_t len, uint32_t* flags);
  void notify();

 private:
  bool submit(std::string_view head, bool chunked, bool done, std::string_view trailers);
  size_t take_chunked(uint8_t* buf, size_t len);

  UpstreamConn& up_;
  H2Session* session_ = nullptr;
  int32_t stream_id_ = -1;
  bool connect_failed_ = false;
  bool refused_ = false;
  bool closed_ = false;     // nghttp2 closed the stream
  bool ended_ = false;      // END_STREAM from the server
  bool req_ended_ = false;  // our END_STREAM (or trailers) went into the session
  bool deferred_ = false;   // the data source said DEFERRED
  bool chunked_ = false;
  bool done_ = false;
  std::string_view trailers_out_;
  http::BodyDecoder chunk_decoder_;
  // response head: names and values in one arena, as (offset, length) pairs
  enum class Block : uint8_t { None, Head, Trailers, Interim };
  Block block_ = Block::None;
  uint16_t status_ = 0;
  bool head_ready_ = false;
  bool head_ended_ = false;  // END_STREAM came on the final head
  bool has_length_ = false;
  uint64_t length_ = 0;
  std::string arena_;
  std::vector<uint32_t> spans_;  // name offset, name length, value offset, value length...
  size_t block_bytes_ = 0;
  struct Interim {
    uint16_t status;
    std::vector<std::pair<std::string, std::string>> fields;
  };
  std::vector<Interim> interim_;  // complete 1xx heads not yet relayed
  Interim pending_interim_{};     // the 1xx head whose block is still arriving
  std::string* trailer_sink_ = nullptr;
  size_t unacked_ = 0;  // DATA bytes put in `in` and not yet returned as window
};

class H2Session final : public EventHandler {
 public:
  H2Session(H2Pool& pool, Worker& w, const model::ServerRuntime& srv,
            config::UpstreamProtocol proto);
  ~H2Session() override;
  // Starts connecting; false if the connection cannot even be started.
  bool start();
  void on_event(uint32_t events) override;

  uint32_t server_uid() const { return uid_; }
  bool ready() const { return state_ == State::Ready; }
  bool tls() const { return tls_ != nullptr; }
  // May take one more stream: not going away, below the server's concurrency limit.
  bool accepting() const;
  size_t streams() const { return channels_.size(); }
  // A new stream may be opened: the server's SETTINGS came (its concurrency limit is known),
  // or this is the connection's first stream. More streams wait for the SETTINGS rather than
  // risk REFUSED_STREAM from a server whose limit is lower than assumed.
  bool may_open() const { return settings_received_ || !opened_any_; }
  void note_opened() { opened_any_ = true; }
  void attach(H2Channel* ch);
  void detach(H2Channel* ch);
  void schedule();  // a turn after the current batch of events
  nghttp2_session* session() { return session_; }
  BufferPool& buffers();
  std::string& names_scratch() { return names_; }
  std::vector<nghttp2_nv>& nv_scratch() { return nva_; }
  // Closes at once (worker stop, an idle connection let go); every channel fails.
  void close();

 private:
  friend struct H2UpCallbacks;
  enum class State : uint8_t { Connecting, Handshake, Ready, Dead };
  void turn();
  bool handshake();
  bool setup_session();
  void io();
  void fail(bool refused);
  void check_idle();
  void on_idle_timer();
  Millis ping_interval() const;

  H2Pool& pool_;
  Worker& w_;
  uint32_t uid_;
  std::string name_;  // the server's address, for logs
  net::SocketAddress addr_;
  std::shared_ptr<net::tls::ClientContext> tls_;
  config::UpstreamProtocol proto_;
  net::Stream io_;
  nghttp2_session* session_ = nullptr;
  State state_ = State::Connecting;
  bool closed_ = false;
  bool scheduled_ = false;
  bool goaway_ = false;
  bool settings_received_ = false;
  bool opened_any_ = false;
  size_t window_ = 0;  // the streams' receive window: the buffer block when the session began
  bool ping_outstanding_ = false;
  std::vector<H2Channel*> channels_;  // every stream of this connection, and those waiting
  std::string names_;                 // request field names, lower-cased (H2Channel::submit)
  std::vector<nghttp2_nv> nva_;
  LazyTimer idle_timer_;
  TimePoint idle_since_{};

 public:
  H2Session* pool_next = nullptr;  // the pool's list for this server
  H2Session* pool_prev = nullptr;
};

// Per worker: the HTTP/2 connections to each server (by ServerRuntime::uid).
class H2Pool {
 public:
  explicit H2Pool(Worker& w) : w_(w) {}
  ~H2Pool();
  void set_limits(uint32_t max_idle, Millis idle_timeout) {
    max_idle_ = max_idle;
    idle_timeout_ = idle_timeout;
  }
  Millis idle_timeout() const { return idle_timeout_; }
  // A new stream to this server, on a connection with room (a new connection when none has),
  // as a socketless UpstreamConn owned by the caller; null if no connection can be started.
  // `fresh`: a new connection was started for it.
  UpstreamConn* open(const model::ServerRuntime& srv, config::UpstreamProtocol proto, bool& fresh);
  // `auto`: the server's TLS chose http/1.1 lately, so HTTP/1.1 it is (re-checked after a minute).
  bool speaks_http1(uint32_t uid) const;
  void note_http1(uint32_t uid);
  // Enough other connections to this server are idle already (max_idle).
  bool idle_beyond_limit(const H2Session* s) const;
  void remove(H2Session* s);  // unlinks (a session going away)
  void close_all();
  void close_idle();  // the worker drains
  size_t connections() const;

 private:
  struct List {
    H2Session* head = nullptr;
    uint32_t size = 0;
  };
  Worker& w_;
  std::vector<List> lists_;
  std::vector<TimePoint> http1_until_;
  uint32_t max_idle_ = 64;
  Millis idle_timeout_{30000};
};

}  // namespace weir::proxy
