#pragma once
// The connection driver shared by every connection weir serves: the proxy's downstream
// connections (HTTP/1.1, HTTP/2, tcp tunnels) and the small HTTP server of the admin listener
// and `weir whoami`. It owns the socket with its buffers and edge-triggered readiness, and does
// what every protocol needs the same way:
//   - a turn loop: read, let the protocol move bytes (turn()), write, until nothing moves; at
//     most kMaxTurns, then the connection yields (Reactor::yield) so one big transfer cannot
//     starve the others, and continues after the next poll — no readiness edge would wake it;
//   - one timer for the protocol's timeouts (header, idle, ...: the protocol says which);
//   - the end of a connection: close at once, or after the output is flushed, lingering (half
//     closed, reading and dropping input) so a close does not reset an answer not yet read;
//   - buffer release while idle (blocks go back to the worker's BufferPool);
//   - freeing the object safely: never while a queued turn may still run.
#include <cstdint>

#include "core/buffer_pool.hpp"
#include "core/clock.hpp"
#include "core/reactor.hpp"
#include "core/timer.hpp"
#include "net/stream.hpp"

namespace weir::net {

class Connection : public EventHandler {
 public:
  // 32 turns (~0.5 MiB of 16 KiB reads) measured best on bench scenario 3: 8 halved the tail
  // latency of big transfers but doubled CPU per request.
  static constexpr int kMaxTurns = 32;

  Connection(Reactor& reactor, BufferPool& buffers, int fd);
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void on_event(uint32_t events) override;
  // Turns until nothing moves (or the budget is spent: then it continues after the next poll).
  void run();
  // One more run() after the current batch of events: work that arrived from elsewhere (an
  // upstream connection, an HTTP/2 stream, a timer of another object).
  void schedule_turn();
  // Closes now: socket, timer, buffers; on_close() first. The object is freed after the current
  // batch, once no queued turn refers to it.
  void close();
  // The last answer is in io().out: close once it is flushed. `clean`: the last request was read
  // whole, so with no more input waiting the socket closes at once; otherwise the write side is
  // shut and input is read and dropped until EOF or the linger time.
  void close_after_flush(bool clean);
  // Close once the output is flushed, never lingering: for protocols whose end is a message of
  // their own (HTTP/2 GOAWAY), so unread input cannot be taken for a cut-off answer.
  void close_when_flushed() {
    close_after_flush(true);
    no_linger_ = true;
  }
  bool closed() const { return state_ == State::Closed; }
  bool closing() const { return state_ != State::Open; }

  Stream& io() { return io_; }
  Reactor& reactor() { return reactor_; }
  BufferPool& buffers() { return buffers_; }

 protected:
  // Protocol work after a read: parse what came, move bytes, put output into io().out. Return
  // true if anything moved. May call close() or close_after_flush().
  virtual bool turn() = 0;
  // The timer armed with arm_timer() fired (never while lingering: that timer is the driver's).
  // Buffers are there; a turn follows.
  virtual void on_timeout() = 0;
  // Once, from close(), before the socket is closed: let go of protocol state.
  virtual void on_close() {}
  // The socket failed on read (reset, or a TLS handshake that failed).
  virtual void on_read_failed() {}
  // After the turns: true if nothing is in flight, so empty buffers go back to the pool.
  virtual bool idle() const { return false; }

  void arm_timer(Millis after);
  void cancel_timer();
  bool timer_armed() const { return timer_.pending(); }
  void set_linger(Millis linger) { linger_ = linger; }

  Stream io_;

 private:
  enum class State : uint8_t { Open, Flushing, Lingering, Closed };
  void fire_timer();
  bool finish_flush();  // Flushing: the output is out → close or linger
  void linger_turn();
  void queued_turn_done();

  Reactor& reactor_;
  BufferPool& buffers_;
  LazyTimer timer_;
  Millis linger_{2000};
  State state_ = State::Open;
  bool clean_end_ = false;
  bool no_linger_ = false;
  bool turn_pending_ = false;   // schedule_turn queued a turn
  bool yield_pending_ = false;  // the turn budget ran out: a turn is queued with yield
  uint8_t queued_turns_ = 0;    // queued turn callbacks: the last one frees us if we closed
};

}  // namespace weir::net
