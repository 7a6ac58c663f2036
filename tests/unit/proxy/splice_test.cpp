// SplicePipe (socket → pipe → socket with splice(2)) and PipePool, over loopback TCP.
#include "proxy/splice.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "net/socket.hpp"

namespace weir::proxy {
namespace {

using namespace std::chrono_literals;  // NOLINT(google-build-using-namespace)

void set_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// A connected loopback TCP pair: `from` writes, `to` reads (both ways work). Non-blocking.
struct TcpPair {
  int from = -1;
  int to = -1;
  TcpPair() {
    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(lfd, 4), 0);
    EXPECT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    from = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(::connect(from, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    to = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    EXPECT_GE(to, 0);
    ::close(lfd);
    set_nonblocking(from);
    set_nonblocking(to);
  }
  ~TcpPair() {
    if (from >= 0) ::close(from);
    if (to >= 0) ::close(to);
  }
  TcpPair(const TcpPair&) = delete;
  TcpPair& operator=(const TcpPair&) = delete;
};

char pattern_at(size_t i) {
  return static_cast<char>((i % 251) ^ (i / 251 % 13));
}

// Blocks until `fd` has at least `n` bytes to read (bounded).
bool wait_readable_bytes(int fd, size_t n) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    int avail = 0;
    if (::ioctl(fd, FIONREAD, &avail) == 0 && static_cast<size_t>(avail) >= n) return true;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 10);
  }
  return false;
}

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (off < s.size() && std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 10);
    } else if (n < 0 && errno != EINTR) {
      return false;
    }
  }
  return off == s.size();
}

size_t open_fds() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

TEST(SplicePipe, MakeGivesAnEmptyPipeOfAboutTheCapacity) {
  auto p = SplicePipe::make(256 * 1024);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->held(), 0u);
  EXPECT_GE(p->room(), 64u * 1024);  // the kernel may keep its default when over the limit
  EXPECT_LE(p->room(), 256u * 1024 + 4096);
}

TEST(SplicePipe, MovesMegabytesInOrderBetweenTwoConnections) {
  constexpr size_t kTotal = 3 * 1024 * 1024;
  TcpPair ab;  // A → B: the "server"
  TcpPair cd;  // C → D: the "client"
  auto pipe = SplicePipe::make(256 * 1024);
  ASSERT_NE(pipe, nullptr);
  const size_t capacity = pipe->room();

  std::string data(kTotal, '\0');
  for (size_t i = 0; i < kTotal; ++i)
    data[i] = pattern_at(i);
  std::string got;
  got.reserve(kTotal);
  size_t written = 0;
  size_t filled = 0;
  size_t drained = 0;
  bool a_shut = false;
  bool b_eof = false;
  bool c_shut = false;
  bool d_eof = false;
  std::vector<char> buf(64 * 1024);
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!d_eof && std::chrono::steady_clock::now() < deadline) {
    bool moved = false;
    if (written < kTotal) {
      ssize_t n = ::send(ab.from, data.data() + written,
                         std::min<size_t>(kTotal - written, 128 * 1024), MSG_NOSIGNAL);
      if (n > 0) {
        written += static_cast<size_t>(n);
        moved = true;
      }
    } else if (!a_shut) {
      ASSERT_EQ(::shutdown(ab.from, SHUT_WR), 0);
      a_shut = true;
    }
    if (!b_eof && pipe->room() > 0) {
      size_t before = pipe->held();
      ssize_t n = pipe->fill(ab.to, pipe->room());
      if (n > 0) {
        filled += static_cast<size_t>(n);
        EXPECT_EQ(pipe->held(), before + static_cast<size_t>(n));
        moved = true;
      } else if (n == 0) {
        b_eof = true;
        EXPECT_TRUE(a_shut) << "EOF before A shut down";
      } else {
        ASSERT_EQ(n, net::kWouldBlock);
      }
    }
    EXPECT_EQ(pipe->held() + pipe->room(), capacity);
    if (pipe->held() > 0) {
      size_t before = pipe->held();
      ssize_t n = pipe->drain(cd.from);
      if (n > 0) {
        drained += static_cast<size_t>(n);
        EXPECT_EQ(pipe->held(), before - static_cast<size_t>(n));
        moved = true;
      } else {
        ASSERT_EQ(n, net::kWouldBlock);
      }
    } else if (b_eof && !c_shut) {
      ASSERT_EQ(::shutdown(cd.from, SHUT_WR), 0);
      c_shut = true;
    }
    for (;;) {
      ssize_t n = ::read(cd.to, buf.data(), buf.size());
      if (n > 0) {
        got.append(buf.data(), static_cast<size_t>(n));
        moved = true;
      } else {
        if (n == 0) d_eof = true;
        break;
      }
    }
    if (!moved) {
      pollfd p[2] = {{ab.to, POLLIN, 0}, {cd.to, POLLIN, 0}};
      ::poll(p, 2, 5);
    }
  }
  ASSERT_TRUE(d_eof) << "got " << got.size() << " of " << kTotal;
  EXPECT_EQ(filled, kTotal);
  EXPECT_EQ(drained, kTotal);
  EXPECT_EQ(pipe->held(), 0u);
  ASSERT_EQ(got.size(), kTotal);
  EXPECT_TRUE(got == data) << "bytes out of order or corrupted";
  // EOF stays EOF.
  EXPECT_EQ(pipe->fill(ab.to, pipe->room()), 0);
}

