#include "health/health_checker.hpp"

#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "health/probe.hpp"
#include "net/socket.hpp"

namespace weir::health {
namespace {

using namespace std::chrono_literals;

// Polls `cond` until it holds or the (generous) deadline passes: no fixed sleeps as assertions.
template <typename F>
bool eventually(F cond, std::chrono::milliseconds limit = 15s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

// A tiny origin on loopback, on a thread of its own, answering each connection as told.
class FakeServer {
 public:
  enum class Mode { Status, Close, Reset, Hang, Garbage, HugeHead };

  FakeServer() {
    listen_on(0);
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeServer() {
    stop_ = true;
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
    for (int c : held_)
      ::close(c);
  }

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void answer(int status) {
    status_ = status;
    mode_ = Mode::Status;
  }
  void set_mode(Mode m) { mode_ = m; }
  // Closes (connections are refused) or re-opens the listening socket on the same port.
  void set_listening(bool on) {
    want_listening_ = on;
    ASSERT_TRUE(eventually([&] { return listening_.load() == on; }));
  }
  int accepted() const { return accepted_.load(); }
  std::string last_request() {
    std::lock_guard lock(mu_);
    return last_request_;
  }

 private:
  void listen_on(uint16_t port) {
    std::string err;
    auto a = net::parse_numeric("127.0.0.1", port);
    fd_ = net::listen_socket(*a, false, 128, err);
    ASSERT_GE(fd_, 0) << err;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    listening_ = true;
  }

  void loop() {
    while (!stop_) {
      if (want_listening_ != (fd_ >= 0)) {
        if (want_listening_) {
          listen_on(port_);
        } else {
          ::close(fd_);
          fd_ = -1;
          listening_ = false;
        }
      }
      if (fd_ < 0) {
        std::this_thread::sleep_for(5ms);
        continue;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      handle(c);
      ++accepted_;
    }
  }

  void handle(int c) {
    Mode m = mode_;
    if (m == Mode::Reset) {
      net::close_fd(c, true);
      return;
    }
    if (m == Mode::Hang) {
      held_.push_back(c);
      return;
    }
    timeval tv{1, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string req;
    char b[1024];
    while (req.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(c, b, sizeof b, 0);
      if (n <= 0) break;
      req.append(b, static_cast<size_t>(n));
    }
    {
      std::lock_guard lock(mu_);
      last_request_ = req;
    }
    std::string resp;
    if (m == Mode::Close) {
      ::close(c);  // the request was read: a clean EOF, no head
      return;
    }
    if (m == Mode::Garbage) {
      resp = "SPDY/9 what\r\n\r\n";
    } else if (m == Mode::HugeHead) {
      resp = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(Probe::kReadBufferSize + 100, 'a') +
             "\r\n\r\n";
    } else {
      resp = "HTTP/1.1 " + std::to_string(status_.load()) +
             " Test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    }
    ssize_t n = ::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
    (void)n;
    ::close(c);
  }

  std::thread thread_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> want_listening_{true};
  std::atomic<bool> listening_{false};
  std::atomic<Mode> mode_{Mode::Status};
  std::atomic<int> status_{200};
  std::atomic<int> accepted_{0};
  std::vector<int> held_;
  std::mutex mu_;
  std::string last_request_;
};

// Builds snapshots the way build_snapshot does, with ServerState kept by the test (the role of
// ServerRegistry), so two snapshots can share a server.
struct Fixture {
  std::vector<std::shared_ptr<balance::ServerState>> states;

  static config::HealthCheck fast_check(config::HealthType type = config::HealthType::Http) {
    config::HealthCheck hc;
    hc.type = type;
    hc.interval = config::Duration(50);
    hc.timeout = config::Duration(100);
    hc.rise = 2;
    hc.fall = 2;
    return hc;
  }

  // One backend "web" with servers s1..sN at `addresses`, using states[index[i]].
  model::SnapshotPtr snapshot(const std::vector<std::string>& addresses,
                              const std::vector<size_t>& index,
                              std::optional<config::HealthCheck> hc) {
    auto cfg = std::make_shared<config::Config>();
    config::Backend b;
    b.name = "web";
    b.health_check = hc;
    cfg->backends.push_back(b);
    auto snap = std::make_shared<model::Snapshot>();
    snap->config = cfg;
    model::BackendRuntime br;
    br.cfg = &cfg->backends[0];
    for (size_t i = 0; i < addresses.size(); ++i) {
      while (states.size() <= index[i])
        states.push_back(std::make_shared<balance::ServerState>());
      model::ServerRuntime sr;
      sr.name = "s" + std::to_string(index[i] + 1);
      sr.address_text = addresses[i];
      std::string host;
      uint16_t port = 0;
      EXPECT_TRUE(net::split_host_port(addresses[i], host, port));
      sr.addr = *net::parse_numeric(host, port);
      sr.state = states[index[i]];
      sr.uid = static_cast<uint32_t>(index[i]);
      br.servers.push_back(sr);
    }
    snap->backends.push_back(std::move(br));
    return snap;
  }

  bool up(size_t i) const { return states[i]->up.load(); }
};

TEST(ProbeText, ReasonsAreWordsNotNumbers) {
  EXPECT_EQ(socket_error_reason(ECONNREFUSED), "connection refused");
  EXPECT_EQ(socket_error_reason(ECONNRESET), "connection reset");
  EXPECT_EQ(socket_error_reason(EHOSTUNREACH), "host unreachable");
  std::string other = socket_error_reason(EROFS);
  EXPECT_FALSE(other.empty());
  EXPECT_EQ(other.find_first_of("0123456789"), std::string::npos) << other;
}

TEST(ProbeText, RequestHead) {
  ProbeTarget t;
  t.host_header = "[::1]";
  t.check.path = "/status?full=1";
  EXPECT_EQ(probe_request(t),
            "GET /status?full=1 HTTP/1.1\r\nHost: [::1]\r\nUser-Agent: weir-health\r\n"
            "Connection: close\r\n\r\n");
}

TEST(HealthChecker, HttpStatusTakesServerDownAndBackUp) {
  FakeServer srv;
  Fixture fx;
  HealthChecker hc;
  testing::internal::CaptureStderr();
  hc.update(fx.snapshot({srv.address()}, {0}, Fixture::fast_check()));
  hc.start();

  ASSERT_TRUE(eventually([&] { return srv.accepted() >= 3; }));
  EXPECT_TRUE(fx.up(0));
  EXPECT_EQ(srv.last_request(),
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: weir-health\r\n"
            "Connection: close\r\n\r\n");
  // Each passing http probe feeds the server's response-time average.
  EXPECT_GT(fx.states[0]->latency(), 0.0);

  srv.answer(503);
  ASSERT_TRUE(eventually([&] { return !fx.up(0); }));
  srv.answer(200);
  ASSERT_TRUE(eventually([&] { return fx.up(0); }));
  hc.stop();
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("WARN  server web/s1 DOWN: 2 consecutive failures: status 503\n"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("INFO  server web/s1 UP: 2 consecutive passes\n"), std::string::npos) << log;
}

TEST(HealthChecker, RefusedConnectionAndRecovery) {
  FakeServer srv;
  Fixture fx;
  HealthChecker hc;
  hc.start();
  hc.update(fx.snapshot({srv.address()}, {0}, Fixture::fast_check()));
  ASSERT_TRUE(eventually([&] { return srv.accepted() >= 1; }));

  testing::internal::CaptureStderr();
  srv.set_listening(false);
  ASSERT_TRUE(eventually([&] { return !fx.up(0); }));
  srv.set_listening(true);
  ASSERT_TRUE(eventually([&] { return fx.up(0); }));
  hc.stop();
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("server web/s1 DOWN: 2 consecutive failures: connection refused\n"),
            std::string::npos)
      << log;
}

// One failure mode per run: the reason that ends up in the DOWN line.
struct FailureCase {
  FakeServer::Mode mode;
  const char* reason;
};
void PrintTo(const FailureCase& c, std::ostream* os) {
  *os << c.reason;
}

class HealthCheckerFailure : public testing::TestWithParam<FailureCase> {};

TEST_P(HealthCheckerFailure, GoesDownWithReason) {
  FakeServer srv;
  srv.set_mode(GetParam().mode);
  Fixture fx;
  HealthChecker hc;
  testing::internal::CaptureStderr();
  hc.update(fx.snapshot({srv.address()}, {0}, Fixture::fast_check()));
  hc.start();
  ASSERT_TRUE(eventually([&] { return !fx.up(0); }));
  hc.stop();
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find(std::string("server web/s1 DOWN: 2 consecutive failures: ") +
                     GetParam().reason + "\n"),
            std::string::npos)
      << log;
  EXPECT_EQ(fx.states[0]->latency(), 0.0);  // failures feed no latency
}

INSTANTIATE_TEST_SUITE_P(
    Modes, HealthCheckerFailure,
    testing::Values(FailureCase{FakeServer::Mode::Hang, "timeout after 100 ms"},
                    FailureCase{FakeServer::Mode::Close, "connection closed without a response"},
                    FailureCase{FakeServer::Mode::Reset, "connection reset"},
                    FailureCase{FakeServer::Mode::Garbage, "invalid response"},
                    FailureCase{FakeServer::Mode::HugeHead, "response head too large"}));

TEST(HealthChecker, TcpCheckPassesOnConnect) {
  FakeServer srv;
  srv.set_mode(FakeServer::Mode::Hang);  // accepts, never says a word: fine for tcp
  Fixture fx;
  HealthChecker hc;
  hc.update(fx.snapshot({srv.address()}, {0}, Fixture::fast_check(config::HealthType::Tcp)));
  hc.start();
  ASSERT_TRUE(eventually([&] { return srv.accepted() >= 4; }));
  EXPECT_TRUE(fx.up(0));
  EXPECT_EQ(srv.last_request(), "");  // a tcp probe sends nothing

  srv.set_listening(false);
  ASSERT_TRUE(eventually([&] { return !fx.up(0); }));
  srv.set_listening(true);
  ASSERT_TRUE(eventually([&] { return fx.up(0); }));
}

TEST(HealthChecker, ExpectStatusRange) {
  FakeServer srv;
  srv.answer(301);
  Fixture fx;
  auto redirects_ok = Fixture::fast_check();
  redirects_ok.expect_status_min = 300;
  redirects_ok.expect_status_max = 399;
  HealthChecker hc;
  hc.update(fx.snapshot({srv.address()}, {0}, redirects_ok));
  hc.start();
  ASSERT_TRUE(eventually([&] { return srv.accepted() >= 4; }));
  EXPECT_TRUE(fx.up(0));

  // Same server, narrower range after a "reload": 301 now fails.
  auto only_2xx = Fixture::fast_check();
  only_2xx.expect_status_min = 200;
  only_2xx.expect_status_max = 204;
  hc.update(fx.snapshot({srv.address()}, {0}, only_2xx));
  ASSERT_TRUE(eventually([&] { return !fx.up(0); }));
}

TEST(HealthChecker, UpdateKeepsStateAndStopsRemovedProbes) {
  FakeServer a, b;
  a.answer(503);
  Fixture fx;
  HealthChecker hc;
  hc.update(fx.snapshot({a.address(), b.address()}, {0, 1}, Fixture::fast_check()));
  hc.start();
  ASSERT_TRUE(eventually([&] { return !fx.up(0) && b.accepted() >= 2; }));
  EXPECT_TRUE(fx.up(1));

  // Reload without s2: s1 keeps its state (still down, no fresh start), s2's probes stop.
  hc.update(fx.snapshot({a.address()}, {0}, Fixture::fast_check()));
  int a0 = a.accepted();
  ASSERT_TRUE(eventually([&] { return a.accepted() >= a0 + 2; }));  // the update has run
  int b_after = b.accepted();
  a0 = a.accepted();
  ASSERT_TRUE(eventually([&] { return a.accepted() >= a0 + 4; }));
  EXPECT_EQ(b.accepted(), b_after);
  EXPECT_FALSE(fx.up(0));

  // s1 recovers under the same probe: rise counts from where it is.
  a.answer(200);
  ASSERT_TRUE(eventually([&] { return fx.up(0); }));
}

TEST(HealthChecker, BackendLosingItsCheckLeavesServersUp) {
  FakeServer srv;
  srv.answer(500);
  Fixture fx;
  HealthChecker hc;
  hc.update(fx.snapshot({srv.address()}, {0}, Fixture::fast_check()));
  hc.start();
  ASSERT_TRUE(eventually([&] { return !fx.up(0); }));

  hc.update(fx.snapshot({srv.address()}, {0}, std::nullopt));
  ASSERT_TRUE(eventually([&] { return fx.up(0); }));
  // No probe any more: whatever the server answers, nobody takes it down again. Prove the
  // probe stopped by watching a second, still-checked server make progress meanwhile.
  FakeServer other;
  hc.update(fx.snapshot({other.address()}, {1}, Fixture::fast_check()));
  int seen = srv.accepted();
  ASSERT_TRUE(eventually([&] { return other.accepted() >= 4; }));
  EXPECT_LE(srv.accepted(), seen + 1);  // at most one round already in flight
  EXPECT_TRUE(fx.up(0));
}

size_t open_fds() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d))
    ++n;
  closedir(d);
  return n;
}

TEST(HealthChecker, StopClosesEverySocket) {
  size_t before = open_fds();
  {
    FakeServer srv;
    srv.set_mode(FakeServer::Mode::Hang);  // probes sit in mid-round with a socket open
    Fixture fx;
    std::vector<std::string> addrs(20, srv.address());
    std::vector<size_t> index;
    for (size_t i = 0; i < addrs.size(); ++i)
      index.push_back(i);
    auto check = Fixture::fast_check();
    check.timeout = config::Duration(60000);
    HealthChecker hc;
    hc.update(fx.snapshot(addrs, index, check));
    hc.start();
    ASSERT_TRUE(eventually([&] { return srv.accepted() >= 20; }));
    hc.stop();
    for (size_t i = 0; i < addrs.size(); ++i)
      EXPECT_TRUE(fx.up(i));
  }
  EXPECT_EQ(open_fds(), before);
}

TEST(HealthChecker, DestroyWithoutStart) {
  Fixture fx;
  HealthChecker hc;
  hc.update(fx.snapshot({"127.0.0.1:1"}, {0}, Fixture::fast_check()));
}

}  // namespace
}  // namespace weir::health
