// The exchange end to end, in process, over HTTP/1.1: a scripted origin on loopback (one thread
// per connection), a Worker without listening sockets built from a config string, and a client
// on one end of a socketpair whose other end is an H1Connection of that worker. The test thread
// drives the worker's reactor and reads the client's socket in turns; every loop is bounded by a
// count of turns in which nothing moved, so a weir that stalls fails the test instead of hanging.
//
// Covered: bodies framed by Content-Length, chunked, close-delimited, large (2 MiB), absent
// (HEAD, 204, Content-Length: 0) and cut short by the origin; without body filters (zero-copy
// and splice paths) and with a BodyFilter injected into the route's chain (one-to-one,
// growing output that must respect the bounded buffer, input taken a few bytes at a time, an
// end marker written over several end calls); keep-alive and pipelining after filtered bodies.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/loader.hpp"
#include "model/snapshot.hpp"
#include "proxy/filter.hpp"
#include "proxy/h1_connection.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

constexpr size_t kBig = 2 * 1024 * 1024;

// Turns of the reactor in which the client got no byte before a wait counts as a stall.
constexpr int kIdleTurns = 2000;  // each such turn waits at most 5 ms for an event

// ---------------------------------------------------------------------------------------------
// Bodies

char pattern_at(size_t i) {
  static constexpr std::string_view kChars = "abcdefghijklmnopqrstuvwxyz0123456789-ABC_xyz.";
  return kChars[(i * 31 + i / 97) % kChars.size()];
}