TEST(SplicePipe, FillMovesAtMostMax) {
  TcpPair ab;
  auto pipe = SplicePipe::make(256 * 1024);
  ASSERT_NE(pipe, nullptr);
  const size_t capacity = pipe->room();
  std::string data(10000, 'z');
  ASSERT_TRUE(write_all(ab.from, data));
  ASSERT_TRUE(wait_readable_bytes(ab.to, data.size()));

  ssize_t n = pipe->fill(ab.to, 100);
  ASSERT_GT(n, 0);
  EXPECT_LE(n, 100);
  EXPECT_EQ(pipe->held(), static_cast<size_t>(n));
  EXPECT_EQ(pipe->room(), capacity - static_cast<size_t>(n));
  size_t total = static_cast<size_t>(n);

  ssize_t m = pipe->fill(ab.to, 1);
  ASSERT_EQ(m, 1);
  total += 1;
  EXPECT_EQ(pipe->held(), total);

  // The rest: no more than what is there.
  ssize_t r = pipe->fill(ab.to, 1 << 20);
  ASSERT_GT(r, 0);
  total += static_cast<size_t>(r);
  EXPECT_EQ(total, data.size());
  EXPECT_EQ(pipe->held(), data.size());
  // Nothing more to read: would block (not EOF).
  EXPECT_EQ(pipe->fill(ab.to, 1 << 20), net::kWouldBlock);
  EXPECT_EQ(pipe->held(), data.size());
}

TEST(SplicePipe, FillStopsAtTheRoomLeft) {
  TcpPair ab;
  auto pipe = SplicePipe::make(64 * 1024);
  ASSERT_NE(pipe, nullptr);
  const size_t capacity = pipe->room();
  std::string data(capacity + 50000, 'q');
  // Wrote from another socket so the test does not block: the kernel buffers it all.
  ASSERT_TRUE(write_all(ab.from, data));
  ASSERT_TRUE(wait_readable_bytes(ab.to, data.size()));
  size_t total = 0;
  for (int i = 0; i < 1000 && pipe->room() > 0; ++i) {
    ssize_t n = pipe->fill(ab.to, pipe->room());
    ASSERT_GT(n, 0);
    total += static_cast<size_t>(n);
  }
  EXPECT_EQ(pipe->room(), 0u);
  EXPECT_EQ(pipe->held(), capacity);
  EXPECT_EQ(total, capacity);
}

