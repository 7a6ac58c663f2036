// net::Connection, the connection driver: small test protocols over AF_UNIX socketpairs,
// registered on a real Reactor that the tests drive with run_once().
#include "net/connection.hpp"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/reactor.hpp"

namespace weir::net {
namespace {

using namespace std::chrono_literals;  // NOLINT(google-build-using-namespace)

// What a test connection did; owned by the test, so it outlives the connection.
struct Log {
  int turns = 0;
  int timeouts = 0;
  int closes = 0;
  int read_failures = 0;
  bool freed = false;
  int turns_at_timeout = -1;
  bool buffers_at_timeout = false;
  int turns_after_close = 0;  // turn() called after on_close (must stay 0)
  size_t echoed = 0;          // Echo: bytes copied to the output
};

// The base of the test protocols: records the driver's callbacks.
class TestConn : public Connection {
 public:
  TestConn(Reactor& r, BufferPool& p, int fd, Log& log) : Connection(r, p, fd), log_(log) {}
  ~TestConn() override { log_.freed = true; }

  // Registers the socket and runs the first turns, as a protocol does once accepted.
  void start() {
    EXPECT_TRUE(reactor().add(io().fd, this));
    run();
  }

  bool idle_flag = false;         // what idle() answers
  std::string on_timeout_writes;  // on_timeout puts this into io().out

  using Connection::arm_timer;
  using Connection::cancel_timer;
  using Connection::set_linger;
  using Connection::timer_armed;

 protected:
  bool turn() override {
    if (log_.closes > 0) ++log_.turns_after_close;
    ++log_.turns;
    return step();
  }
  virtual bool step() { return false; }
  void on_timeout() override {
    ++log_.timeouts;
    log_.turns_at_timeout = log_.turns;
    log_.buffers_at_timeout = io().in.allocated() && io().out.allocated();
    if (!on_timeout_writes.empty()) io().out.append(on_timeout_writes);
  }
  void on_close() override { ++log_.closes; }
  void on_read_failed() override { ++log_.read_failures; }
  bool idle() const override { return idle_flag; }

  Log& log_;
};

// Copies what comes in to the output; when the peer has finished sending and everything is
// echoed, closes after the flush (clean: the whole input was read).
class Echo : public TestConn {
 public:
  using TestConn::TestConn;

 protected:
  bool step() override {
    bool moved = false;
    std::string_view in = io().in.readable();
    if (!in.empty()) {
      size_t n = io().out.append(in);
      io().in.consume(n);
      log_.echoed += n;
      moved = n > 0;
    }
    if (io().eof && io().in.empty() && !closing()) {
      close_after_flush(true);
      moved = true;
    }
    return moved;
  }
};

// Byte i of the test streams: not periodic in any power of two.
char pattern_at(size_t i) {
  return static_cast<char>((i % 251) ^ (i / 251 % 7));
}
std::string pattern(size_t n, size_t from = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i)
    s[i] = pattern_at(from + i);
  return s;
}

// Sends `total` pattern bytes as the socket takes them, then closes after the flush.
class Source : public TestConn {
 public:
  Source(Reactor& r, BufferPool& p, int fd, Log& log, size_t total)
      : TestConn(r, p, fd, log), total_(total) {}

 protected:
  bool step() override {
    size_t before = sent_;
    while (sent_ < total_ && io().out.free_space() > 0) {
      std::string chunk = pattern(std::min<size_t>(4096, total_ - sent_), sent_);
      size_t n = io().out.append(chunk);
      sent_ += n;
      if (n < chunk.size()) break;
    }
    if (sent_ == total_ && !closing()) {
      close_after_flush(true);
      return true;
    }
    return sent_ != before;
  }

 private:
  size_t total_;
  size_t sent_ = 0;
};

// On the first line that comes in, answers "goodbye\n" and calls close_after_flush(clean).
// Input after the line is left in io().in.
class Goodbye : public TestConn {
 public:
  Goodbye(Reactor& r, BufferPool& p, int fd, Log& log, bool clean)
      : TestConn(r, p, fd, log), clean_(clean) {}

