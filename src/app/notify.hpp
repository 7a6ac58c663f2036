#pragma once
// The systemd notify protocol (sd_notify(3), without libsystemd): when the service manager set
// NOTIFY_SOCKET (a path, or "@name" for the abstract namespace), `weir run` tells it READY=1
// once it listens, RELOADING=1 then READY=1 around a reload, STOPPING=1 when it drains. Each
// message is one datagram; a manager that is not there costs nothing (errors are ignored).
#include <string_view>

#include <sys/socket.h>
#include <sys/un.h>

namespace weir::app {

class Notifier {
 public:
  // Reads NOTIFY_SOCKET; without it (or with an unusable value) every call does nothing.
  Notifier();
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  void ready(std::string_view status);
  void reloading();
  void stopping();
  // Sends `text` ("KEY=VALUE" lines) as one datagram.
  void send(std::string_view text);

 private:
  int fd_ = -1;
  sockaddr_un addr_{};
  socklen_t addr_len_ = 0;
};

}  // namespace weir::app
