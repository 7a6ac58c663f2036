#include "fleet/bird_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace weir::fleet {

BirdLine parse_bird_line(std::string_view line) {
  BirdLine out;
  if (line.empty()) return out;
  if (line[0] == '+') {
    out.kind = BirdLine::Kind::Async;
    out.text = line.substr(1);
    return out;
  }
  if (line[0] == ' ') {
    out.kind = BirdLine::Kind::Continuation;
    out.text = line.substr(1);
    return out;
  }
  if (line.size() < 5 || (line[4] != ' ' && line[4] != '-')) return out;
  int code = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (line[i] < '0' || line[i] > '9') return out;
    code = code * 10 + (line[i] - '0');
  }
  out.kind = BirdLine::Kind::Code;
  out.code = code;
  out.last = line[4] == ' ';
  out.text = line.substr(5);
  return out;
}

BirdClient::~BirdClient() {
  close();
}

void BirdClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  in_.clear();
}

bool BirdClient::fail(std::string& why, std::string text) {
  why = std::move(text);
  close();
  return false;
}

std::string BirdClient::connect(const std::string& path, std::chrono::milliseconds timeout) {
  close();
  auto deadline = Clock::now() + timeout;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path) return "socket path too long";
  std::memcpy(sa.sun_path, path.data(), path.size());
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return std::strerror(errno);
  // A Unix socket connects at once or not at all (EAGAIN: BIRD's backlog is full).
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    std::string why = std::strerror(errno);
    close();
    return why;
  }
  std::string line;
  std::string why;
  reply_bytes_ = 0;
  if (!read_line(deadline, line, why)) return "no greeting: " + why;
  BirdLine greeting = parse_bird_line(line);
  if (greeting.kind != BirdLine::Kind::Code || greeting.code != 1 || !greeting.last) {
    fail(why, "");
    return "not a BIRD control socket (it said \"" + line.substr(0, 80) + "\")";
  }
  return "";
}

bool BirdClient::read_line(Clock::time_point deadline, std::string& line, std::string& why) {
  for (;;) {
    size_t nl = in_.find('\n');
    if (nl != std::string::npos) {
      line.assign(in_, 0, nl);
      in_.erase(0, nl + 1);
      reply_bytes_ += nl + 1;
      if (reply_bytes_ > kMaxReply) return fail(why, "reply too long");
      return true;
    }
    if (reply_bytes_ + in_.size() > kMaxReply) return fail(why, "reply too long");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return fail(why, "timed out");
    pollfd p{fd_, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
    if (n < 0 && errno != EINTR) return fail(why, std::strerror(errno));
    if (n <= 0) continue;
    char buf[4096];
    ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
    if (got == 0) return fail(why, "BIRD closed the connection");
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fail(why, std::strerror(errno));
    }
    in_.append(buf, static_cast<size_t>(got));
  }
}

bool BirdClient::command(std::string_view line, std::chrono::milliseconds timeout, BirdReply& reply,
                         std::string& why) {
  reply = BirdReply{};
  if (fd_ < 0) {
    why = "not connected";
    return false;
  }
  if (!check_alive(why)) return false;
  auto deadline = Clock::now() + timeout;
  std::string out(line);
  out += '\n';
  size_t sent = 0;
  while (sent < out.size()) {
    ssize_t n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return fail(why, std::strerror(errno));
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return fail(why, "timed out");
    pollfd p{fd_, POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left.count()) + 1);
  }
  reply_bytes_ = 0;
  std::string text;
  for (;;) {
    if (!read_line(deadline, text, why)) return false;
    BirdLine l = parse_bird_line(text);
    switch (l.kind) {
      case BirdLine::Kind::Async:
        continue;  // not part of this reply
      case BirdLine::Kind::Bad:
        return fail(why, "malformed reply line \"" + text.substr(0, 80) + "\"");
      case BirdLine::Kind::Continuation:
        reply.lines.emplace_back(l.text);
        continue;
      case BirdLine::Kind::Code:
        reply.code = l.code;
        reply.lines.emplace_back(l.text);
        if (l.code >= 8000 && reply.error.empty()) reply.error = text;
        if (l.last) return true;
        continue;
    }
  }
}

bool BirdClient::check_alive(std::string& why) {
  if (fd_ < 0) {
    why = "not connected";
    return false;
  }
  for (;;) {
    char buf[4096];
    ssize_t got = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (got == 0) return fail(why, "BIRD closed the connection");
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      return fail(why, std::strerror(errno));
    }
    in_.append(buf, static_cast<size_t>(got));
    if (in_.size() > kMaxReply) return fail(why, "too much unrequested output");
  }
  // Between commands only asynchronous messages may come.
  size_t nl = 0;
  while ((nl = in_.find('\n')) != std::string::npos) {
    std::string_view line(in_.data(), nl);
    if (parse_bird_line(line).kind != BirdLine::Kind::Async)
      return fail(why, "unexpected output \"" + std::string(line.substr(0, 80)) + "\"");
    in_.erase(0, nl + 1);
  }
  return true;
}

}  // namespace weir::fleet
