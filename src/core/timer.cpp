#include "core/timer.hpp"

namespace weir {

Timer::~Timer() {
  cancel();
}

void Timer::arm(TimerQueue& q, TimePoint deadline) {
  if (queue_ == &q) {
    deadline_ = deadline;
    q.update(this);
    return;
  }
  cancel();
  deadline_ = deadline;
  q.insert(this);
}

void Timer::cancel() {
  if (queue_) queue_->remove(this);
}

void TimerQueue::insert(Timer* t) {
  t->queue_ = this;
  t->index_ = heap_.size();
  heap_.push_back(t);
  sift_up(t->index_);
}

void TimerQueue::remove(Timer* t) {
  size_t i = t->index_;
  size_t last = heap_.size() - 1;
  if (i != last) swap_at(i, last);
  heap_.pop_back();
  t->queue_ = nullptr;
  if (i < heap_.size()) {
    Timer* moved = heap_[i];
    sift_up(i);
    sift_down(moved->index_);
  }
}

void TimerQueue::update(Timer* t) {
  sift_up(t->index_);
  sift_down(t->index_);
}

void TimerQueue::run_expired(TimePoint now) {
  // At most the timers present now: one re-armed for `now` by its own callback waits for the
  // next turn instead of spinning here.
  for (size_t budget = heap_.size(); budget > 0 && !heap_.empty() && heap_[0]->deadline_ <= now;
       --budget) {
    Timer* t = heap_[0];
    remove(t);
    if (t->fn_) t->fn_();
  }
}

int TimerQueue::next_timeout_ms(TimePoint now, int cap) const {
  if (heap_.empty()) return cap;
  auto d = heap_[0]->deadline_ - now;
  if (d <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::duration_cast<Millis>(d).count() + 1;
  return cap >= 0 && ms > cap ? cap : static_cast<int>(ms);
}

void TimerQueue::swap_at(size_t a, size_t b) {
  std::swap(heap_[a], heap_[b]);
  heap_[a]->index_ = a;
  heap_[b]->index_ = b;
}

void TimerQueue::sift_up(size_t i) {
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (heap_[p]->deadline_ <= heap_[i]->deadline_) break;
    swap_at(p, i);
    i = p;
  }
}

void TimerQueue::sift_down(size_t i) {
  size_t n = heap_.size();
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && heap_[l]->deadline_ < heap_[m]->deadline_) m = l;
    if (r < n && heap_[r]->deadline_ < heap_[m]->deadline_) m = r;
    if (m == i) break;
    swap_at(m, i);
    i = m;
  }
}

}  // namespace weir