// fill() documents "0 EOF", but with no room (a full pipe, or max == 0) it asks splice(2) for 0
// bytes and returns its 0: the socket is taken for finished while bytes are still coming.
// Latent: Exchange::splice_body only calls fill() with room() > 0 and want > 0.
TEST(SplicePipe, FillWithNoRoomIsNotEof) {
  TcpPair ab;
  auto pipe = SplicePipe::make(64 * 1024);
  ASSERT_NE(pipe, nullptr);
  const size_t capacity = pipe->room();
  ASSERT_TRUE(write_all(ab.from, std::string(capacity + 1000, 'f')));
  ASSERT_TRUE(wait_readable_bytes(ab.to, capacity + 1000));
  EXPECT_NE(pipe->fill(ab.to, 0), 0) << "max == 0 reads as EOF";
  for (int i = 0; i < 1000 && pipe->room() > 0; ++i)
    ASSERT_GT(pipe->fill(ab.to, pipe->room()), 0);
  ASSERT_EQ(pipe->room(), 0u);
  EXPECT_NE(pipe->fill(ab.to, 1000), 0) << "a full pipe reads as EOF (1000 bytes still wait)";
}

TEST(SplicePipe, DrainIntoASocketWhosePeerDoesNotReadWouldBlock) {
  TcpPair ab;
  TcpPair cd;  // D never reads
  auto pipe = SplicePipe::make(256 * 1024);
  ASSERT_NE(pipe, nullptr);
  std::string chunk(64 * 1024, 'w');
  bool blocked = false;
  size_t drained = 0;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!blocked && std::chrono::steady_clock::now() < deadline) {
    if (pipe->held() == 0) {
      // Refill the pipe from A → B.
      ssize_t w = ::send(ab.from, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      ASSERT_TRUE(w > 0 || errno == EAGAIN);
      ASSERT_TRUE(wait_readable_bytes(ab.to, 1));
      ssize_t f = pipe->fill(ab.to, pipe->room());
      ASSERT_TRUE(f > 0 || f == net::kWouldBlock) << f;
      continue;
    }
    ssize_t n = pipe->drain(cd.from);
    if (n == net::kWouldBlock) {
      blocked = true;
    } else {
      ASSERT_GT(n, 0);
      drained += static_cast<size_t>(n);
    }
  }
  EXPECT_TRUE(blocked) << "drained " << drained << " bytes without the socket filling up";
  EXPECT_GT(pipe->held(), 0u);  // the bytes stay in the pipe
  EXPECT_GT(drained, 0u);
  // Once D reads, the pipe drains again.
  std::vector<char> buf(256 * 1024);
  bool writable = false;
  auto read_deadline = std::chrono::steady_clock::now() + 5s;
  while (!writable && std::chrono::steady_clock::now() < read_deadline) {
    while (::read(cd.to, buf.data(), buf.size()) > 0) {
    }
    pollfd p{cd.from, POLLOUT, 0};
    writable = ::poll(&p, 1, 10) == 1;
  }
  ASSERT_TRUE(writable);
  EXPECT_GT(pipe->drain(cd.from), 0);
}

TEST(SplicePipe, DrainOfAnEmptyPipeWouldBlock) {
  TcpPair cd;
  auto pipe = SplicePipe::make(64 * 1024);
  ASSERT_NE(pipe, nullptr);
  EXPECT_EQ(pipe->drain(cd.from), net::kWouldBlock);
  EXPECT_EQ(pipe->held(), 0u);
}

TEST(SplicePipe, DrainIntoAResetSocketIsAnError) {
  TcpPair ab;
  auto pipe = SplicePipe::make(64 * 1024);
  ASSERT_NE(pipe, nullptr);
  ASSERT_TRUE(write_all(ab.from, std::string(1000, 'e')));
  ASSERT_TRUE(wait_readable_bytes(ab.to, 1000));
  ASSERT_EQ(pipe->fill(ab.to, 1000), 1000);
  TcpPair cd;
  // weir ignores SIGPIPE (weir run); so does this test while it writes to a dead socket.
  struct IgnorePipe {
    void (*old)(int) = ::signal(SIGPIPE, SIG_IGN);
    ~IgnorePipe() { ::signal(SIGPIPE, old); }
  } ignore_pipe;
  // D goes away with a reset.
  linger l{1, 0};
  ::setsockopt(cd.to, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(cd.to);
  cd.to = -1;
  // The RST arrives asynchronously: the first write may still succeed.
  ssize_t n = 0;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pipe->held() == 0) {
      ASSERT_TRUE(write_all(ab.from, std::string(1000, 'e')));
      ASSERT_TRUE(wait_readable_bytes(ab.to, 1000));
      ASSERT_GT(pipe->fill(ab.to, 1000), 0);
    }
    n = pipe->drain(cd.from);
    if (n == net::kIoError) break;
    pollfd p{cd.from, POLLOUT, 0};
    ::poll(&p, 1, 10);
  }
  EXPECT_EQ(n, net::kIoError);
}

