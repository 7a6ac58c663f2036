#include "core/reactor.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/log.hpp"

namespace weir {

class Reactor::Waker : public EventHandler {
 public:
  explicit Waker(Reactor& r) : r_(r) {}
  void on_event(uint32_t) override {
    uint64_t v;
    while (::read(r_.wakefd_, &v, sizeof v) > 0) {
    }
    r_.drain_posted();
  }

 private:
  Reactor& r_;
};

Reactor::Reactor() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || wakefd_ < 0) throw std::runtime_error(std::string("epoll: ") + strerror(errno));
  waker_ = std::make_unique<Waker>(*this);
  add(wakefd_, waker_.get(), EPOLLIN | EPOLLET);
  now_ = Clock::now();
}

Reactor::~Reactor() {
  if (wakefd_ >= 0) ::close(wakefd_);
  if (epfd_ >= 0) ::close(epfd_);
}

bool Reactor::add(int fd, EventHandler* h, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

bool Reactor::modify(int fd, EventHandler* h, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  return epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0;
}

void Reactor::remove(int fd) {
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

void Reactor::stop() {
  stopping_.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t r = ::write(wakefd_, &one, sizeof one);
  (void)r;
}

void Reactor::post(std::function<void()> fn) {
  {
    std::lock_guard lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t r = ::write(wakefd_, &one, sizeof one);
  (void)r;
}

void Reactor::drain_posted() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(posted_mu_);
    work.swap(posted_);
  }
  for (auto& fn : work)
    fn();
}

void Reactor::run() {
  while (!stopping_.load(std::memory_order_acquire))
    run_once(1000);
  drain_posted();
  run_pending();
}

void Reactor::run_once(int max_wait_ms) {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  int timeout = timers_.next_timeout_ms(Clock::now(), max_wait_ms);
  if (!deferred_.empty() || !yielded_.empty()) timeout = 0;
  yielded_running_.swap(yielded_);
  int n = epoll_wait(epfd_, events, kMaxEvents, timeout);
  if (n < 0 && errno != EINTR) {
    log::error("epoll_wait: {}", strerror(errno));
    stopping_.store(true, std::memory_order_release);
    return;
  }
  now_ = Clock::now();
  for (int i = 0; i < n; ++i) {
    static_cast<EventHandler*>(events[i].data.ptr)->on_event(events[i].events);
  }
  for (auto& fn : yielded_running_)
    fn();
  yielded_running_.clear();
  run_deferred();
  timers_.run_expired(now_);
}

void Reactor::run_deferred() {
  // Deferred work may defer more; run until quiet, swapping so callbacks can append.
  while (!deferred_.empty()) {
    deferred_running_.swap(deferred_);
    for (auto& fn : deferred_running_)
      fn();
    deferred_running_.clear();
  }
}

void Reactor::run_pending() {
  // At exit: yielded turns and deferred work, until none is left.
  while (!yielded_.empty() || !deferred_.empty()) {
    yielded_running_.swap(yielded_);
    for (auto& fn : yielded_running_)
      fn();
    yielded_running_.clear();
    run_deferred();
  }
}

}  // namespace weir