const std::string& big_body() {
  static const std::string* body = [] {
    auto* s = new std::string(kBig, '\0');
    for (size_t i = 0; i < kBig; ++i)
      (*s)[i] = pattern_at(i);
    return s;
  }();
  return *body;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

constexpr std::string_view kEndMarker = "<END>";

// What DoublingBody makes of a whole body: each byte, then its upper case; then the end marker.
std::string doubled(std::string_view s) {
  std::string out;
  out.reserve(2 * s.size() + kEndMarker.size());
  for (char c : s) {
    out.push_back(c);
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  out.append(kEndMarker);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The origin: answers by request path, one thread per connection, keep-alive where the script
// says so. Blocking sockets: a body bigger than the socket buffers waits for weir to read it.

bool send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// 2 MiB in chunks of uneven sizes, some with extensions, then a trailer field.
std::string big_chunked() {
  static constexpr size_t kSizes[] = {1, 7, 100, 4093, 16384, 65536, 3, 16385, 250000, 12};
  const std::string& body = big_body();
  std::string out;
  size_t off = 0;
  for (size_t i = 0; off < body.size(); ++i) {
    size_t n = std::min(kSizes[i % std::size(kSizes)], body.size() - off);
    char hex[32];
    std::snprintf(hex, sizeof hex, "%zx", n);
    out.append(hex);
    if (i % 3 == 1) out.append(";ext=1");
    out.append("\r\n").append(body, off, n).append("\r\n");
    off += n;
  }
  out.append("0\r\nX-Trailer: t\r\n\r\n");
  return out;
}

class Origin {
 public:
  Origin() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "origin: cannot listen: " << std::strerror(errno);
      return;
    }
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~Origin() { stop(); }
  Origin(const Origin&) = delete;
  Origin& operator=(const Origin&) = delete;

  uint16_t port() const { return port_; }

  void stop() {
    if (stopping_.exchange(true)) return;
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    if (acceptor_.joinable()) acceptor_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : fds_)
        if (fd >= 0) ::shutdown(fd, SHUT_RDWR);  // wakes recv()/send()
      threads.swap(threads_);
    }
    for (auto& t : threads)
      t.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : fds_)
      if (fd >= 0) ::close(fd);
    fds_.clear();
    ::close(listen_fd_);
  }

  // "METHOD /path" of each request, in the order they arrived.
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // Connections accepted so far, and those over (the peer closed or reset them).
  int connections() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(fds_.size());
  }
  int ended() const { return ended_; }

 private:
  void accept_loop() {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      // Closed by stop() only, so shutdown() there never hits a reused descriptor.
      fds_.push_back(fd);
      threads_.emplace_back([this, fd] {
        serve(fd);
        ++ended_;
      });
    }
  }

  void serve(int fd) {
    std::string buf;
    char tmp[4096];
    for (;;) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        buf.append(tmp, static_cast<size_t>(n));
      }
      std::string line = buf.substr(0, buf.find("\r\n"));
      buf.erase(0, end + 4);  // no request of these tests has a body
      std::string method = line.substr(0, line.find(' '));
      size_t p = line.find(' ') + 1;
      std::string path = line.substr(p, line.find(' ', p) - p);
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(method + " " + path);
      }
      bool keep = respond(fd, method, path);
      if (path == "/trunc-reset") {
        reset(fd);
        return;
      }
      if (!keep) {
        ::shutdown(fd, SHUT_WR);  // the end of a close-delimited (or cut) body: weir sees EOF
        while (::recv(fd, tmp, sizeof tmp, 0) > 0) {
        }
        return;
      }
    }
  }

  // Ends the connection with a reset instead of a FIN.
  void reset(int fd) {
    std::lock_guard<std::mutex> lock(mu_);
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);
    std::replace(fds_.begin(), fds_.end(), fd, -1);
  }

  // Sends the scripted answer; false if the connection ends after it.
  static bool respond(int fd, const std::string& method, const std::string& path) {
    if (method == "HEAD") {
      return send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Origin: head\r\n\r\n");
    }
    if (path == "/cl")
      return send_all(fd,
                      "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Origin: cl\r\n\r\nhello world");
    if (path == "/cl2")
      return send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Origin: cl2\r\n\r\nsecond");
    if (path == "/chunked") {
      // Piece by piece: weir may see the chunks in one read or several.
      return send_all(
                 fd,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Origin: chunked\r\n\r\n") &&
             send_all(fd, "3\r\nhel\r\n") && send_all(fd, "3;x=y\r\nlo \r\n4\r\nwo") &&
             send_all(fd, "rl\r\n1\r\nd\r\n") && send_all(fd, "0\r\n\r\n");
    }
    if (path == "/close") {
      send_all(fd, "HTTP/1.1 200 OK\r\nX-Origin: close\r\nConnection: close\r\n\r\n");
      send_all(fd, "a body without ");
      send_all(fd, "a length");
      return false;
    }
    if (path == "/204") return send_all(fd, "HTTP/1.1 204 No Content\r\nX-Origin: 204\r\n\r\n");
    if (path == "/empty")
      return send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Origin: empty\r\n\r\n");
    if (path == "/big") {
      return send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\nX-Origin: big\r\n\r\n") &&
             send_all(fd, big_body());
    }
    if (path == "/big-chunked") {
      static const std::string* chunked = new std::string(big_chunked());
      return send_all(fd,
                      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Origin: "
                      "big-chunked\r\n\r\n") &&
             send_all(fd, *chunked);
    }
    if (path == "/big-close") {
      send_all(fd, "HTTP/1.1 200 OK\r\nX-Origin: big-close\r\n\r\n");
      send_all(fd, big_body());
      return false;
    }
    if (path == "/trunc") {
      send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Origin: trunc\r\n\r\n0123456789");
      return false;
    }
    if (path == "/trunc-reset") {
      send_all(
          fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Origin: trunc-reset\r\n\r\n0123456789");
      return false;
    }
    if (path == "/pad") {
      // A large head: it does not fit in what a slow client left of weir's buffer.
      return send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Pad: " +
                              std::string(12000, 'p') + "\r\n\r\nsecond");
    }
    if (path == "/trunc-chunked") {
      send_all(fd,
               "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Origin: trunc-chunked\r\n\r\n"
               "a\r\n0123456789\r\n");
      return false;
    }
    if (path == "/trunc-big") {
      // Announces 2 MiB, sends half.
      send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\nX-Origin: trunc-big\r\n\r\n");
      send_all(fd, std::string_view(big_body()).substr(0, kBig / 2));
      return false;
    }
    return send_all(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> ended_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  std::vector<std::string> requests_;
};

// ---------------------------------------------------------------------------------------------
// The client's side: reads one response off its byte stream, strictly (a malformed chunk is a
// failure, not a guess), resuming where it stopped so a long body is parsed once.

struct Response {
  std::string head;  // status line and fields, up to and with the empty line, as received
  int status = 0;
  std::vector<std::pair<std::string, std::string>> fields;  // names lower-cased
  std::string body;                                         // payload, de-chunked
  std::vector<std::string> trailers;
  size_t chunks = 0;
  bool complete = false;

  int count(std::string_view name) const {
    return static_cast<int>(std::count_if(fields.begin(), fields.end(),
                                          [&](const auto& f) { return f.first == name; }));
  }
  std::string field(std::string_view name) const {
    for (const auto& f : fields)
      if (f.first == name) return f.second;
    return "";
  }
};

class ResponseReader {
 public:
  explicit ResponseReader(bool head_request) : head_request_(head_request) {}

  // Parses what `in` holds from where it stopped. `eof`: nothing more will come.
  // Returns true when the response is complete (or failed: see error()).
  bool advance(const std::string& in, bool eof) {
    for (;;) {
      switch (state_) {
        case State::Head: {
          size_t end = in.find("\r\n\r\n", pos_);
          if (end == std::string::npos) return false;
          parse_head(in.substr(0, end + 4));
          pos_ = end + 4;
          break;
        }
        case State::Size: {
          size_t end = in.find("\r\n", pos_);
          if (end == std::string::npos) return false;
          std::string line = in.substr(pos_, end - pos_);
          pos_ = end + 2;
          std::string hex = line.substr(0, line.find(';'));
          if (hex.empty() || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
            return fail("bad chunk-size line: " + line);
          remaining_ = std::stoull(hex, nullptr, 16);
          if (remaining_ == 0) {
            state_ = State::Trailer;
          } else {
            ++r.chunks;
            state_ = State::Data;
          }
          break;
        }
        case State::Data:
        case State::Length: {
          size_t take = std::min<size_t>(remaining_, in.size() - pos_);
          r.body.append(in, pos_, take);
          pos_ += take;
          remaining_ -= take;
          if (remaining_ > 0) return false;
          state_ = state_ == State::Data ? State::DataEnd : State::Done;
          break;
        }
        case State::DataEnd:
          if (in.size() - pos_ < 2) return false;
          if (in.compare(pos_, 2, "\r\n") != 0) return fail("chunk data not followed by CRLF");
          pos_ += 2;
          state_ = State::Size;
          break;
        case State::Trailer: {
          size_t end = in.find("\r\n", pos_);
          if (end == std::string::npos) return false;
          std::string line = in.substr(pos_, end - pos_);
          pos_ = end + 2;
          if (line.empty()) {
            state_ = State::Done;
          } else {
            r.trailers.push_back(line);
          }
          break;
        }
        case State::UntilEof:
          r.body.append(in, pos_, in.size() - pos_);
          pos_ = in.size();
          if (!eof) return false;
          state_ = State::Done;
          break;
        case State::Done:
          r.complete = true;
          return true;
        case State::Failed:
          return true;
      }
    }
  }

  size_t consumed() const { return pos_; }
  const std::string& error() const { return error_; }

  Response r;

 private:
  enum class State { Head, Size, Data, DataEnd, Trailer, Length, UntilEof, Done, Failed };

  bool fail(std::string why) {
    error_ = std::move(why);
    state_ = State::Failed;
    return true;
  }

  void parse_head(const std::string& head) {
    r.head = head;
    if (head.compare(0, 9, "HTTP/1.1 ") != 0 || head.size() < 12) {
      fail("bad status line");
      return;
    }
    r.status = std::stoi(head.substr(9, 3));
    size_t at = head.find("\r\n") + 2;
    bool chunked = false;
    bool has_length = false;
    uint64_t length = 0;
    while (at < head.size() - 2) {
      size_t end = head.find("\r\n", at);
      std::string line = head.substr(at, end - at);
      at = end + 2;
      size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(line.find_first_not_of(' ', colon + 1));
      r.fields.emplace_back(name, value);
      if (name == "transfer-encoding") chunked = value == "chunked";
      if (name == "content-length") {
        has_length = true;
        length = std::stoull(value);
      }
    }
    if (head_request_ || r.status == 204 || r.status == 304 || r.status < 200) {
      state_ = State::Done;
    } else if (chunked) {
      state_ = State::Size;
    } else if (has_length) {
      remaining_ = length;
      state_ = length == 0 ? State::Done : State::Length;
    } else {
      state_ = State::UntilEof;
    }
  }

  bool head_request_;
  State state_ = State::Head;
  size_t pos_ = 0;
  uint64_t remaining_ = 0;
  std::string error_;
};

// The client's end of the socketpair (weir's end belongs to its H1Connection).
struct Client {
  int fd = -1;
  std::string in;  // received, not yet taken by a response
  bool eof = false;

  ~Client() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  void send(std::string_view s) const {
    // Requests are small: they fit in the socket's buffer at once.
    ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  // Reads at most `max` bytes (what is there). True if any byte came or the peer closed.
  bool read_some(size_t max) {
    char buf[64 * 1024];
    size_t got = 0;
    while (got < max && !eof) {
      ssize_t n = ::recv(fd, buf, std::min(sizeof buf, max - got), MSG_DONTWAIT);
      if (n > 0) {
        in.append(buf, static_cast<size_t>(n));
        got += static_cast<size_t>(n);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        eof = true;  // closed, or reset: either way the connection is over
        return true;
      } else if (errno == EAGAIN) {
        break;
      }
    }
    return got > 0;
  }
};

// ---------------------------------------------------------------------------------------------
// The body filters under test.

enum class Mode { Upper, Double, DoubleSlow };

struct FilterLog {
  int heads = 0;       // on_response calls
  int bodies = 0;      // transforms handed out
  int live = 0;        // transforms not yet destroyed
  int end_calls = 0;   // on_body calls with end set
  uint64_t input = 0;  // input bytes taken
  std::vector<int> statuses;
  std::vector<std::string> violations;  // breaches of the BodyFilter contract by the caller
};

// Shared checks of the BodyFilter contract: `in` is empty with `end`; no call after done.
class CheckedBody : public BodyFilter {
 public:
  explicit CheckedBody(FilterLog& log) : log_(log) { ++log_.live; }
  ~CheckedBody() override { --log_.live; }

  Step on_body(std::string_view in, bool end, Buffer& out) final {
    if (done_) log_.violations.push_back("on_body after done");
    if (end && !in.empty()) log_.violations.push_back("input given with end");
    if (ended_ && !end) log_.violations.push_back("input after end");
    if (end) {
      ended_ = true;
      ++log_.end_calls;
    }
    Step s = transform(in, end, out);
    if (s.used > in.size()) log_.violations.push_back("filter overused its input");
    log_.input += s.used;
    done_ = s.done;
    return s;
  }

 protected:
  virtual Step transform(std::string_view in, bool end, Buffer& out) = 0;

 private:
  FilterLog& log_;
  bool done_ = false;
  bool ended_ = false;
};

// One byte out per byte in: upper-cased ASCII.
class UpperBody final : public CheckedBody {
 public:
  using CheckedBody::CheckedBody;
  Step transform(std::string_view in, bool end, Buffer& out) override {
    size_t n = std::min(in.size(), out.free_space());
    out.append(upper(in.substr(0, n)));
    return {n, end};
  }
};

// Two bytes out per byte in (the byte, then its upper case), at most `max_take` input bytes
// per call, only what fits in `out`; at the end, "<END>", at most 2 bytes of it per call (so
// the end takes several calls).
class DoublingBody final : public CheckedBody {
 public:
  DoublingBody(FilterLog& log, size_t max_take) : CheckedBody(log), max_take_(max_take) {}
  Step transform(std::string_view in, bool end, Buffer& out) override {
    size_t n = std::min({in.size(), out.free_space() / 2, max_take_});
    std::string piece;
    for (char c : in.substr(0, n)) {
      piece.push_back(c);
      piece.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    }
    if (out.append(piece) != piece.size()) ADD_FAILURE() << "free_space() lied";
    Step s{n, false};
    if (end) {
      size_t k = std::min({kEndMarker.size() - marker_, out.free_space(), size_t{2}});
      out.append(kEndMarker.substr(marker_, k));
      marker_ += k;
      s.done = marker_ == kEndMarker.size();
    }
    return s;
  }

 private:
  size_t max_take_;
  size_t marker_ = 0;
};

class TestFilter final : public Filter {
 public:
  explicit TestFilter(Mode mode) : mode_(mode) {}
  void on_response(ResponseOut&) override { ++log.heads; }
  std::unique_ptr<BodyFilter> on_response_body(ResponseOut& h, const RequestFacts&) override {
    ++log.bodies;
    log.statuses.push_back(h.status);
    h.edits->set("X-Filtered", "1");
    switch (mode_) {
      case Mode::Upper:
        return std::make_unique<UpperBody>(log);
      case Mode::Double:
        return std::make_unique<DoublingBody>(log, SIZE_MAX);
      case Mode::DoubleSlow:
        return std::make_unique<DoublingBody>(log, 7);
    }
    return nullptr;
  }
  std::string expected(std::string_view body) const {
    return mode_ == Mode::Upper ? upper(body) : doubled(body);
  }

  FilterLog log;

 private:
  Mode mode_;
};

// ---------------------------------------------------------------------------------------------
// The fixture: origin, worker, clients.

std::string get(std::string_view path, std::string_view version = "1.1") {
  return "GET " + std::string(path) + " HTTP/" + std::string(version) +
         "\r\nHost: example.test\r\n\r\n";
}

class ExchangeH1 : public ::testing::Test {
 protected:
  void SetUp() override { build_worker("16KiB"); }

  void TearDown() override {
    for (auto& c : clients_)
      c->close();
    // Every client connection ends, within bounded turns.
    if (worker_) {
      run_until([&] { return stats().connections_open == 0; });
      EXPECT_EQ(stats().connections_open, 0u) << "a client connection outlived its socket";
      worker_->reactor().run_pending();
      worker_.reset();  // closes pooled upstream connections, frees what close() retired
    }
    origin_.stop();
    for (const auto& f : filters_) {
      EXPECT_EQ(f->log.live, 0) << "a body filter was never destroyed";
      EXPECT_TRUE(f->log.violations.empty()) << f->log.violations.front();
    }
  }

  void build_worker(const std::string& buffer_size, const std::string& max_head = "1KiB") {
    if (worker_) {
      worker_->reactor().run_pending();
      worker_.reset();
    }
    std::string yaml;
    yaml += "listeners:\n";
    yaml += "  - name: web\n";
    yaml += "    listen: 127.0.0.1:18080\n";
    yaml += "    backend: app\n";
    yaml += "backends:\n";
    yaml += "  - name: app\n";
    yaml += "    retries: 0\n";
    yaml += "    servers:\n";
    yaml += "      - address: 127.0.0.1:" + std::to_string(origin_.port()) + "\n";
    yaml += "limits:\n";
    yaml += "  buffer_size: " + buffer_size + "\n";
    yaml += "  max_header_bytes: " + max_head + "\n";
    auto res = config::load_config_string(yaml, "exchange_test.yaml");
    ASSERT_TRUE(res.ok()) << (res.diagnostics.empty() ? "" : res.diagnostics[0].format());
    std::vector<std::string> errors;
    auto snap = model::build_snapshot(res.config, registry_, errors);
    ASSERT_NE(snap, nullptr) << (errors.empty() ? "" : errors[0]);
    worker_ = std::make_unique<Worker>(
        0, snap, std::vector<ListenSocket>{}, std::vector<std::string>{"127.0.0.1:18080"},
        std::vector<std::shared_ptr<ListenerGate>>{std::make_shared<ListenerGate>()});
  }

  // A TestFilter in the chain of the listener's only route, which then takes bodies. Owned by
  // the fixture: it must outlive the worker and the checks of TearDown.
  TestFilter& install(Mode mode) {
    filters_.push_back(std::make_unique<TestFilter>(mode));
    const ViewPtr& view = worker_->view();
    EXPECT_EQ(view->filters.size(), 1u);
    EXPECT_EQ(view->filters[0].routes.size(), 1u);
    view->filters[0].routes[0].filters.push_back(filters_.back().get());
    view->filters[0].routes[0].body_filters = true;
    return *filters_.back();
  }

  WorkerStats& stats() { return worker_->stats(); }
  // Responses with this status counted so far (when the exchange finished them).
  uint64_t answered(uint16_t status) const {
    return worker_->view()->counts(0, 0)->by_status[status - 100];
  }

  // A client connected to the worker. `weir_sndbuf`: a small send buffer on weir's end makes
  // its writes block early (a slow client, with the kernel's buffering out of the way).
  Client& connect(int weir_sndbuf = 0) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    if (weir_sndbuf > 0) {
      ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &weir_sndbuf, sizeof weir_sndbuf);
      ::setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &weir_sndbuf, sizeof weir_sndbuf);
    }
    ++stats().connections_open;  // as the acceptor counts it
    auto* conn = new H1Connection(*worker_, sv[0], loopback_client());
    worker_->add_connection(conn);
    conn->start();
    clients_.push_back(std::make_unique<Client>());
    clients_.back()->fd = sv[1];
    return *clients_.back();
  }

  // Turns the reactor until `done()`, or kIdleTurns turns in a row moved nothing the test sees.
  template <class Done>
  bool run_until(Done done) {
    for (int idle = 0; idle < kIdleTurns; ++idle) {
      if (done()) return true;
      worker_->reactor().run_once(5);
    }
    return done();
  }

  // Turns the reactor and reads the client's socket, at most `piece` bytes between two turns,
  // until one whole response is read (taken off c.in), or the client sees the connection end.
  Response read_response(Client& c, bool head_request = false, size_t piece = SIZE_MAX) {
    ResponseReader reader(head_request);
    int idle = 0;
    for (;;) {
      if (reader.advance(c.in, c.eof)) break;
      if (c.eof) break;  // the connection ended before the response did
      bool got = c.read_some(piece);
      worker_->reactor().run_once(got ? 0 : 5);
      idle = got ? 0 : idle + 1;
      if (idle >= kIdleTurns) {
        ADD_FAILURE() << "stalled: no byte for the client in " << kIdleTurns << " turns; have "
                      << c.in.size() << " bytes: " << c.in.substr(0, 200);
        break;
      }
    }
    EXPECT_EQ(reader.error(), "") << c.in.substr(0, 300);
    if (reader.r.complete) c.in.erase(0, reader.consumed());
    return reader.r;
  }

  // Turns the reactor and reads the client's socket (at most `piece` bytes between two turns)
  // until `done()`; false if nothing reached the client for kIdleTurns turns in a row.
  template <class Done>
  bool read_until(Client& c, Done done, size_t piece = SIZE_MAX) {
    int idle = 0;
    while (!done()) {
      bool got = c.read_some(piece);
      worker_->reactor().run_once(got ? 0 : 5);
      idle = got ? 0 : idle + 1;
      if (idle >= kIdleTurns || c.eof) return done();
    }
    return true;
  }

  // The client sees weir end the connection (bounded), with nothing more sent.
  void expect_closed(Client& c) {
    int idle = 0;
    while (!c.eof && idle < kIdleTurns) {
      bool got = c.read_some(SIZE_MAX);
      worker_->reactor().run_once(got ? 0 : 5);
      idle = got ? 0 : idle + 1;
    }
    EXPECT_TRUE(c.eof) << "weir kept the client connection open";
    EXPECT_EQ(c.in, "") << "bytes after the response";
  }

  // The connection stays open and idle: nothing more arrives within a few turns.
  void expect_open_and_quiet(Client& c) {
    for (int i = 0; i < 5; ++i) {
      worker_->reactor().run_once(1);
      c.read_some(SIZE_MAX);
    }
    EXPECT_FALSE(c.eof) << "weir closed a keep-alive connection";
    EXPECT_EQ(c.in, "") << "bytes after the response";
  }

  // The three framings of a large origin body through `f`'s transform, to a client that takes
  // a little at a time: the filter's output buffer fills, the client's buffer fills, the
  // origin's buffer fills, and everything must still arrive, in order.
  void large_bodies(TestFilter& f) {
    for (std::string path : {"/big", "/big-chunked", "/big-close"}) {
      SCOPED_TRACE(path);
      int bodies = f.log.bodies;
      Client& c = connect(8 * 1024);
      c.send(get(path));
      Response r = read_response(c, false, 1499);
      ASSERT_TRUE(r.complete);
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.field("x-filtered"), "1");
      EXPECT_EQ(r.field("transfer-encoding"), "chunked");
      EXPECT_EQ(r.count("content-length"), 0);
      std::string want = f.expected(big_body());
      EXPECT_EQ(r.body.size(), want.size());
      EXPECT_TRUE(r.body == want) << "body corrupted";
      EXPECT_EQ(f.log.bodies, bodies + 1);
      EXPECT_EQ(f.log.live, 0) << "the transform outlived its response";
      expect_open_and_quiet(c);
    }
  }

  void head_waits_for_the_client(TestFilter& f);

  Origin origin_;
  model::ServerRegistry registry_;
  std::vector<std::unique_ptr<TestFilter>> filters_;  // installed ones: outlive the worker
  std::unique_ptr<Worker> worker_;
  std::vector<std::unique_ptr<Client>> clients_;
};