 protected:
  bool step() override {
    if (said_) return false;
    std::string_view in = io().in.readable();
    size_t nl = in.find('\n');
    if (nl == std::string_view::npos) return false;
    io().in.consume(nl + 1);
    io().out.append("goodbye\n");
    said_ = true;
    close_after_flush(clean_);
    return true;
  }

 private:
  bool clean_;
  bool said_ = false;
};

// Reports progress without any I/O for `busy_turns` turns (forever if negative), then writes
// "done\n" once.
class Busy : public TestConn {
 public:
  Busy(Reactor& r, BufferPool& p, int fd, Log& log, int busy_turns)
      : TestConn(r, p, fd, log), left_(busy_turns) {}

 protected:
  bool step() override {
    if (left_ < 0) return true;
    if (left_ > 0) {
      --left_;
      return true;
    }
    if (!done_) {
      done_ = true;
      io().out.append("done\n");
      return true;
    }
    return false;
  }

 private:
  int left_;
  bool done_ = false;
};

// Writes "hello\n" on its first turn.
class Greeter : public TestConn {
 public:
  using TestConn::TestConn;

 protected:
  bool step() override {
    if (greeted_) return false;
    greeted_ = true;
    io().out.append("hello\n");
    return true;
  }

 private:
  bool greeted_ = false;
};

// Closes itself from inside a turn right after scheduling another turn.
class SelfCloser : public TestConn {
 public:
  using TestConn::TestConn;

 protected:
  bool step() override {
    schedule_turn();
    close();
    return true;
  }
};

// The test's end of a socketpair: reads what is there without blocking.
struct Peer {
  int fd = -1;
  std::string got;
  bool eof = false;
  int error = 0;

  // Reads at most `max` bytes of what is available.
  void read_available(size_t max = SIZE_MAX) {
    char buf[64 * 1024];
    size_t total = 0;
    while (total < max && !eof && error == 0) {
      ssize_t n = ::read(fd, buf, std::min(sizeof buf, max - total));
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
        total += static_cast<size_t>(n);
      } else if (n == 0) {
        eof = true;
      } else if (errno == EINTR) {
        continue;
      } else {
        if (errno != EAGAIN) error = errno;
        break;
      }
    }
  }
  // Writes all of `s` (small enough for the socket buffer).
  bool write(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

class ConnectionTest : public ::testing::Test {
 protected:
  // Allocates a connection of type C on a new socketpair (the connection owns one end, the
  // returned Peer the other). Not started.
  template <class C, class... Args>
  C* make(Peer*& peer, Log*& log, Args&&... args) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    peers_.emplace_back();
    peers_.back().fd = sv[1];
    logs_.emplace_back();
    peer = &peers_.back();
    log = &logs_.back();
    C* c = new C(reactor_, pool_, sv[0], *log, std::forward<Args>(args)...);
    conns_.push_back(c);
    return c;
  }

  // Runs the reactor until cond() holds (false after `limit`), calling each() after every turn.
  bool pump_until(const std::function<bool()>& cond, const std::function<void()>& each = {},
                  std::chrono::milliseconds limit = 5s, int wait_ms = 5) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      reactor_.run_once(wait_ms);
      if (each) each();
    }
    return true;
  }
  // A few reactor turns: whatever was ready has been handled.
  void settle(int turns = 5) {
    for (int i = 0; i < turns; ++i)
      reactor_.run_once(0);
  }

  void TearDown() override {
    // Close what is still open, then let the reactor free it.
    for (size_t i = 0; i < conns_.size(); ++i)
      if (!logs_[i].freed) conns_[i]->close();
    reactor_.run_pending();
    for (size_t i = 0; i < conns_.size(); ++i) {
      EXPECT_TRUE(logs_[i].freed) << "connection " << i << " was never freed";
      EXPECT_LE(logs_[i].closes, 1) << "on_close more than once";
      EXPECT_EQ(logs_[i].turns_after_close, 0) << "turn() after on_close";
    }
    for (auto& p : peers_)
      p.close();
    EXPECT_EQ(pool_.in_use(), 0u) << "buffers not given back";
  }

  Reactor reactor_;
  BufferPool pool_{16 * 1024, 64};
  std::deque<Peer> peers_;
  std::deque<Log> logs_;
  std::vector<TestConn*> conns_;  // freed by the driver (delete this)
};

