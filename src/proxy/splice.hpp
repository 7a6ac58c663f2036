#pragma once
// A kernel pipe that carries response body bytes from a server socket to a client socket
// without passing through weir's memory (splice(2)): used when both sides are plain TCP, the
// body is delimited by Content-Length or by the server's close, and no filter touches it.
// Bigger moves than one buffer block, no copy to user space: fewer system calls and wake-ups
// for everyone on the path. Pipes are kept per worker for reuse (their buffers are kernel
// memory, bounded by the pipe size).
#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <vector>

namespace weir::proxy {

class SplicePipe {
 public:
  ~SplicePipe();
  SplicePipe(const SplicePipe&) = delete;
  SplicePipe& operator=(const SplicePipe&) = delete;

  // A pipe of (about) `capacity` bytes, or null if the kernel refuses one.
  static std::unique_ptr<SplicePipe> make(size_t capacity);
  // From the socket into the pipe, at most `max` bytes: > 0 moved, 0 EOF, or
  // net::kWouldBlock / net::kIoError.
  ssize_t fill(int from, size_t max);
  // From the pipe into the socket: > 0 moved, or net::kWouldBlock / net::kIoError.
  ssize_t drain(int to);
  size_t held() const { return held_; }
  size_t room() const { return capacity_ - held_; }

 private:
  SplicePipe(int rd, int wr, size_t capacity) : rd_(rd), wr_(wr), capacity_(capacity) {}
  int rd_, wr_;
  size_t capacity_;
  size_t held_ = 0;
};

// Empty pipes of one worker, ready for the next spliced response.
class PipePool {
 public:
  std::unique_ptr<SplicePipe> take();
  // Only empty pipes come back (one holding bytes is closed).
  void give_back(std::unique_ptr<SplicePipe> p);
  void trim(size_t keep) {
    if (free_.size() > keep) free_.resize(keep);
  }

 private:
  static constexpr size_t kCapacity = 256 * 1024;
  static constexpr size_t kMaxCached = 16;
  std::vector<std::unique_ptr<SplicePipe>> free_;
};

}  // namespace weir::proxy
