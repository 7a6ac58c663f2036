// The per-worker keep-alive pool (src/proxy/upstream_pool.*) on a real Worker and Reactor. Each
// "server connection" is one end of a socketpair registered with the worker's reactor, as the
// exchange registers a connect()ed socket; the test holds the other end and plays the server:
// it sees weir close a connection (EOF), and it can close or talk on an idle one.
//
// Covered: take/put per server id, most recently used first, the per-server cap (from the
// config and set_limits), idle connections keep no buffers, the idle timeout (restarted by each
// put), a connection the server closed or wrote on while idle is dropped and never handed out
// (also from the middle of the list), close_all, draining, the worker closing what is pooled.
#include "proxy/upstream_pool.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/loader.hpp"
#include "model/snapshot.hpp"
#include "proxy/upstream_conn.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

using namespace std::chrono_literals;

// A connection to a pretend server: weir's end (owned by the pool while idle) and ours.
struct Pair {
  UpstreamConn* conn = nullptr;
  int peer = -1;
};

class UpstreamPoolTest : public ::testing::Test {
 protected:
  void SetUp() override { build_worker(""); }

  void TearDown() override {
    for (UpstreamConn* c : held_)
      c->close();
    held_.clear();
    if (worker_) {
      worker_->reactor().run_pending();
      worker_.reset();
    }
    for (int fd : peers_)
      ::close(fd);
  }

  // A worker from a config with one backend and `limits` (YAML lines under `limits:`).
  void build_worker(const std::string& limits) {
    if (worker_) {
      worker_->reactor().run_pending();
      worker_.reset();
    }
    std::string yaml =
        "listeners:\n"
        "  - name: web\n"
        "    listen: 127.0.0.1:18080\n"
        "    backend: app\n"
        "backends:\n"
        "  - name: app\n"
        "    servers:\n"
        "      - address: 127.0.0.1:9\n";
    if (!limits.empty()) yaml += "limits:\n" + limits;
    auto res = config::load_config_string(yaml, "upstream_pool_test.yaml");
    ASSERT_TRUE(res.ok()) << (res.diagnostics.empty() ? "" : res.diagnostics[0].format());
    std::vector<std::string> errors;
    auto snap = model::build_snapshot(res.config, registry_, errors);
    ASSERT_NE(snap, nullptr) << (errors.empty() ? "" : errors[0]);
    worker_ = std::make_unique<Worker>(
        0, snap, std::vector<ListenSocket>{}, std::vector<std::string>{"127.0.0.1:18080"},
        std::vector<std::shared_ptr<ListenerGate>>{std::make_shared<ListenerGate>()});
  }

  UpstreamPool& pool() { return worker_->pool(); }
  Reactor& reactor() { return worker_->reactor(); }