// A pool of small blocks makes every turn move little: the turn budget is reached with a few KiB.
class SmallBlockConnectionTest : public ConnectionTest {
 protected:
  SmallBlockConnectionTest() { pool_.set_block_size(1024); }
};

// ---- data flow --------------------------------------------------------------------------------

TEST_F(ConnectionTest, EchoesAFewKiB) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->start();
  std::string sent = pattern(5000);
  ASSERT_TRUE(peer->write(sent));
  ASSERT_TRUE(
      pump_until([&] { return peer->got.size() >= sent.size(); }, [&] { peer->read_available(); }));
  EXPECT_EQ(peer->got, sent);
  EXPECT_EQ(log->closes, 0);

  // More, in pieces.
  std::string more = pattern(3000, 5000);
  ASSERT_TRUE(peer->write(more.substr(0, 1000)));
  settle();
  ASSERT_TRUE(peer->write(more.substr(1000)));
  ASSERT_TRUE(
      pump_until([&] { return peer->got.size() >= 8000; }, [&] { peer->read_available(); }));
  EXPECT_EQ(peer->got, sent + more);

  // The peer finishes: the echo closes after its output, and the peer sees EOF.
  ::shutdown(peer->fd, SHUT_WR);
  ASSERT_TRUE(pump_until([&] { return peer->eof; }, [&] { peer->read_available(); }));
  EXPECT_EQ(peer->got, sent + more);
  EXPECT_EQ(log->closes, 1);
  EXPECT_EQ(log->read_failures, 0);
  ASSERT_TRUE(pump_until([&] { return log->freed; }));
}

TEST_F(ConnectionTest, BigTransferToASlowReaderCompletes) {
  constexpr size_t kTotal = 3 * 1024 * 1024;
  Peer* peer;
  Log* log;
  Source* c = make<Source>(peer, log, kTotal);
  c->start();
  // The peer reads at most 16 KiB per reactor turn: the connection keeps hitting a full socket
  // and must continue on each writable edge.
  ASSERT_TRUE(pump_until([&] { return peer->eof || peer->error != 0; },
                         [&] { peer->read_available(16 * 1024); }, 60s, 1))
      << "got " << peer->got.size() << " of " << kTotal;
  EXPECT_EQ(peer->error, 0);
  ASSERT_EQ(peer->got.size(), kTotal);
  EXPECT_TRUE(peer->got == pattern(kTotal)) << "bytes out of order or corrupted";
  EXPECT_EQ(log->closes, 1);
  ASSERT_TRUE(pump_until([&] { return log->freed; }));
}

