#pragma once
// SIGUSR2, the binary upgrade (ops.md "Reloads and binary upgrades that keep connections").
//
// The running weir (old) starts the executable at the path it was started from, with the same
// arguments, over a Unix socket pair whose one end the new process inherits (WEIR_UPGRADE_FD).
// Over it the old process sends every listening socket it has (SCM_RIGHTS, one per message, with
// its role and address); the new process builds its listeners from them (the same sockets, so no
// listen socket is ever closed and nothing queued in a backlog is lost), binds only what is new,
// starts serving and writes "READY". Then the old one stops accepting and drains. A new process
// that exits, closes the socket or stays silent past the timeout leaves the old one serving.
#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace weir::app {

// A listening socket handed over: a proxy listener's (one per worker of the old process) or the
// admin listener's.
struct HandedSocket {
  enum class Role : char { Listener = 'L', Admin = 'A' };
  Role role = Role::Listener;
  std::string address;  // as SocketAddress::to_string() prints it
  int fd = -1;
};

// The new process's side: the sockets received, taken as the listeners are built.
class InheritedSockets {
 public:
  void add(HandedSocket s);
  // One socket of `address` for a listener (-1: none left, bind a new one).
  int take_listener(const std::string& address);
  // Sockets of `address` still unused once every worker has one (the old process had more
  // workers): they must still be accepted from, or what waits in their backlogs is lost.
  std::vector<int> take_rest(const std::string& address);
  int take_admin(const std::string& address);
  InheritedSockets() = default;
  InheritedSockets(InheritedSockets&& o) noexcept
      : listeners_(std::exchange(o.listeners_, {})), admin_(std::exchange(o.admin_, {})) {}
  InheritedSockets& operator=(InheritedSockets&&) = delete;
  // Closes what no listener of the new config took (an address it dropped; logged unless
  // `quiet`: the new process failed and the old one goes on with these sockets).
  void close_unused(bool quiet = false);
  ~InheritedSockets() { close_unused(true); }

 private:
  std::map<std::string, std::vector<int>> listeners_;
  std::map<std::string, int> admin_;
};

class UpgradeChild {
 public:
  // With WEIR_UPGRADE_FD set (this process was started by an upgrade): receives the sockets
  // (bounded wait) and unsets the variable. nullopt without it; `error` set if it failed.
  static std::optional<UpgradeChild> from_environment(std::string& error);
  UpgradeChild(UpgradeChild&& o) noexcept;
  UpgradeChild& operator=(UpgradeChild&&) = delete;
  ~UpgradeChild();

  InheritedSockets& sockets() { return sockets_; }
  // Serving: tells the old process, which then stops accepting and drains.
  void ready();

 private:
  explicit UpgradeChild(int fd) : fd_(fd) {}
  int fd_ = -1;
  InheritedSockets sockets_;
};

// The old process's side: starts `exe argv...`, hands `sockets` over and waits for READY (at
// most `timeout`). Returns the new process's pid once it is ready; -1 after logging one error
// line (the new process failed to start, exited, or was killed at the timeout).
pid_t start_upgrade(const std::string& exe, const std::vector<std::string>& argv,
                    const std::vector<HandedSocket>& sockets, std::chrono::milliseconds timeout);

}  // namespace weir::app
