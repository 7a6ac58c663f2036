#pragma once
// A byte buffer with a read and a write position, a fixed capacity chosen at construction.
// Used for every socket read and write buffer: its capacity is the configured limit, so a buffer
// can never grow without bound. Readable bytes are [rpos, wpos); free space is [wpos, cap).
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace weir {

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t capacity) : data_(new char[capacity]), cap_(capacity) {}
  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&&) noexcept = default;

  size_t capacity() const { return cap_; }
  size_t size() const { return wpos_ - rpos_; }
  bool empty() const { return wpos_ == rpos_; }
  bool full() const { return size() == cap_; }
  bool allocated() const { return data_ != nullptr; }

  // Allocates lazily, so idle connections can hold no buffer at all.
  void ensure_allocated(size_t capacity) {
    if (!data_) {
      data_.reset(new char[capacity]);
      cap_ = capacity;
      rpos_ = wpos_ = 0;
    }
  }
  // Hands the storage over (to a BufferPool) or takes it in; the buffer must be empty.
  std::unique_ptr<char[]> take_storage() {
    cap_ = rpos_ = wpos_ = 0;
    return std::move(data_);
  }
  void adopt_storage(std::unique_ptr<char[]> data, size_t capacity) {
    data_ = std::move(data);
    cap_ = capacity;
    rpos_ = wpos_ = 0;
  }

  // Gives the memory back when nothing is buffered (idle keep-alive connections).
  void release_if_empty() {
    if (data_ && empty()) {
      data_.reset();
      cap_ = rpos_ = wpos_ = 0;
    }
  }

  std::string_view readable() const { return {data_.get() + rpos_, wpos_ - rpos_}; }
  const char* read_ptr() const { return data_.get() + rpos_; }
  void consume(size_t n) {
    rpos_ += n;
    if (rpos_ == wpos_) rpos_ = wpos_ = 0;
  }

  // Free space at the tail, after moving unread bytes to the front if that makes room.
  std::span<char> writable() {
    if (wpos_ == cap_ && rpos_ > 0) compact();
    return {data_.get() + wpos_, cap_ - wpos_};
  }
  size_t tail_room() const { return cap_ - wpos_; }
  size_t free_space() const { return cap_ - size(); }
  void commit(size_t n) { wpos_ += n; }

  // Appends as much of s as fits; returns the number of bytes taken.
  size_t append(std::string_view s) {
    if (tail_room() < s.size() && rpos_ > 0) compact();
    size_t n = s.size() < tail_room() ? s.size() : tail_room();
    if (n) std::memcpy(data_.get() + wpos_, s.data(), n);
    wpos_ += n;
    return n;
  }

  void compact() {
    if (rpos_ == 0) return;
    size_t n = wpos_ - rpos_;
    if (n) std::memmove(data_.get(), data_.get() + rpos_, n);
    rpos_ = 0;
    wpos_ = n;
  }
  void clear() { rpos_ = wpos_ = 0; }

 private:
  std::unique_ptr<char[]> data_;
  size_t cap_ = 0;
  size_t rpos_ = 0;
  size_t wpos_ = 0;
};

}  // namespace weir