// Both directions at once with a peer on its own thread: the connection moves bytes turn after
// turn with both sides ready, so it runs into the turn budget and must resume by itself.
TEST_F(ConnectionTest, BigEchoWithAConcurrentPeer) {
  constexpr size_t kTotal = 4 * 1024 * 1024;
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->start();

  std::atomic<bool> peer_done{false};
  std::string received;
  bool peer_eof = false;
  int peer_error = 0;
  int fd = peer->fd;
  std::thread t([&] {
    std::string data = pattern(kTotal);
    size_t written = 0;
    bool shut = false;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    std::vector<char> buf(64 * 1024);
    while (!peer_eof && peer_error == 0 && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, static_cast<short>(POLLIN | (written < kTotal ? POLLOUT : 0)), 0};
      ::poll(&p, 1, 100);
      if (written < kTotal) {
        ssize_t n = ::send(fd, data.data() + written, std::min<size_t>(kTotal - written, 32768),
                           MSG_NOSIGNAL);
        if (n > 0)
          written += static_cast<size_t>(n);
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
          peer_error = errno;
      } else if (!shut) {
        ::shutdown(fd, SHUT_WR);
        shut = true;
      }
      for (;;) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n > 0) {
          received.append(buf.data(), static_cast<size_t>(n));
        } else if (n == 0) {
          peer_eof = true;
          break;
        } else {
          if (errno != EAGAIN && errno != EINTR) peer_error = errno;
          break;
        }
      }
    }
    peer_done = true;
  });
  bool finished = pump_until([&] { return peer_done.load(); }, {}, 70s, 5);
  t.join();
  ASSERT_TRUE(finished);
  EXPECT_EQ(peer_error, 0);
  EXPECT_TRUE(peer_eof) << "received " << received.size() << " of " << kTotal;
  ASSERT_EQ(received.size(), kTotal);
  EXPECT_TRUE(received == pattern(kTotal)) << "bytes out of order or corrupted";
  EXPECT_EQ(log->echoed, kTotal);
  EXPECT_EQ(log->closes, 1);
}

// ---- the turn budget --------------------------------------------------------------------------

TEST_F(ConnectionTest, BusyConnectionResumesByItselfAfterTheTurnBudget) {
  Peer* peer;
  Log* log;
  Busy* c = make<Busy>(peer, log, 3 * Connection::kMaxTurns + 5);
  c->start();
  // One run() stops at the budget: the rest must follow from the queued yield, with no socket
  // event to wake the connection.
  EXPECT_EQ(log->turns, Connection::kMaxTurns);
  ASSERT_TRUE(
      pump_until([&] { return peer->got == "done\n"; }, [&] { peer->read_available(); }, 5s, 50))
      << "turns: " << log->turns;
  EXPECT_GE(log->turns, 3 * Connection::kMaxTurns + 6);
  EXPECT_EQ(log->closes, 0);
}

TEST_F(ConnectionTest, BusyConnectionDoesNotStarveOthers) {
  Peer* busy_peer;
  Log* busy_log;
  Busy* busy = make<Busy>(busy_peer, busy_log, -1);  // busy forever
  Peer* peer;
  Log* log;
  Echo* echo = make<Echo>(peer, log);
  busy->start();  // returns: at most kMaxTurns turns per run
  EXPECT_EQ(busy_log->turns, Connection::kMaxTurns);
  echo->start();
  ASSERT_TRUE(peer->write("ping\n"));
  ASSERT_TRUE(pump_until([&] { return peer->got == "ping\n"; }, [&] { peer->read_available(); }));
  // The busy one went on too, one budget per reactor turn.
  ASSERT_TRUE(pump_until([&] { return busy_log->turns > 4 * Connection::kMaxTurns; }));
  // Closed while its yielded turn is queued: freed only after that turn (ASan checks).
  busy->close();
  EXPECT_EQ(busy_log->closes, 1);
  EXPECT_FALSE(busy_log->freed);
  int turns = busy_log->turns;
  ASSERT_TRUE(pump_until([&] { return busy_log->freed; }));
  EXPECT_EQ(busy_log->turns, turns);
}

