#include "app/upgrade.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/log.hpp"
#include "net/socket.hpp"

extern char** environ;

namespace weir::app {
namespace {

constexpr const char* kEnv = "WEIR_UPGRADE_FD";
constexpr size_t kMaxRecord = 512;  // "L <address>" or a status word
constexpr int kReceiveTimeoutMs = 10000;

// One record, with at most one descriptor.
bool send_record(int fd, std::string_view text, int passed_fd) {
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (passed_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &passed_fd, sizeof(int));
  }
  for (;;) {
    if (::sendmsg(fd, &msg, MSG_NOSIGNAL) >= 0) return true;
    if (errno != EINTR) return false;
  }
}

// One record: its text and the descriptor it carried (-1: none). False on EOF, error, timeout.
bool receive_record(int fd, std::string& text, int& passed_fd, int timeout_ms) {
  passed_fd = -1;
  pollfd p{fd, POLLIN, 0};
  int r = 0;
  while ((r = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
  }
  if (r <= 0) return false;
  char buf[kMaxRecord];
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = 0;
  while ((n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (n <= 0) return false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int got = -1;
      std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (passed_fd < 0)
        passed_fd = got;
      else
        net::close_fd(got);  // one per record: anything more is not ours to keep
    }
  }
  text.assign(buf, static_cast<size_t>(n));
  return true;
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended";
}

}  // namespace

void InheritedSockets::add(HandedSocket s) {
  if (s.role == HandedSocket::Role::Admin) {
    if (auto it = admin_.find(s.address); it != admin_.end()) net::close_fd(it->second);
    admin_[s.address] = s.fd;
  } else {
    listeners_[s.address].push_back(s.fd);
  }
}

int InheritedSockets::take_listener(const std::string& address) {
  auto it = listeners_.find(address);
  if (it == listeners_.end() || it->second.empty()) return -1;
  int fd = it->second.front();
  it->second.erase(it->second.begin());
  return fd;
}

std::vector<int> InheritedSockets::take_rest(const std::string& address) {
  auto it = listeners_.find(address);
  if (it == listeners_.end()) return {};
  std::vector<int> out = std::move(it->second);
  listeners_.erase(it);
  return out;
}

int InheritedSockets::take_admin(const std::string& address) {
  auto it = admin_.find(address);
  if (it == admin_.end()) return -1;
  int fd = it->second;
  admin_.erase(it);
  return fd;
}

void InheritedSockets::close_unused(bool quiet) {
  for (auto& [address, fds] : listeners_) {
    if (!fds.empty() && !quiet)
      log::info("upgrade: {} is not in the new configuration: its socket closes", address);
    for (int fd : fds)
      net::close_fd(fd);
  }
  listeners_.clear();
  for (auto& [address, fd] : admin_)
    net::close_fd(fd);
  admin_.clear();
}

std::optional<UpgradeChild> UpgradeChild::from_environment(std::string& error) {
  const char* value = std::getenv(kEnv);
  if (!value) return std::nullopt;
  char* end = nullptr;
  long fd = std::strtol(value, &end, 10);
  ::unsetenv(kEnv);  // not for the processes this one starts
  if (!end || *end != '\0' || fd < 3 || fd > 1 << 20 ||
      ::fcntl(static_cast<int>(fd), F_GETFD) < 0) {
    error = std::string(kEnv) + " does not name an open descriptor";
    return std::nullopt;
  }
  ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  UpgradeChild child(static_cast<int>(fd));
  for (;;) {
    std::string text;
    int passed = -1;
    if (!receive_record(child.fd_, text, passed, kReceiveTimeoutMs)) {
      error = "the running process stopped handing over its sockets";
      return std::nullopt;
    }
    if (text == "END") break;
    if (text.size() < 3 || (text[0] != 'L' && text[0] != 'A') || text[1] != ' ' || passed < 0) {
      if (passed >= 0) net::close_fd(passed);
      error = "unexpected hand-over record \"" + text.substr(0, 40) + "\"";
      return std::nullopt;
    }
    child.sockets_.add({static_cast<HandedSocket::Role>(text[0]), text.substr(2), passed});
  }
  return child;
}

UpgradeChild::UpgradeChild(UpgradeChild&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), sockets_(std::move(o.sockets_)) {}

UpgradeChild::~UpgradeChild() {
  if (fd_ >= 0) net::close_fd(fd_);
}

void UpgradeChild::ready() {
  if (fd_ < 0) return;
  send_record(fd_, "READY", -1);
  net::close_fd(fd_);
  fd_ = -1;
}

pid_t start_upgrade(const std::string& exe, const std::vector<std::string>& argv,
                    const std::vector<HandedSocket>& sockets, std::chrono::milliseconds timeout) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    log::error("upgrade: socketpair: {}; still serving", std::strerror(errno));
    return -1;
  }
  const int mine = pair[0], theirs = pair[1];
  // Everything the child needs is made before fork(): after it, in a threaded process, only
  // async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "WEIR_UPGRADE_FD=", 16) != 0) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kEnv) + "=" + std::to_string(theirs));
  std::vector<char*> envp, args;
  for (auto& s : env_strings)
    envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy)
    args.push_back(s.data());
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    log::error("upgrade: fork: {}; still serving", std::strerror(errno));
    net::close_fd(mine);
    net::close_fd(theirs);
    return -1;
  }
  if (pid == 0) {
    // Only the hand-over socket and stdio go to the new process: no client connection, no
    // epoll or timer descriptor of this one.
    ::fcntl(theirs, F_SETFD, 0);
    if (theirs > 3) ::syscall(SYS_close_range, 3u, static_cast<unsigned>(theirs - 1), 0u);
    ::syscall(SYS_close_range, static_cast<unsigned>(theirs + 1), ~0u, 0u);
    // The signals this process takes with sigwait stay blocked until the new one's own
    // sigwait loop takes them (a SIGHUP in between waits instead of killing it).
    ::execve(exe.c_str(), args.data(), envp.data());
    int err = errno;
    char msg[32] = "EXEC ";
    size_t n = 5;
    char digits[12];
    size_t d = 0;
    do {
      digits[d++] = static_cast<char>('0' + err % 10);
      err /= 10;
    } while (err && d < sizeof digits);
    while (d)
      msg[n++] = digits[--d];
    ::send(theirs, msg, n, MSG_NOSIGNAL);
    ::_exit(127);
  }
  net::close_fd(theirs);
  log::info("upgrade: started {} (pid {}); handing over {} listening socket{}", exe, pid,
            sockets.size(), sockets.size() == 1 ? "" : "s");
  bool sent = true;
  for (const auto& s : sockets) {
    std::string text = std::string(1, static_cast<char>(s.role)) + " " + s.address;
    sent = sent && send_record(mine, text, s.fd);
  }
  sent = sent && send_record(mine, "END", -1);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string why;
  int status = 0;
  bool reaped = false;
  // Read even if sending failed: a child whose exec failed says why before it exits.
  bool open = true;  // until the child's end is closed (then only its exit is waited for)
  for (;;) {
    std::string text;
    int passed = -1;
    bool got = open && receive_record(mine, text, passed, 200);
    if (!got && open) {
      pollfd p{mine, POLLIN, 0};
      if (::poll(&p, 1, 0) == 1) open = false;  // readable yet nothing read: closed
    }
    if (!open) ::poll(nullptr, 0, 50);
    if (passed >= 0) net::close_fd(passed);
    if (got && text == "READY" && sent) {
      net::close_fd(mine);
      return pid;
    }
    if (got && text.starts_with("EXEC ")) {
      int err = std::atoi(text.c_str() + 5);
      why = "could not be started: " + std::string(std::strerror(err));
      break;
    }
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      reaped = true;
      why = describe_exit(status) + " before it was ready";
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      why = "was not ready within " + std::to_string(timeout.count() / 1000) + " s (killed)";
      break;
    }
  }
  net::close_fd(mine);
  if (!reaped) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  log::error("upgrade: the new process (pid {}) {}; this process keeps serving", pid, why);
  return -1;
}

}  // namespace weir::app