// =============================================================================================
// 1. Without body filters

TEST_F(ExchangeH1, ContentLengthBodyPassesWithItsLength) {
  Client& c = connect();
  c.send(get("/cl"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nX-Origin: cl\r\nContent-Length: 11\r\n\r\n");
  EXPECT_EQ(r.body, "hello world");
  expect_open_and_quiet(c);
}

TEST_F(ExchangeH1, ChunkedBodyStaysChunkedForHttp11) {
  Client& c = connect();
  c.send(get("/chunked"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nX-Origin: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(r.body, "hello world");
  expect_open_and_quiet(c);
}

TEST_F(ExchangeH1, ChunkedBodyIsCloseDelimitedForHttp10) {
  Client& c = connect();
  c.send(get("/chunked", "1.0"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nX-Origin: chunked\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.body, "hello world");
  expect_closed(c);
}

TEST_F(ExchangeH1, CloseDelimitedBodyBecomesChunkedForHttp11) {
  Client& c = connect();
  c.send(get("/close"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nX-Origin: close\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(r.body, "a body without a length");
  expect_open_and_quiet(c);  // the client's connection outlives the origin's
}

TEST_F(ExchangeH1, CloseDelimitedBodyStaysCloseDelimitedForHttp10) {
  Client& c = connect();
  c.send(get("/close", "1.0"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nX-Origin: close\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.body, "a body without a length");
  expect_closed(c);
}

TEST_F(ExchangeH1, ContentLengthForHttp10KeepsItsLengthAndCloses) {
  Client& c = connect();
  c.send(get("/cl", "1.0"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head,
            "HTTP/1.1 200 OK\r\nX-Origin: cl\r\nContent-Length: 11\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.body, "hello world");
  expect_closed(c);
}

TEST_F(ExchangeH1, LargeBodiesArriveWholeToASlowClient) {
  for (std::string path : {"/big", "/big-chunked", "/big-close"}) {
    SCOPED_TRACE(path);
    Client& c = connect(8 * 1024);
    c.send(get(path));
    Response r = read_response(c, false, 1499);
    ASSERT_TRUE(r.complete);
    EXPECT_EQ(r.status, 200);
    if (path == "/big") {
      EXPECT_EQ(r.field("content-length"), "2097152");
      EXPECT_EQ(r.count("transfer-encoding"), 0);
    } else {
      EXPECT_EQ(r.field("transfer-encoding"), "chunked");
      EXPECT_EQ(r.count("content-length"), 0);
    }
    EXPECT_EQ(r.body.size(), kBig);
    EXPECT_TRUE(r.body == big_body()) << "body corrupted";
    expect_open_and_quiet(c);
  }
}

TEST_F(ExchangeH1, LargeBodiesArriveWholeToAFastClient) {
  for (std::string path : {"/big", "/big-chunked", "/big-close"}) {
    SCOPED_TRACE(path);
    Client& c = connect();
    c.send(get(path));
    Response r = read_response(c);
    ASSERT_TRUE(r.complete);
    EXPECT_EQ(r.body.size(), kBig);
    EXPECT_TRUE(r.body == big_body()) << "body corrupted";
  }
}

TEST_F(ExchangeH1, HeadAnd204AndEmptyHaveNoBody) {
  Client& c = connect();
  c.send("HEAD /cl HTTP/1.1\r\nHost: example.test\r\n\r\n");
  Response r = read_response(c, true);
  ASSERT_TRUE(r.complete);
  // The length of the body a GET would get is kept as sent.
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Origin: head\r\n\r\n");
  expect_open_and_quiet(c);

  c.send(get("/204"));
  r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 204 No Content\r\nX-Origin: 204\r\n\r\n");
  expect_open_and_quiet(c);

  c.send(get("/empty"));
  r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Origin: empty\r\n\r\n");
  expect_open_and_quiet(c);
}

TEST_F(ExchangeH1, TruncatedBodyClosesTheClient) {
  for (std::string path : {"/trunc", "/trunc-chunked", "/trunc-big"}) {
    SCOPED_TRACE(path);
    Client& c = connect();
    c.send(get(path));
    Response r = read_response(c);
    EXPECT_FALSE(r.complete) << "a cut body reached the client as a whole response";
    EXPECT_TRUE(c.eof);
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(std::string_view(big_body()).starts_with(r.body) ||
                std::string_view("0123456789").starts_with(r.body))
        << "bytes that were never sent: " << r.body.substr(0, 40);
  }
  run_until([&] { return stats().connections_open == 0; });
  EXPECT_EQ(stats().connections_open, 0u);
}

TEST_F(ExchangeH1, OriginResetMidBodyClosesTheClient) {
  Client& c = connect();
  c.send(get("/trunc-reset"));
  Response r = read_response(c);
  // The reset may overtake the head (then weir answers 502 itself); it may not make a whole
  // 200 of the cut body.
  if (r.complete) {
    EXPECT_EQ(r.status, 502);
  } else {
    EXPECT_TRUE(c.eof);
    EXPECT_TRUE(std::string_view("0123456789").starts_with(r.body));
  }
}

TEST_F(ExchangeH1, KeepAliveServesEveryKindInTurn) {
  Client& c = connect();
  const std::pair<std::string, std::string> script[] = {
      {"/cl", "hello world"}, {"/chunked", "hello world"}, {"/close", "a body without a length"},
      {"/204", ""},           {"/cl2", "second"},          {"/big", big_body()},
      {"/cl", "hello world"},
  };
  for (const auto& [path, body] : script) {
    SCOPED_TRACE(path);
    c.send(get(path));
    Response r = read_response(c);
    ASSERT_TRUE(r.complete);
    EXPECT_EQ(r.status, path == "/204" ? 204 : 200);
    EXPECT_TRUE(r.body == body) << r.body.substr(0, 40);
    expect_open_and_quiet(c);
  }
}

// =============================================================================================
// 2. With a body filter in the route's chain

class ExchangeFiltered : public ExchangeH1 {};

TEST_F(ExchangeFiltered, ContentLengthBodyIsTransformedAndChunked) {
  TestFilter& f = install(Mode::Upper);
  Client& c = connect();
  c.send(get("/cl"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(
      r.head,
      "HTTP/1.1 200 OK\r\nX-Origin: cl\r\nX-Filtered: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(r.body, "HELLO WORLD");
  EXPECT_EQ(f.log.bodies, 1);
  EXPECT_GE(f.log.end_calls, 1);
  EXPECT_EQ(f.log.input, 11u);
  expect_open_and_quiet(c);
}

TEST_F(ExchangeFiltered, ChunkedBodyIsTransformed) {
  install(Mode::Upper);
  Client& c = connect();
  c.send(get("/chunked"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head,
            "HTTP/1.1 200 OK\r\nX-Origin: chunked\r\nX-Filtered: 1\r\n"
            "Transfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(r.body, "HELLO WORLD");
  expect_open_and_quiet(c);
}

TEST_F(ExchangeFiltered, CloseDelimitedBodyIsTransformed) {
  install(Mode::Double);
  Client& c = connect();
  c.send(get("/close"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(
      r.head,
      "HTTP/1.1 200 OK\r\nX-Origin: close\r\nX-Filtered: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(r.body, doubled("a body without a length"));
  expect_open_and_quiet(c);
}

TEST_F(ExchangeFiltered, Http10ClientGetsTheTransformedBodyDelimitedByClose) {
  install(Mode::Double);
  Client& c = connect();
  c.send(get("/cl", "1.0"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head,
            "HTTP/1.1 200 OK\r\nX-Origin: cl\r\nX-Filtered: 1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.body, doubled("hello world"));
  expect_closed(c);
}

TEST_F(ExchangeFiltered, LargeBodiesOneToOneToASlowClient) {
  TestFilter& f = install(Mode::Upper);
  large_bodies(f);
}

TEST_F(ExchangeFiltered, LargeBodiesDoubledToASlowClient) {
  TestFilter& f = install(Mode::Double);
  large_bodies(f);
}

TEST_F(ExchangeFiltered, LargeBodiesDoubledSevenBytesAtATime) {
  // The filter takes part of each span: the exchange must re-decode exactly up to what it took,
  // chunk framing included.
  TestFilter& f = install(Mode::DoubleSlow);
  large_bodies(f);
}

TEST_F(ExchangeFiltered, LargeBodiesDoubledWithSmallBuffers) {
  build_worker("1KiB");
  TestFilter& f = install(Mode::Double);
  large_bodies(f);
}

TEST_F(ExchangeFiltered, HeadAnd204AndEmptyDoNotCallTheBodyFilter) {
  TestFilter& f = install(Mode::Double);
  Client& c = connect();
  c.send("HEAD /cl HTTP/1.1\r\nHost: example.test\r\n\r\n");
  Response r = read_response(c, true);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Origin: head\r\n\r\n");
  expect_open_and_quiet(c);

  c.send(get("/204"));
  r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 204 No Content\r\nX-Origin: 204\r\n\r\n");
  expect_open_and_quiet(c);

  c.send(get("/empty"));
  r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Origin: empty\r\n\r\n");
  expect_open_and_quiet(c);

  EXPECT_EQ(f.log.bodies, 0);
  EXPECT_EQ(f.log.end_calls, 0);

  // And the next response with a body is filtered again.
  c.send(get("/cl"));
  r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.body, doubled("hello world"));
  EXPECT_EQ(f.log.bodies, 1);
}

TEST_F(ExchangeFiltered, TruncatedBodyClosesTheClientWithoutTheLastChunk) {
  TestFilter& f = install(Mode::Double);
  for (std::string path : {"/trunc", "/trunc-chunked", "/trunc-big"}) {
    SCOPED_TRACE(path);
    int ends = f.log.end_calls;
    Client& c = connect();
    c.send(get(path));
    Response r = read_response(c);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.field("transfer-encoding"), "chunked");
    EXPECT_FALSE(r.complete) << "a cut body reached the client as a whole response: "
                             << r.body.substr(0, 40);
    EXPECT_TRUE(c.eof);
    EXPECT_EQ(f.log.end_calls, ends) << "the filter was told a cut body had ended";
    std::string whole = doubled(path == "/trunc-big" ? big_body() : "0123456789");
    EXPECT_TRUE(std::string_view(whole).starts_with(r.body))
        << "bytes that were never sent: " << r.body.substr(0, 40);
    EXPECT_EQ(f.log.live, 0);
  }
  run_until([&] { return stats().connections_open == 0; });
  EXPECT_EQ(stats().connections_open, 0u);
}

TEST_F(ExchangeFiltered, OriginResetMidBodyClosesTheClient) {
  TestFilter& f = install(Mode::Double);
  Client& c = connect();
  c.send(get("/trunc-reset"));
  Response r = read_response(c);
  if (r.complete) {
    EXPECT_EQ(r.status, 502);  // the reset overtook the head
  } else {
    EXPECT_TRUE(c.eof);
    EXPECT_TRUE(std::string_view(doubled("0123456789")).starts_with(r.body));
    EXPECT_EQ(f.log.end_calls, 0) << "the filter was told a cut body had ended";
  }
  EXPECT_EQ(f.log.live, 0);
}

TEST_F(ExchangeFiltered, ClientGoneMidBodyLetsGoOfTheFilterAndTheServer) {
  TestFilter& f = install(Mode::Double);
  Client& c = connect(8 * 1024);
  c.send(get("/big"));
  ASSERT_TRUE(read_until(
      c, [&] { return c.in.size() > 100 * 1024; }, 1499));
  EXPECT_EQ(f.log.live, 1);
  c.close();
  EXPECT_TRUE(run_until([&] { return stats().connections_open == 0; }));
  EXPECT_EQ(f.log.live, 0) << "the transform outlived the client";
  EXPECT_EQ(f.log.end_calls, 0);
  // The upstream connection, in the middle of a body, is closed (not pooled).
  EXPECT_TRUE(run_until([&] { return origin_.ended() == 1; }))
      << "the server's connection is still open";
}

TEST_F(ExchangeFiltered, HalfClosedClientStillGetsTheWholeBody) {
  TestFilter& f = install(Mode::Upper);
  Client& c = connect();
  c.send(get("/chunked") + get("/close"));
  ASSERT_EQ(::shutdown(c.fd, SHUT_WR), 0);  // the client has said all it will say
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.body, "HELLO WORLD");
  r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.body, "A BODY WITHOUT A LENGTH");
  expect_closed(c);  // nothing more can come: weir ends the connection
  EXPECT_EQ(f.log.bodies, 2);
}

// The client falls behind on a large filtered body and stops reading the moment weir has
// finished it (its tail still in weir's output buffer, which the smallest socket buffer leaves
// nearly full). The next, pipelined, response has a 12 KB head that does not fit in what is
// left: the head waits (HeadResult::Later, checked with a debugger) and goes out once the
// client reads on.
void ExchangeH1::head_waits_for_the_client(TestFilter& f) {
  Client& c = connect(1);  // the kernel's smallest send buffer on weir's end
  c.send(get("/big") + get("/pad"));
  for (int i = 0; i < 50; ++i)
    worker_->reactor().run_once(1);  // weir fills every buffer on the way
  ASSERT_TRUE(read_until(
      c, [&] { return answered(200) == 1; }, 1499));
  for (int i = 0; i < 50; ++i)
    worker_->reactor().run_once(1);  // the /pad head arrives; the client reads nothing
  Response r = read_response(c, false, 1499);
  ASSERT_TRUE(r.complete);
  EXPECT_TRUE(r.body == f.expected(big_body()));
  r = read_response(c, false, 1499);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nX-Pad: " + std::string(12000, 'p') +
                        "\r\nX-Filtered: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(r.body, f.expected("second"));
  expect_open_and_quiet(c);
  EXPECT_EQ(f.log.live, 0);
}

TEST_F(ExchangeFiltered, HeadThatMustWaitForTheClientGoesOutWhole) {
  build_worker("16KiB", "16KiB");  // room for the 12 KB head
  TestFilter& f = install(Mode::Double);
  head_waits_for_the_client(f);
}

// A head that waits (HeadResult::Later) comes back to send_response_head on every pump until
// it is sent: the response filters must still run once per head. (They ran once per pump, 7 to
// 9 times for the 2 responses here, each building a new BodyFilter, before head_filtered_.)
TEST_F(ExchangeFiltered, HeadThatMustWaitForTheClientIsFilteredOnce) {
  build_worker("16KiB", "16KiB");
  TestFilter& f = install(Mode::Double);
  head_waits_for_the_client(f);
  EXPECT_EQ(f.log.heads, 2) << "on_response ran again for a head that had to wait";
  EXPECT_EQ(f.log.bodies, 2) << "on_response_body ran again for a head that had to wait";
}

// =============================================================================================
// 3. Keep-alive after filtered bodies

TEST_F(ExchangeFiltered, KeepAliveTwoRequestsInARow) {
  TestFilter& f = install(Mode::Double);
  Client& c = connect();
  c.send(get("/chunked"));
  Response r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.body, doubled("hello world"));
  expect_open_and_quiet(c);

  c.send(get("/cl2"));
  r = read_response(c);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(
      r.head,
      "HTTP/1.1 200 OK\r\nX-Origin: cl2\r\nX-Filtered: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(r.body, doubled("second"));
  expect_open_and_quiet(c);

  EXPECT_EQ(f.log.bodies, 2);
  auto reqs = origin_.requests();
  EXPECT_EQ(reqs, (std::vector<std::string>{"GET /chunked", "GET /cl2"}));
  EXPECT_EQ(origin_.connections(), 1) << "the upstream connection was not reused";
}

TEST_F(ExchangeFiltered, KeepAliveAfterALargeFilteredBody) {
  install(Mode::DoubleSlow);
  Client& c = connect(8 * 1024);
  c.send(get("/big-chunked"));
  Response r = read_response(c, false, 1499);
  ASSERT_TRUE(r.complete);
  EXPECT_TRUE(r.body == doubled(big_body()));
  expect_open_and_quiet(c);

  c.send(get("/cl"));
  r = read_response(c, false, 3);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.body, doubled("hello world"));
  expect_open_and_quiet(c);
}

TEST_F(ExchangeFiltered, PipelinedRequestsAnsweredInOrder) {
  TestFilter& f = install(Mode::Double);
  Client& c = connect(8 * 1024);
  c.send(get("/cl") + get("/big") + "HEAD /cl HTTP/1.1\r\nHost: example.test\r\n\r\n" +
         get("/close") + get("/cl2"));
  Response r = read_response(c, false, 1499);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.body, doubled("hello world"));
  r = read_response(c, false, 1499);
  ASSERT_TRUE(r.complete);
  EXPECT_TRUE(r.body == doubled(big_body()));
  r = read_response(c, true, 1499);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.head, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Origin: head\r\n\r\n");
  r = read_response(c, false, 1499);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.body, doubled("a body without a length"));
  r = read_response(c, false, 1499);
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.body, doubled("second"));
  expect_open_and_quiet(c);
  // One transform per response with a body (not one per attempt to send its head).
  EXPECT_EQ(f.log.bodies, 4);
  EXPECT_EQ(f.log.statuses, (std::vector<int>{200, 200, 200, 200}));
}

}  // namespace
}  // namespace weir::proxy