TEST_F(SmallBlockConnectionTest, EchoResumesAfterTheTurnBudgetWithoutNewEvents) {
  // 80 KiB wait in the socket before the connection starts, and the peer reads nothing until
  // the end: no readiness edge comes after the first (the registration's). With 1 KiB buffers,
  // a run moves at most kMaxTurns KiB: start() and that one event move 64 KiB; the rest moves
  // only if the driver continues by itself after yielding.
  constexpr size_t kTotal = 80 * 1024;
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  // Room for the whole echo in the socket while the peer does not read (a read would wake the
  // connection with a writable edge).
  int sndbuf = 1024 * 1024;
  ::setsockopt(c->io().fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  std::string data = pattern(kTotal);
  ASSERT_TRUE(peer->write(data));
  c->start();
  EXPECT_EQ(log->echoed, static_cast<size_t>(Connection::kMaxTurns) * 1024);
  ASSERT_TRUE(pump_until([&] { return log->echoed == kTotal; }, {}, 5s, 50))
      << "echoed " << log->echoed << " of " << kTotal;
  ASSERT_TRUE(
      pump_until([&] { return peer->got.size() >= kTotal; }, [&] { peer->read_available(); }));
  EXPECT_TRUE(peer->got == data);
}

// ---- the end of a connection ------------------------------------------------------------------

TEST_F(ConnectionTest, CloseAfterFlushCleanClosesOnceTheAnswerIsOut) {
  Peer* peer;
  Log* log;
  Goodbye* c = make<Goodbye>(peer, log, /*clean=*/true);
  ASSERT_TRUE(peer->write("bye\n"));
  c->start();
  // The request was read whole and nothing followed: closed as soon as the answer was written.
  EXPECT_EQ(log->closes, 1);
  EXPECT_TRUE(c->closed());
  EXPECT_FALSE(log->freed);  // freed after the batch, not inside run()
  peer->read_available();
  EXPECT_EQ(peer->got, "goodbye\n");
  EXPECT_TRUE(peer->eof);
  EXPECT_EQ(peer->error, 0);
  ASSERT_TRUE(pump_until([&] { return log->freed; }));
  EXPECT_EQ(log->timeouts, 0);
}

TEST_F(ConnectionTest, CloseAfterFlushCleanWithInputLeftLingers) {
  Peer* peer;
  Log* log;
  Goodbye* c = make<Goodbye>(peer, log, /*clean=*/true);
  c->set_linger(60s);
  ASSERT_TRUE(peer->write("bye\nmore input\n"));  // more than the one request
  c->start();
  // Input is left: the write side is shut, but the socket stays open.
  ASSERT_TRUE(pump_until([&] { return peer->eof; }, [&] { peer->read_available(); }));
  EXPECT_EQ(peer->got, "goodbye\n");
  EXPECT_EQ(log->closes, 0);
  EXPECT_TRUE(c->closing());
  EXPECT_FALSE(c->closed());
  // The peer closes: so does the connection.
  peer->close();
  ASSERT_TRUE(pump_until([&] { return log->freed; }));
  EXPECT_EQ(log->closes, 1);
  EXPECT_EQ(log->timeouts, 0);
}

TEST_F(ConnectionTest, CloseAfterFlushNotCleanHalfClosesAndDropsInput) {
  Peer* peer;
  Log* log;
  Goodbye* c = make<Goodbye>(peer, log, /*clean=*/false);
  c->set_linger(60s);
  ASSERT_TRUE(peer->write("bye\n"));
  c->start();
  ASSERT_TRUE(pump_until([&] { return peer->eof; }, [&] { peer->read_available(); }));
  EXPECT_EQ(peer->got, "goodbye\n");  // then EOF: half closed
  EXPECT_EQ(log->closes, 0);
  EXPECT_FALSE(c->closed());

  // The peer goes on sending (e.g. the rest of an upload): read and dropped, not reset.
  std::string junk(4096, 'j');
  size_t sent = 0;
  for (int i = 0; i < 256; ++i) {
    ssize_t n = ::send(peer->fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    ASSERT_TRUE(n > 0 || errno == EAGAIN) << "send: " << strerror(errno);
    if (n > 0) sent += static_cast<size_t>(n);
    settle(1);
  }
  EXPECT_GE(sent, 512 * 1024u) << "the lingering connection did not read the input";
  settle();
  EXPECT_EQ(log->closes, 0);
  EXPECT_EQ(log->turns, 1);  // no protocol turn while lingering
  EXPECT_EQ(::send(peer->fd, "x", 1, MSG_NOSIGNAL), 1) << strerror(errno);

  peer->close();
  ASSERT_TRUE(pump_until([&] { return log->freed; }));
  EXPECT_EQ(log->closes, 1);
  EXPECT_EQ(log->timeouts, 0);
}

TEST_F(ConnectionTest, LingerEndsAtTheLingerTime) {
  Peer* peer;
  Log* log;
  Goodbye* c = make<Goodbye>(peer, log, /*clean=*/false);
  c->set_linger(30ms);
  ASSERT_TRUE(peer->write("bye\n"));
  c->start();
  // The peer never closes: the linger timer does.
  ASSERT_TRUE(pump_until([&] { return log->freed; }, [&] { peer->read_available(); }));
  EXPECT_EQ(log->closes, 1);
  EXPECT_EQ(log->timeouts, 0) << "the linger timer is the driver's, not the protocol's";
  EXPECT_EQ(peer->got, "goodbye\n");
  EXPECT_TRUE(peer->eof);
}

// Lingering reads at most 16 blocks per readiness edge. When the peer sends more than that
// and then closes, its FIN is the last edge: the rest of the input (and the EOF behind it)
// is never read, and the connection stays open until the linger timer instead of closing
// when the peer does.
TEST_F(SmallBlockConnectionTest, LingerClosesWhenThePeerClosesAfterSendingALot) {
  Peer* peer;
  Log* log;
  Goodbye* c = make<Goodbye>(peer, log, /*clean=*/false);
  c->set_linger(60s);
  ASSERT_TRUE(peer->write("bye\n"));
  c->start();
  ASSERT_TRUE(pump_until([&] { return peer->eof; }, [&] { peer->read_available(); }));
  ASSERT_FALSE(c->closed());
  // 64 KiB (64 blocks) then the close, with no reactor turn in between.
  ASSERT_TRUE(peer->write(std::string(64 * 1024, 'j')));
  peer->close();
  EXPECT_TRUE(pump_until([&] { return log->freed; }))
      << "still lingering after the peer closed (closes: " << log->closes << ")";
}

TEST_F(ConnectionTest, OnCloseOnceAndCloseIsIdempotent) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->start();
  c->close();
  c->close();
  c->close_after_flush(true);  // after close: nothing
  c->schedule_turn();          // after close: nothing
  EXPECT_EQ(log->closes, 1);
  EXPECT_TRUE(c->closed());
  EXPECT_FALSE(log->freed);
  reactor_.run_once(0);
  EXPECT_TRUE(log->freed);
  EXPECT_EQ(log->closes, 1);
  // The peer sees the close.
  ASSERT_TRUE(pump_until([&] { return peer->eof; }, [&] { peer->read_available(); }));
}

TEST_F(ConnectionTest, PeerResetFailsTheReadAndCloses) {
  Peer* peer;
  Log* log;
  Greeter* c = make<Greeter>(peer, log);
  c->start();
  // The peer goes away without reading "hello\n": the connection's next read is reset.
  peer->close();
  ASSERT_TRUE(pump_until([&] { return log->freed; }));
  EXPECT_EQ(log->read_failures, 1);
  EXPECT_EQ(log->closes, 1);
}

TEST_F(ConnectionTest, FreedWithoutCloseStillClosesTheSocket) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Log log;
  {
    auto* c = new Echo(reactor_, pool_, sv[0], log);
    delete c;  // never started, never closed
  }
  EXPECT_TRUE(log.freed);
  EXPECT_EQ(log.closes, 0);
  Peer peer{sv[1]};
  peer.read_available();
  EXPECT_TRUE(peer.eof) << "the connection's socket was leaked";
  peer.close();
}

