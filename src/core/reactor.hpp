#pragma once
// One epoll reactor per worker thread. File descriptors are registered once, edge-triggered,
// for both directions; handlers keep their own readable/writable flags, so no epoll_ctl is
// needed per request. Objects that may be destroyed while events for them are still queued
// in the current batch are retired with defer(), which runs after the batch.
#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "core/clock.hpp"
#include "core/timer.hpp"

namespace weir {

class EventHandler {
 public:
  virtual ~EventHandler() = default;
  virtual void on_event(uint32_t events) = 0;
};

class Reactor {
 public:
  Reactor();
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Edge-triggered registration for EPOLLIN | EPOLLOUT | EPOLLRDHUP (or `events`).
  bool add(int fd, EventHandler* h, uint32_t events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
  bool modify(int fd, EventHandler* h, uint32_t events);
  void remove(int fd);

  // Runs until stop(). Each turn: wait, dispatch events, run deferred work, run timers.
  void run();
  // One turn, waiting at most `max_wait_ms` for events (tests and fuzzers drive the loop).
  void run_once(int max_wait_ms);
  void stop();  // thread-safe

  // Thread-safe: queues fn to run on the reactor's thread and wakes it.
  void post(std::function<void()> fn);
  // Same thread only: runs fn after the current batch of events.
  void defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }
  // Same thread only: runs fn on the next turn, after the next poll for events, so that a busy
  // connection yielding its turn lets every other ready connection go first.
  void yield(std::function<void()> fn) { yielded_.push_back(std::move(fn)); }
  // Runs deferred work now.
  void run_deferred();
  // After run() returned: yielded turns and deferred work until none is left (frees what
  // close() retired, so nothing is left unfreed at exit).
  void run_pending();

  TimerQueue& timers() { return timers_; }
  // The time at the start of the current turn: cheap, and the same for every event of a batch.
  TimePoint now() const { return now_; }
  TimePoint refresh_now() { return now_ = Clock::now(); }

 private:
  class Waker;
  void drain_posted();
  int epfd_ = -1;
  int wakefd_ = -1;
  std::atomic<bool> stopping_{false};
  TimerQueue timers_;
  TimePoint now_;
  std::vector<std::function<void()>> deferred_;
  std::vector<std::function<void()>> deferred_running_;  // kept to reuse its capacity
  std::vector<std::function<void()>> yielded_;
  std::vector<std::function<void()>> yielded_running_;
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::unique_ptr<EventHandler> waker_;
};

}  // namespace weir