// ---- PipePool ---------------------------------------------------------------------------------

TEST(PipePool, ReusesAnEmptyPipe) {
  PipePool pool;
  auto p = pool.take();
  ASSERT_NE(p, nullptr);
  SplicePipe* raw = p.get();
  pool.give_back(std::move(p));
  auto again = pool.take();
  EXPECT_EQ(again.get(), raw);
  auto other = pool.take();  // the pool is empty now: a new one
  ASSERT_NE(other, nullptr);
  EXPECT_NE(other.get(), raw);
}

TEST(PipePool, ClosesAPipeThatStillHoldsBytes) {
  TcpPair ab;
  PipePool pool;
  auto p = pool.take();
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(write_all(ab.from, "leftover"));
  ASSERT_TRUE(wait_readable_bytes(ab.to, 8));
  ASSERT_EQ(p->fill(ab.to, 100), 8);
  ASSERT_EQ(p->held(), 8u);
  size_t fds = open_fds();
  pool.give_back(std::move(p));
  EXPECT_EQ(open_fds(), fds - 2) << "the pipe holding bytes was kept";
  // The next take is a fresh, empty pipe.
  fds = open_fds();
  auto fresh = pool.take();
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(fresh->held(), 0u);
  EXPECT_EQ(open_fds(), fds + 2);
}

TEST(PipePool, KeepsEmptyPipesOpenAndTrimClosesThem) {
  PipePool pool;
  std::vector<std::unique_ptr<SplicePipe>> pipes;
  for (int i = 0; i < 5; ++i) {
    pipes.push_back(pool.take());
    ASSERT_NE(pipes.back(), nullptr);
  }
  size_t fds = open_fds();
  for (auto& p : pipes)
    pool.give_back(std::move(p));
  EXPECT_EQ(open_fds(), fds);  // all kept
  pool.trim(2);
  EXPECT_EQ(open_fds(), fds - 6);
  pool.trim(5);  // already fewer: nothing
  EXPECT_EQ(open_fds(), fds - 6);
  // The two kept are handed out without new pipes.
  auto a = pool.take();
  auto b = pool.take();
  EXPECT_EQ(open_fds(), fds - 6);
  auto c = pool.take();  // a new one
  EXPECT_EQ(open_fds(), fds - 4);
  pool.give_back(std::move(a));
  pool.trim(0);
  EXPECT_EQ(open_fds(), fds - 6);
}

TEST(PipePool, KeepsABoundedNumberOfPipes) {
  PipePool pool;
  std::vector<std::unique_ptr<SplicePipe>> pipes;
  for (int i = 0; i < 40; ++i) {
    pipes.push_back(pool.take());
    ASSERT_NE(pipes.back(), nullptr);
  }
  size_t fds = open_fds();
  for (auto& p : pipes)
    pool.give_back(std::move(p));
  size_t kept = (open_fds() - (fds - 80)) / 2;
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, 40u);  // not every pipe of a burst stays open
  pool.trim(0);
  EXPECT_EQ(open_fds(), fds - 80);
}

TEST(PipePool, GiveBackOfNullIsHarmless) {
  PipePool pool;
  pool.give_back(nullptr);
  auto p = pool.take();
  EXPECT_NE(p, nullptr);
}

}  // namespace
}  // namespace weir::proxy