// ---- the timer --------------------------------------------------------------------------------

TEST_F(ConnectionTest, TimerFiresOnTimeoutThenATurn) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->idle_flag = true;  // buffers go back to the pool while waiting
  c->on_timeout_writes = "timeout\n";
  c->start();
  EXPECT_EQ(pool_.in_use(), 0u);
  c->arm_timer(20ms);
  EXPECT_TRUE(c->timer_armed());
  ASSERT_TRUE(
      pump_until([&] { return peer->got == "timeout\n"; }, [&] { peer->read_available(); }));
  EXPECT_EQ(log->timeouts, 1);
  EXPECT_TRUE(log->buffers_at_timeout) << "on_timeout without buffers";
  EXPECT_GT(log->turns, log->turns_at_timeout) << "no turn after on_timeout";
  EXPECT_FALSE(c->timer_armed());
  EXPECT_EQ(log->closes, 0);
  settle();
  EXPECT_EQ(pool_.in_use(), 0u);  // idle again: buffers back
}

TEST_F(ConnectionTest, CancelledTimerDoesNotFire) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->start();
  c->arm_timer(10ms);
  c->cancel_timer();
  EXPECT_FALSE(c->timer_armed());
  // A later timer of someone else fires; the cancelled one did not.
  bool other = false;
  Timer t([&] { other = true; });
  t.arm(reactor_.timers(), reactor_.now() + 40ms);
  ASSERT_TRUE(pump_until([&] { return other; }));
  EXPECT_EQ(log->timeouts, 0);
}

