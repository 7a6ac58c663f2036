#pragma once
// `announce:` (fleet.md): health-driven route announcement through a local BIRD. A thread of its
// own evaluates the condition (every listed backend has at least min_healthy servers taking new
// clients) from the current snapshot every 100 ms and, when BIRD's state differs from it, sends
// `enable NAME` / `disable NAME` for each configured protocol over BIRD's control socket; BIRD
// does the BGP. BIRD unreachable: one warning, retries with backoff, the state is applied again
// when it is back (a restarted BIRD starts from its config's defaults). Nothing else in weir
// waits for it, except drain_and_stop's bounded withdraw().
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "config/config.hpp"
#include "fleet/bird_client.hpp"
#include "model/snapshot.hpp"

namespace weir::fleet {

struct Verdict {
  bool healthy = false;
  bool known = true;   // false: it depends on servers not probed yet (BIRD is left as it is)
  std::string detail;  // "web: 2 of 2 healthy; api: 0 of 3 healthy, need 1"
};
// The announce condition over a snapshot: every backend in `a.backends` has at least
// `a.min_healthy` servers that take new clients (health checks, passive ejection, admin state)
// and, in a backend with a health_check, have passed a probe since weir started (while the
// answer depends on servers not probed yet, the verdict is not `known`).
Verdict evaluate(const config::Announce& a, const model::Snapshot& snap);

class Announcer {
 public:
  using SnapshotSource = std::function<model::SnapshotPtr()>;
  // Timings (the defaults; tests shorten them).
  struct Timing {
    std::chrono::milliseconds tick{100};         // how often the condition is evaluated
    std::chrono::milliseconds idle_tick{1000};   // ... while the config has no `announce`
    std::chrono::milliseconds io_timeout{1000};  // connect + greeting, and each command
    std::chrono::milliseconds first_retry{250};  // after a failure; doubles up to max_retry
    std::chrono::milliseconds max_retry{2000};
  };

  explicit Announcer(SnapshotSource source) : Announcer(std::move(source), Timing{}) {}
  Announcer(SnapshotSource source, Timing timing);
  ~Announcer();
  Announcer(const Announcer&) = delete;
  Announcer& operator=(const Announcer&) = delete;

  void start();
  // A new snapshot was installed: evaluate now (new settings take effect at once).
  void wake();
  // SIGTERM: when the config says withdraw_on_drain, disables the protocols and keeps them
  // disabled from now on; waits up to `wait` for BIRD to confirm. True when withdrawn.
  bool withdraw(std::chrono::milliseconds wait);
  // Stops the thread; BIRD is left as it is (a binary upgrade: the new process announces).
  // Idempotent.
  void stop();
  // The protocols are enabled in BIRD, as last confirmed by it (weir_announced).
  bool announced() const { return announced_.load(std::memory_order_relaxed); }

 private:
  void run();
  void step(std::unique_lock<std::mutex>& lock);
  // Sends enable/disable for every protocol; false on failure (logged).
  bool apply(const config::Announce& a, bool enable, const std::string& detail);
  void lost(const config::Announce& a, const std::string& why);

  SnapshotSource source_;
  Timing timing_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;          // wakes the thread
  std::condition_variable applied_cv_;  // withdraw() waits on it
  bool stop_ = false;
  bool woken_ = false;
  bool hold_down_ = false;  // withdrawn for the drain: never enable again
  std::atomic<bool> announced_{false};

  // The thread's own (read by withdraw() under mu_: applied_).
  std::optional<bool> applied_;  // what BIRD has as far as weir knows (nullopt: unknown)
  config::ConfigPtr cfg_;        // the config settings_ points into
  const config::Announce* settings_ = nullptr;  // the settings applied_ refers to
  BirdClient bird_;
  std::chrono::steady_clock::time_point retry_at_{};
  std::chrono::milliseconds backoff_{0};
  bool unreachable_logged_ = false;
  std::string refused_logged_;  // the last BIRD error logged (each logged once in a row)
};

}  // namespace weir::fleet
