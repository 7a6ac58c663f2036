#include "proxy/splice.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "net/socket.hpp"

namespace weir::proxy {

SplicePipe::~SplicePipe() {
  ::close(rd_);
  ::close(wr_);
}

std::unique_ptr<SplicePipe> SplicePipe::make(size_t capacity) {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return nullptr;
  // The kernel rounds the size up to whole pages, or keeps the default (64 KiB) if the size is
  // over the limit for this user: what it really is comes back from F_GETPIPE_SZ.
  ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(capacity));
  int real = ::fcntl(fds[1], F_GETPIPE_SZ);
  if (real <= 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return nullptr;
  }
  return std::unique_ptr<SplicePipe>(new SplicePipe(fds[0], fds[1], static_cast<size_t>(real)));
}

ssize_t SplicePipe::fill(int from, size_t max) {
  if (max > room()) max = room();
  if (max == 0) return net::kWouldBlock;  // no room: not an end of input
  for (;;) {
    ssize_t n = ::splice(from, nullptr, wr_, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) held_ += static_cast<size_t>(n);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? net::kWouldBlock : net::kIoError;
  }
}

ssize_t SplicePipe::drain(int to) {
  for (;;) {
    ssize_t n = ::splice(rd_, nullptr, to, nullptr, held_, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      held_ -= static_cast<size_t>(n);
      return n;
    }
    if (n == 0) return net::kWouldBlock;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? net::kWouldBlock : net::kIoError;
  }
}

std::unique_ptr<SplicePipe> PipePool::take() {
  if (!free_.empty()) {
    auto p = std::move(free_.back());
    free_.pop_back();
    return p;
  }
  return SplicePipe::make(kCapacity);  // null (out of fds): the body takes the copying path
}

void PipePool::give_back(std::unique_ptr<SplicePipe> p) {
  if (p && p->held() == 0 && free_.size() < kMaxCached) free_.push_back(std::move(p));
}

}  // namespace weir::proxy
