#include "app/notify.hpp"

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/log.hpp"

namespace weir::app {

Notifier::Notifier() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  size_t n = std::strlen(path);
  if ((path[0] != '/' && path[0] != '@') || n >= sizeof addr_.sun_path) {
    log::warn("NOTIFY_SOCKET {:?} is not a socket path: systemd will not hear from weir", path);
    return;
  }
  addr_.sun_family = AF_UNIX;
  std::memcpy(addr_.sun_path, path, n);
  if (path[0] == '@') addr_.sun_path[0] = '\0';  // the abstract namespace
  addr_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

Notifier::~Notifier() {
  if (fd_ >= 0) ::close(fd_);
}

void Notifier::send(std::string_view text) {
  if (fd_ < 0) return;
  if (::sendto(fd_, text.data(), text.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr_),
               addr_len_) < 0)
    log::debug("systemd notify: {}", std::strerror(errno));
}

void Notifier::ready(std::string_view status) {
  std::string msg = "READY=1\nSTATUS=";
  msg.append(status);
  msg.append("\nMAINPID=").append(std::to_string(::getpid()));
  send(msg);
}

void Notifier::reloading() {
  // Type=notify-reload (systemd 253) wants the time the reload began, CLOCK_MONOTONIC in µs.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec =
      static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
  send("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::stopping() {
  send("STOPPING=1\nSTATUS=draining");
}

}  // namespace weir::app
