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

// A timeout whose deadline moves all the time (every request, every read) but that rarely
// fires: the heap is touched only when a deadline comes earlier than the armed one; a wake-up
// before the current deadline re-arms quietly, and a cleared one does nothing.
class LazyTimer {
 public:
  LazyTimer() {
    timer_.set_callback([this] { fire(); });
  }
  void set_callback(std::function<void()> fn) { fn_ = std::move(fn); }
  // The callback runs at `due` (unless set again or cleared before).
  void set(TimerQueue& q, TimePoint due) {
    due_ = due;
    if (!timer_.armed() || due < timer_.deadline()) timer_.arm(q, due);
    queue_ = &q;
  }
  void clear() { due_ = TimePoint{}; }
  bool pending() const { return due_ != TimePoint{}; }

 private:
  void fire() {
    if (due_ == TimePoint{}) return;  // cleared since it was armed
    if (due_ > timer_.deadline()) {
      timer_.arm(*queue_, due_);  // moved later since: wait the rest
      return;
    }
    due_ = TimePoint{};
    fn_();
  }
  Timer timer_;
  TimePoint due_{};
  TimerQueue* queue_ = nullptr;
  std::function<void()> fn_;
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