  // A connected upstream connection to server `id`, registered with the reactor, in use (not
  // pooled) until put.
  Pair connect(uint32_t id) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    auto* c = new UpstreamConn(*worker_, sv[0], id);
    c->connecting = false;
    c->stream.writable = true;
    reactor().add(sv[0], c);
    peers_.push_back(sv[1]);
    return {c, sv[1]};
  }

  // A connection that was used for a request (buffers held) and goes back to the pool.
  void put(const Pair& p) {
    worker_->buffers().acquire(p.conn->stream.in);
    worker_->buffers().acquire(p.conn->stream.out);
    pool().put(p.conn);
  }

  // A connection taken from the pool: the test holds it and closes it at the end.
  UpstreamConn* take(uint32_t id) {
    UpstreamConn* c = pool().take(id);
    if (c) held_.push_back(c);
    return c;
  }
  // Gives back a connection take() returned (the test no longer closes it).
  void put_back(UpstreamConn* c) {
    std::erase(held_, c);
    pool().put(c);
  }

  // True if weir closed its end: the peer reads EOF (or ECONNRESET, when weir's end still
  // held unread bytes of ours). Nothing to read yet counts as open.
  static bool closed_by_weir(int peer) {
    char b;
    ssize_t n = ::recv(peer, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  // Turns the reactor until `done()` (true) or about 5 s passed (false).
  template <class Done>
  bool run_until(Done done) {
    auto end = Clock::now() + 5s;
    while (!done()) {
      if (Clock::now() > end) return false;
      reactor().run_once(5);
    }
    return true;
  }
  // Turns the reactor for `d`.
  void run_for(Millis d) {
    auto end = Clock::now() + d;
    while (Clock::now() < end)
      reactor().run_once(2);
  }

  model::ServerRegistry registry_;
  std::unique_ptr<Worker> worker_;
  std::vector<int> peers_;
  std::vector<UpstreamConn*> held_;
};

TEST_F(UpstreamPoolTest, EmptyPoolHasNothing) {
  EXPECT_EQ(pool().idle_count(), 0u);
  EXPECT_EQ(take(0), nullptr);
  EXPECT_EQ(take(12345), nullptr);
}

TEST_F(UpstreamPoolTest, PutThenTakeGivesTheSameConnectionReadyForReuse) {
  Pair p = connect(0);
  put(p);
  EXPECT_EQ(pool().idle_count(), 1u);
  EXPECT_FALSE(closed_by_weir(p.peer));
  UpstreamConn* c = take(0);
  ASSERT_EQ(c, p.conn);
  EXPECT_EQ(pool().idle_count(), 0u);
  EXPECT_TRUE(c->reused);
  EXPECT_FALSE(c->closed);
  EXPECT_EQ(c->owner, nullptr);
  EXPECT_EQ(c->pool_prev, nullptr);
  EXPECT_EQ(c->pool_next, nullptr);
  EXPECT_FALSE(c->idle_timer.pending());
  EXPECT_FALSE(c->stream.readable);
  EXPECT_TRUE(c->stream.writable);
  EXPECT_EQ(take(0), nullptr) << "handed out twice";
  EXPECT_FALSE(closed_by_weir(p.peer));
}

TEST_F(UpstreamPoolTest, IdleConnectionsHoldNoBuffersAndAnIdleTimer) {
  Pair p = connect(0);
  put(p);
  EXPECT_FALSE(p.conn->stream.in.allocated());
  EXPECT_FALSE(p.conn->stream.out.allocated());
  EXPECT_TRUE(p.conn->idle_timer.pending());
  EXPECT_EQ(p.conn->owner, nullptr);
  EXPECT_EQ(worker_->buffers().in_use(), 0u);
}

TEST_F(UpstreamPoolTest, ConnectionsAreKeptPerServer) {
  Pair a = connect(0), b = connect(1), c = connect(0), d = connect(7);
  put(a);
  put(b);
  put(c);
  put(d);
  EXPECT_EQ(pool().idle_count(), 4u);
  EXPECT_EQ(take(1), b.conn);
  EXPECT_EQ(take(1), nullptr);
  EXPECT_EQ(take(7), d.conn);
  EXPECT_EQ(take(3), nullptr);
  UpstreamConn* x = take(0);
  UpstreamConn* y = take(0);
  EXPECT_TRUE((x == a.conn && y == c.conn) || (x == c.conn && y == a.conn));
  EXPECT_EQ(take(0), nullptr);
  EXPECT_EQ(pool().idle_count(), 0u);
}

TEST_F(UpstreamPoolTest, MostRecentlyUsedFirst) {
  Pair a = connect(0), b = connect(0), c = connect(0);
  put(a);
  put(b);
  put(c);
  EXPECT_EQ(take(0), c.conn);
  put_back(c.conn);
  EXPECT_EQ(take(0), c.conn);
  EXPECT_EQ(take(0), b.conn);
  EXPECT_EQ(take(0), a.conn);
  EXPECT_EQ(take(0), nullptr);
}

TEST_F(UpstreamPoolTest, AFullPoolClosesWhatComesBack) {
  pool().set_limits(2, 30000ms);
  Pair a = connect(0), b = connect(0), c = connect(0), d = connect(1);
  put(a);
  put(b);
  put(c);  // a third for server 0: closed
  EXPECT_EQ(pool().idle_count(), 2u);
  EXPECT_TRUE(closed_by_weir(c.peer));
  EXPECT_FALSE(closed_by_weir(a.peer));
  EXPECT_FALSE(closed_by_weir(b.peer));
  put(d);  // the cap is per server
  EXPECT_EQ(pool().idle_count(), 3u);
  EXPECT_FALSE(closed_by_weir(d.peer));
  reactor().run_once(0);  // frees c
  EXPECT_EQ(take(0), b.conn);
  EXPECT_EQ(take(0), a.conn);
  EXPECT_EQ(take(0), nullptr);
}

TEST_F(UpstreamPoolTest, MaxIdleZeroKeepsNothing) {
  pool().set_limits(0, 30000ms);
  Pair a = connect(0);
  put(a);
  EXPECT_EQ(pool().idle_count(), 0u);
  EXPECT_TRUE(closed_by_weir(a.peer));
  reactor().run_once(0);
  EXPECT_EQ(take(0), nullptr);
}

TEST_F(UpstreamPoolTest, LimitsComeFromTheConfig) {
  build_worker("  max_idle_upstream_per_server: 1\n  upstream_idle_timeout: 300ms\n");
  Pair a = connect(0), b = connect(0);
  reactor().refresh_now();
  auto put_at = Clock::now();
  put(a);
  put(b);
  EXPECT_EQ(pool().idle_count(), 1u);
  EXPECT_FALSE(closed_by_weir(a.peer));
  EXPECT_TRUE(closed_by_weir(b.peer));
  ASSERT_TRUE(run_until([&] { return pool().idle_count() == 0; }));
  EXPECT_GE(Clock::now() - put_at, 290ms);
  EXPECT_TRUE(closed_by_weir(a.peer));
}

// The timing checks below use deadlines of a second or more, far beyond the few milliseconds
// the steps between them take: only a machine stalled for most of a second could fail them.

TEST_F(UpstreamPoolTest, IdleTimeoutClosesPooledConnections) {
  pool().set_limits(64, 1000ms);
  Pair a = connect(0), b = connect(1);
  reactor().refresh_now();
  auto put_at = Clock::now();
  put(a);
  put(b);
  run_for(100ms);
  ASSERT_LT(Clock::now() - put_at, 900ms) << "the test itself stalled";
  EXPECT_EQ(pool().idle_count(), 2u) << "closed long before the idle timeout";
  EXPECT_FALSE(closed_by_weir(a.peer));
  ASSERT_TRUE(run_until([&] { return pool().idle_count() == 0; })) << "never timed out";
  EXPECT_GE(Clock::now() - put_at, 990ms);
  EXPECT_TRUE(closed_by_weir(a.peer));
  EXPECT_TRUE(closed_by_weir(b.peer));
  EXPECT_EQ(take(0), nullptr);
  EXPECT_EQ(take(1), nullptr);
}

TEST_F(UpstreamPoolTest, AConnectionInUseDoesNotTimeOut) {
  pool().set_limits(64, 1000ms);
  Pair a = connect(0);
  reactor().refresh_now();
  auto put_at = Clock::now();
  put(a);
  run_for(50ms);
  ASSERT_LT(Clock::now() - put_at, 900ms) << "the test itself stalled";
  ASSERT_EQ(take(0), a.conn);
  // In use well past the deadline it had while idle: still open.
  run_for(1200ms);
  EXPECT_FALSE(closed_by_weir(a.peer)) << "timed out while in use";
  EXPECT_FALSE(a.conn->closed);
  EXPECT_FALSE(a.conn->idle_timer.pending());
}

TEST_F(UpstreamPoolTest, EachPutRestartsTheIdleClock) {
  pool().set_limits(64, 1000ms);
  Pair a = connect(0);
  reactor().refresh_now();
  auto first_put = Clock::now();
  put(a);
  run_for(100ms);
  ASSERT_EQ(take(0), a.conn);
  run_for(400ms);
  // Back in the pool before the first deadline: a new 1000 ms from now.
  reactor().refresh_now();
  auto put_at = Clock::now();
  ASSERT_LT(put_at - first_put, 900ms) << "the test itself stalled";
  put_back(a.conn);
  // Past the first deadline, well before the second.
  while (Clock::now() < first_put + 1100ms)
    reactor().run_once(2);
  ASSERT_LT(Clock::now() - put_at, 900ms) << "the test itself stalled";
  EXPECT_EQ(pool().idle_count(), 1u) << "the first deadline closed a connection put back since";
  EXPECT_FALSE(closed_by_weir(a.peer));
  ASSERT_TRUE(run_until([&] { return pool().idle_count() == 0; }));
  EXPECT_GE(Clock::now() - put_at, 990ms);
  EXPECT_TRUE(closed_by_weir(a.peer));
}

TEST_F(UpstreamPoolTest, AConnectionTheServerClosedIsDroppedNotHandedOut) {
  Pair a = connect(0), b = connect(0), c = connect(0);
  put(a);
  put(b);
  put(c);
  // The middle one of the list (b), then the head (c).
  ::close(b.peer);
  std::erase(peers_, b.peer);
  ASSERT_TRUE(run_until([&] { return pool().idle_count() == 2; }));
  ::close(c.peer);
  std::erase(peers_, c.peer);
  ASSERT_TRUE(run_until([&] { return pool().idle_count() == 1; }));
  EXPECT_FALSE(closed_by_weir(a.peer));
  EXPECT_EQ(take(0), a.conn);
  EXPECT_EQ(take(0), nullptr);
}

TEST_F(UpstreamPoolTest, AServerHalfClosingIsDropped) {
  Pair a = connect(0), b = connect(0);
  put(a);
  put(b);
  ::shutdown(a.peer, SHUT_WR);  // the tail of the list
  ASSERT_TRUE(run_until([&] { return pool().idle_count() == 1; }));
  EXPECT_TRUE(closed_by_weir(a.peer));
  EXPECT_EQ(take(0), b.conn);
  EXPECT_EQ(take(0), nullptr);
}

TEST_F(UpstreamPoolTest, BytesTheServerSendsUnaskedDropTheConnection) {
  Pair a = connect(0), b = connect(0);
  put(a);
  put(b);
  const char stray[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n";
  ASSERT_GT(::send(b.peer, stray, sizeof stray - 1, MSG_NOSIGNAL), 0);
  ASSERT_TRUE(run_until([&] { return pool().idle_count() == 1; }));
  EXPECT_TRUE(closed_by_weir(b.peer));
  EXPECT_EQ(take(0), a.conn);
  EXPECT_EQ(take(0), nullptr);
}

TEST_F(UpstreamPoolTest, QuietIdleConnectionsStay) {
  Pair a = connect(0), b = connect(3);
  put(a);
  put(b);
  run_for(50ms);  // the initial writability edges and nothing else
  EXPECT_EQ(pool().idle_count(), 2u);
  EXPECT_EQ(take(3), b.conn);
  EXPECT_EQ(take(0), a.conn);
}

TEST_F(UpstreamPoolTest, CloseAllClosesEveryIdleConnection) {
  Pair a = connect(0), b = connect(0), c = connect(5);
  put(a);
  put(b);
  put(c);
  pool().close_all();
  EXPECT_EQ(pool().idle_count(), 0u);
  for (const Pair& p : {a, b, c})
    EXPECT_TRUE(closed_by_weir(p.peer));
  reactor().run_once(0);
  EXPECT_EQ(take(0), nullptr);
  EXPECT_EQ(take(5), nullptr);
  // Still usable afterwards.
  Pair d = connect(0);
  put(d);
  EXPECT_EQ(pool().idle_count(), 1u);
  EXPECT_EQ(take(0), d.conn);
}

TEST_F(UpstreamPoolTest, DrainingClosesIdleConnectionsAndKeepsNoNewOnes) {
  Pair a = connect(0), b = connect(0);
  put(a);
  worker_->begin_drain(5000ms, 5000ms);
  ASSERT_TRUE(run_until([&] { return worker_->draining(); }));
  EXPECT_EQ(pool().idle_count(), 0u);
  EXPECT_TRUE(closed_by_weir(a.peer));
  put(b);  // a request that finished during the drain
  EXPECT_EQ(pool().idle_count(), 0u);
  EXPECT_TRUE(closed_by_weir(b.peer));
  reactor().run_once(0);
  EXPECT_EQ(take(0), nullptr);
}

TEST_F(UpstreamPoolTest, TheWorkerClosesPooledConnectionsWhenItGoes) {
  Pair a = connect(0), b = connect(2);
  put(a);
  put(b);
  worker_->reactor().run_pending();
  worker_.reset();
  EXPECT_TRUE(closed_by_weir(a.peer));
  EXPECT_TRUE(closed_by_weir(b.peer));
}

}  // namespace
}  // namespace weir::proxy
