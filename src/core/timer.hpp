#pragma once
// Timers: an intrusive binary min-heap of Timer objects owned by their users (connections).
// Arming, re-arming and cancelling allocate nothing once the heap vector has grown.
#include <cstddef>
#include <functional>
#include <vector>

#include "core/clock.hpp"

namespace weir {

class TimerQueue;

class Timer {
 public:
  Timer() = default;
  explicit Timer(std::function<void()> fn) : fn_(std::move(fn)) {}
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void set_callback(std::function<void()> fn) { fn_ = std::move(fn); }
  void arm(TimerQueue& q, TimePoint deadline);
  void cancel();
  bool armed() const { return queue_ != nullptr; }
  TimePoint deadline() const { return deadline_; }

 private:
  friend class TimerQueue;
  std::function<void()> fn_;
  TimerQueue* queue_ = nullptr;
  size_t index_ = 0;
  TimePoint deadline_{};
};

class TimerQueue {
 public:
  void insert(Timer* t);
  void remove(Timer* t);
  void update(Timer* t);
  // Runs every timer whose deadline is <= now. A callback may arm or cancel any timer.
  void run_expired(TimePoint now);
  // Milliseconds until the next deadline (-1 if none), capped at `cap`.
  int next_timeout_ms(TimePoint now, int cap) const;
  size_t size() const { return heap_.size(); }

 private:
  void sift_up(size_t i);
  void sift_down(size_t i);
  void swap_at(size_t a, size_t b);
  std::vector<Timer*> heap_;
};

}  // namespace weir
