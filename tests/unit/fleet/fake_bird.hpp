#pragma once
// A fake BIRD control socket for the fleet tests: a Unix socket served by a thread of its own.
// It greets like BIRD 2 and answers each command line with `answer(line)` (by default BIRD's own
// answers to enable/disable of the protocols it knows, and its syntax error for the rest).
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace weir::fleet::test {

class FakeBird {
 public:
  using Answer = std::function<std::string(const std::string& line)>;

  FakeBird(std::string path, std::vector<std::string> protocols, bool enabled_at_start = false)
      : path_(std::move(path)) {
    for (auto& p : protocols)
      enabled_[p] = enabled_at_start;
    answer_ = [this](const std::string& line) { return bird_answer(line); };
  }
  ~FakeBird() { stop(); }

  void set_answer(Answer a) {
    std::lock_guard lock(mu_);
    answer_ = std::move(a);
  }
  void set_greeting(std::string g) { greeting_ = std::move(g); }

  void start() {
    ::unlink(path_.c_str());
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path_.c_str(), sizeof sa.sun_path - 1);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(listen_fd_, 8) != 0) {
      throw std::runtime_error("fake bird: cannot listen on " + path_);
    }
    if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    thread_ = std::thread([this] { run(); });
  }

  // BIRD goes away: every connection closes, the socket file stays (as after a crash).
  void stop() {
    if (!thread_.joinable()) return;
    char c = 1;
    (void)!::write(stop_pipe_[1], &c, 1);
    thread_.join();
    ::close(stop_pipe_[0]);
    ::close(stop_pipe_[1]);
  }

  std::vector<std::string> commands() {
    std::lock_guard lock(mu_);
    return commands_;
  }
  bool enabled(const std::string& proto) {
    std::lock_guard lock(mu_);
    return enabled_[proto];
  }
  int connections() const { return connections_.load(); }

 private:
  std::string bird_answer(const std::string& line) {  // with mu_ held
    for (const char* verb : {"enable ", "disable "}) {
      if (line.rfind(verb, 0) != 0) continue;
      std::string name = line.substr(std::strlen(verb));
      auto it = enabled_.find(name);
      if (it == enabled_.end()) {
        return "9001 syntax error, unexpected CF_SYM_UNDEFINED, expecting CF_SYM_KNOWN or TEXT or "
               "ALL\n";
      }
      bool on = verb[0] == 'e';
      std::string out;
      if (it->second == on) {
        out = on ? "0010-" + name + ": already enabled\n" : "0008-" + name + ": already disabled\n";
      } else {
        out = on ? "0011-" + name + ": enabled\n" : "0009-" + name + ": disabled\n";
      }
      it->second = on;
      return out + "0000 \n";
    }
    return "9001 syntax error\n";
  }

  void run() {
    std::vector<int> conns;
    std::map<int, std::string> inbuf;
    for (;;) {
      std::vector<pollfd> fds{{stop_pipe_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      for (int c : conns)
        fds.push_back({c, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 1000) < 0) continue;
      if (fds[0].revents != 0) break;
      if (fds[1].revents & POLLIN) {
        int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          ++connections_;
          send_all(c, greeting_);
          conns.push_back(c);
        }
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        int c = fds[i].fd;
        char buf[4096];
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) {
          ::close(c);
          conns.erase(std::find(conns.begin(), conns.end(), c));
          inbuf.erase(c);
          continue;
        }
        std::string& in = inbuf[c];
        in.append(buf, static_cast<size_t>(n));
        size_t nl = 0;
        while ((nl = in.find('\n')) != std::string::npos) {
          std::string line = in.substr(0, nl);
          in.erase(0, nl + 1);
          std::string out;
          {
            std::lock_guard lock(mu_);
            commands_.push_back(line);
            out = answer_(line);
          }
          if (out == "<close>") {
            ::shutdown(c, SHUT_RDWR);
          } else {
            send_all(c, out);
          }
        }
      }
    }
    for (int c : conns)
      ::close(c);
    ::close(listen_fd_);
    listen_fd_ = -1;
  }

  static void send_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  std::string path_;
  std::string greeting_ = "0001 BIRD 2.0.12 ready.\n";
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
  std::mutex mu_;
  Answer answer_;
  std::map<std::string, bool> enabled_;
  std::vector<std::string> commands_;
  std::atomic<int> connections_{0};
};

// A fresh directory for sockets (removed with its files at the end of the test).
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/weir-fleet-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace weir::fleet::test