TEST_F(ConnectionTest, ClosedConnectionTimerNeverFires) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->start();
  c->arm_timer(10ms);
  c->close();
  bool other = false;
  Timer t([&] { other = true; });
  t.arm(reactor_.timers(), reactor_.now() + 40ms);
  ASSERT_TRUE(pump_until([&] { return other && log->freed; }));
  EXPECT_EQ(log->timeouts, 0);
}

// ---- buffers ----------------------------------------------------------------------------------

TEST_F(ConnectionTest, IdleConnectionGivesItsBuffersBack) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->idle_flag = true;
  c->start();
  EXPECT_EQ(pool_.in_use(), 0u);
  EXPECT_EQ(pool_.cached(), 2u);  // in and out, back after the first run
  EXPECT_FALSE(c->io().in.allocated());
  EXPECT_FALSE(c->io().out.allocated());

  ASSERT_TRUE(peer->write("hello\n"));
  ASSERT_TRUE(pump_until([&] { return peer->got == "hello\n"; }, [&] { peer->read_available(); }));
  settle();
  EXPECT_EQ(pool_.in_use(), 0u);
  EXPECT_EQ(pool_.cached(), 2u);  // the same two blocks went out and came back
}

TEST_F(ConnectionTest, BusyConnectionKeepsItsBuffers) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->idle_flag = false;
  c->start();
  EXPECT_EQ(pool_.in_use(), 2u);
  ASSERT_TRUE(peer->write("hello\n"));
  ASSERT_TRUE(pump_until([&] { return peer->got == "hello\n"; }, [&] { peer->read_available(); }));
  EXPECT_EQ(pool_.in_use(), 2u);
  EXPECT_TRUE(c->io().in.allocated());
  c->close();
  EXPECT_EQ(pool_.in_use(), 0u);  // close gives them back
  EXPECT_EQ(pool_.cached(), 2u);
}

TEST_F(ConnectionTest, BuffersHoldingOutputAreKeptThenGivenBackOnClose) {
  Peer* peer;
  Log* log;
  Source* c = make<Source>(peer, log, 8 * 1024 * 1024);
  c->idle_flag = true;  // idle, but output is waiting for a peer that does not read
  c->start();
  settle();
  EXPECT_FALSE(c->io().out.empty());
  EXPECT_EQ(pool_.in_use(), 2u);
  c->close();  // unsent output is dropped and its block goes back
  EXPECT_EQ(pool_.in_use(), 0u);
  EXPECT_EQ(log->closes, 1);
}

// ---- scheduled turns and freeing --------------------------------------------------------------

