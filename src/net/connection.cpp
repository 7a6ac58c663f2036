#include "net/connection.hpp"

#include <sys/socket.h>

namespace weir::net {

Connection::Connection(Reactor& reactor, BufferPool& buffers, int fd)
    : reactor_(reactor), buffers_(buffers) {
  io_.fd = fd;
  io_.readable = true;  // bytes may already wait: accept raced with the peer's send
  timer_.set_callback([this] { fire_timer(); });
}

Connection::~Connection() {
  close_fd(io_.fd);  // freed without close(): still no leaked socket
}

void Connection::on_event(uint32_t events) {
  if (state_ == State::Closed) return;
  io_.note_events(events);
  run();
}

void Connection::arm_timer(Millis after) {
  timer_.set(reactor_.timers(), reactor_.now() + after);
}

void Connection::cancel_timer() {
  timer_.clear();
}

void Connection::fire_timer() {
  if (state_ == State::Closed) return;
  if (state_ == State::Lingering) {
    close();
    return;
  }
  // The protocol may answer (408...): its buffers may have gone back to the pool while idle.
  buffers_.acquire(io_.in);
  buffers_.acquire(io_.out);
  on_timeout();
  if (state_ != State::Closed) run();
}

void Connection::schedule_turn() {
  if (turn_pending_ || state_ == State::Closed) return;
  turn_pending_ = true;
  ++queued_turns_;
  reactor_.defer([this] {
    turn_pending_ = false;
    queued_turn_done();
  });
}

void Connection::queued_turn_done() {
  --queued_turns_;
  if (state_ == State::Closed) {
    if (queued_turns_ == 0) delete this;  // close() left the freeing to the last queued turn
    return;
  }
  run();
}

void Connection::run() {
  if (state_ == State::Lingering) {
    linger_turn();
    return;
  }
  for (int turn_no = 0; turn_no < kMaxTurns && state_ != State::Closed; ++turn_no) {
    buffers_.acquire(io_.in);
    buffers_.acquire(io_.out);
    bool progress = io_.fill();
    if (io_.failed) {
      on_read_failed();
      close();
      return;
    }
    if (state_ == State::Open) progress |= turn();
    if (state_ == State::Closed) return;
    progress |= io_.flush();
    if (io_.write_failed) {
      close();
      return;
    }
    if (state_ == State::Flushing && io_.out.empty()) {
      if (!finish_flush()) return;
      continue;
    }
    if (!progress) break;
    if (turn_no == kMaxTurns - 1 && !yield_pending_) {
      // Still moving bytes with both sides ready: the others get their turn first.
      yield_pending_ = true;
      ++queued_turns_;
      reactor_.yield([this] {
        yield_pending_ = false;
        queued_turn_done();
      });
    }
  }
  if (state_ == State::Open && io_.in.empty() && io_.out.empty() && idle()) {
    buffers_.release(io_.in);
    buffers_.release(io_.out);
  }
}

void Connection::close_after_flush(bool clean) {
  if (state_ != State::Open) return;
  state_ = State::Flushing;
  clean_end_ = clean;
}

// Returns true if the connection lingers (and the loop should go on reading), false if closed.
bool Connection::finish_flush() {
  if (no_linger_ || (clean_end_ && io_.in.empty() && !io_.readable)) {
    // The last request was read whole and nothing followed it: closing now cannot reset an
    // answer the peer has not read yet.
    close();
    return false;
  }
  ::shutdown(io_.fd, SHUT_WR);
  state_ = State::Lingering;
  arm_timer(linger_);
  io_.readable = true;
  linger_turn();
  return false;
}

void Connection::linger_turn() {
  // Half-closed after the final answer: read and drop what the peer still sends, so the close
  // does not reset the connection before the peer has read the answer.
  buffers_.acquire(io_.in);
  for (int reads = 0; reads < 16 && io_.readable && !io_.eof && !io_.failed; ++reads) {
    io_.in.clear();
    if (!io_.fill()) break;
  }
  io_.in.clear();
  if (io_.eof || io_.failed) {
    close();
    return;
  }
  if (io_.readable && !yield_pending_) {
    // More to drop than one go takes: go on after the others (the peer's close may be behind
    // it, and its edge is spent).
    yield_pending_ = true;
    ++queued_turns_;
    reactor_.yield([this] {
      yield_pending_ = false;
      queued_turn_done();
    });
  }
}

void Connection::close() {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  timer_.clear();
  on_close();
  io_.in.clear();
  io_.out.clear();
  buffers_.release(io_.in);
  buffers_.release(io_.out);
  if (io_.transport) io_.transport->shutdown(io_.fd);  // TLS close_notify
  // Out of epoll before close: a process forked meanwhile (SIGUSR2's upgrade, until its exec)
  // holds a copy of the descriptor, which would keep the registration, and its events would
  // reach this object after it is freed.
  reactor_.remove(io_.fd);
  close_fd(io_.fd);
  io_.fd = -1;
  if (queued_turns_ == 0) reactor_.defer([this] { delete this; });
}

}  // namespace weir::net
