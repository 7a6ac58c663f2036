#pragma once
// A per-thread cache of equal-sized buffer blocks, so that connections can give their buffers
// back whenever they are idle (10k idle keep-alive connections hold no buffer memory) without
// paying a malloc/free pair per request. Holds at most `max_cached` free blocks.
#include <memory>
#include <vector>

#include "core/buffer.hpp"

namespace weir {

class BufferPool {
 public:
  explicit BufferPool(size_t block_size = 16 * 1024, size_t max_cached = 64)
      : size_(block_size), max_cached_(max_cached) {}

  size_t block_size() const { return size_; }
  // A new block size (config reload): cached blocks of the old size are dropped.
  void set_block_size(size_t size) {
    if (size == size_) return;
    size_ = size;
    free_.clear();
  }

  // Gives `b` a block if it has none.
  void acquire(Buffer& b) {
    if (b.allocated()) return;
    if (++in_use_ > peak_) peak_ = in_use_;
    if (!free_.empty()) {
      b.adopt_storage(std::move(free_.back()), size_);
      free_.pop_back();
    } else {
      b.adopt_storage(std::unique_ptr<char[]>(new char[size_]), size_);
    }
  }

  // Takes `b`'s block back if `b` is empty.
  void release(Buffer& b) {
    if (!b.allocated() || !b.empty()) return;
    if (in_use_ > 0) --in_use_;
    bool same_size = b.capacity() == size_;
    auto block = b.take_storage();
    if (same_size && free_.size() < max_cached_) free_.push_back(std::move(block));
  }

  size_t cached() const { return free_.size(); }
  size_t in_use() const { return in_use_; }

  // After a burst: true if far fewer blocks are in use than at the peak since the last call,
  // in which case the cache is cut to `keep` blocks (the caller may then give freed memory
  // back to the kernel). Under steady load (in use ≈ peak) nothing changes: no churn.
  bool shrink_after_burst(size_t slack, size_t keep) {
    bool burst_over = peak_ > in_use_ + slack;
    peak_ = in_use_;
    if (!burst_over) return false;
    if (free_.size() > keep) free_.resize(keep);
    return true;
  }

 private:
  std::vector<std::unique_ptr<char[]>> free_;
  size_t size_;
  size_t max_cached_;
  size_t in_use_ = 0;  // blocks handed out and not yet back
  size_t peak_ = 0;    // most in use at once since the last shrink_after_burst
};

}  // namespace weir
