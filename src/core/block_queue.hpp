#pragma once
// Bytes waiting in a queue of pooled buffer blocks: memory follows what is held (a block at a
// time, given back as soon as it is read), not the most ever held, as a growing string's would.
// For data that may pile up to a flow-control window (HTTP/2 request bodies).
#include <deque>
#include <string_view>

#include "core/buffer_pool.hpp"

namespace weir {

class BlockQueue {
 public:
  explicit BlockQueue(BufferPool& pool) : pool_(pool) {}
  ~BlockQueue() { clear(); }
  BlockQueue(const BlockQueue&) = delete;
  BlockQueue& operator=(const BlockQueue&) = delete;

  void append(std::string_view data) {
    while (!data.empty()) {
      if (blocks_.empty() || blocks_.back().free_space() == 0) {
        blocks_.emplace_back();
        pool_.acquire(blocks_.back());
      }
      size_t n = blocks_.back().append(data);
      size_ += n;
      data.remove_prefix(n);
    }
  }
  // The first contiguous run of bytes (empty if none).
  std::string_view front() const {
    return blocks_.empty() ? std::string_view() : blocks_.front().readable();
  }
  // Drops `n` bytes from the front (n <= size()); emptied blocks go back to the pool.
  void consume(size_t n) {
    size_ -= n;
    while (n > 0) {
      Buffer& b = blocks_.front();
      size_t k = n < b.size() ? n : b.size();
      b.consume(k);
      n -= k;
      if (b.empty()) {
        pool_.release(b);
        blocks_.pop_front();
      }
    }
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() {
    for (Buffer& b : blocks_) {
      b.clear();
      pool_.release(b);
    }
    blocks_.clear();
    size_ = 0;
  }

 private:
  BufferPool& pool_;
  std::deque<Buffer> blocks_;
  size_t size_ = 0;
};

}  // namespace weir