TEST_F(ConnectionTest, ScheduleTurnRunsATurnAfterTheBatch) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->start();
  settle();
  int before = log->turns;
  c->schedule_turn();
  EXPECT_EQ(log->turns, before);  // not now
  reactor_.run_once(0);
  EXPECT_GT(log->turns, before);
  // Several requests in one batch: at least one turn, and the connection stays usable.
  before = log->turns;
  c->schedule_turn();
  c->schedule_turn();
  reactor_.run_once(0);
  EXPECT_GT(log->turns, before);
  ASSERT_TRUE(peer->write("again\n"));
  ASSERT_TRUE(pump_until([&] { return peer->got == "again\n"; }, [&] { peer->read_available(); }));
}

TEST_F(ConnectionTest, ScheduleTurnFromAnotherHandlerRunsAfterItsBatch) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->start();
  settle();
  // A deferred job (as an upstream connection's event would be) asks for a turn.
  int before = log->turns;
  reactor_.defer([&] { c->schedule_turn(); });
  reactor_.run_once(0);
  EXPECT_GT(log->turns, before);
}

TEST_F(ConnectionTest, ClosedWithAScheduledTurnPendingIsFreedAfterIt) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->start();
  settle();
  int turns = log->turns;
  c->schedule_turn();
  c->close();
  EXPECT_EQ(log->closes, 1);
  EXPECT_FALSE(log->freed);
  reactor_.run_once(0);  // the queued turn runs (no protocol turn: closed), then frees
  EXPECT_TRUE(log->freed);
  EXPECT_EQ(log->turns, turns);
}

TEST_F(ConnectionTest, ClosedWithAYieldAndAScheduledTurnPendingIsFreedAfterBoth) {
  Peer* peer;
  Log* log;
  Busy* c = make<Busy>(peer, log, -1);
  c->start();  // the budget ran out: a yielded turn is queued
  c->schedule_turn();
  c->close();
  EXPECT_FALSE(log->freed);
  reactor_.run_once(0);
  EXPECT_TRUE(log->freed);
  EXPECT_EQ(log->closes, 1);
}

TEST_F(ConnectionTest, ClosedFromItsOwnTurnWithATurnScheduled) {
  Peer* peer;
  Log* log;
  SelfCloser* c = make<SelfCloser>(peer, log);
  c->start();
  EXPECT_EQ(log->closes, 1);
  EXPECT_EQ(log->turns, 1);
  EXPECT_FALSE(log->freed);
  ASSERT_TRUE(pump_until([&] { return log->freed; }));
  EXPECT_EQ(log->turns, 1);
  ASSERT_TRUE(pump_until([&] { return peer->eof; }, [&] { peer->read_available(); }));
}

// Closes a connection when its socket becomes readable.
class Closer : public EventHandler {
 public:
  explicit Closer(Connection* target) : target_(target) {}
  void on_event(uint32_t) override {
    if (!done_) target_->close();
    done_ = true;
  }

 private:
  Connection* target_;
  bool done_ = false;
};

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
};

TEST_F(ConnectionTest, EventOfAConnectionClosedEarlierInTheSameBatchIsIgnored) {
  Peer* peer;
  Log* log;
  Echo* c = make<Echo>(peer, log);
  c->start();
  Closer closer(c);
  SocketPair trigger;  // closed before `closer` goes away (declared after it)
  ASSERT_TRUE(reactor_.add(trigger.fd[0], &closer, EPOLLIN | EPOLLET));
  settle();
  ASSERT_FALSE(log->freed);
  // Both ready in one batch, the closer first (epoll reports in the order of readiness): the
  // connection's event comes after its close and must be ignored; it is freed after the batch.
  ASSERT_EQ(::write(trigger.fd[1], "!", 1), 1);
  ASSERT_TRUE(peer->write("late\n"));
  int turns = log->turns;
  reactor_.run_once(0);
  EXPECT_EQ(log->closes, 1);
  EXPECT_TRUE(log->freed);
  EXPECT_EQ(log->turns, turns);
  EXPECT_EQ(log->turns_after_close, 0);
}

}  // namespace
}  // namespace weir::net
