#include "fleet/announce.hpp"

#include <algorithm>

#include "core/log.hpp"

namespace weir::fleet {
namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

Verdict evaluate(const config::Announce& a, const model::Snapshot& snap) {
  Verdict v;
  v.healthy = true;
  bool unknown = false;
  for (const std::string& name : a.backends) {
    auto it = std::find_if(snap.backends.begin(), snap.backends.end(),
                           [&](const model::BackendRuntime& b) { return b.cfg->name == name; });
    if (!v.detail.empty()) v.detail += "; ";
    if (it == snap.backends.end()) {  // the loader refuses this; a snapshot cannot have it
      v.healthy = false;
      v.detail += name + ": no such backend";
      continue;
    }
    // With a health_check, a server counts once it passed a probe; one not probed yet (weir just
    // started, or a binary upgrade's new process) leaves the verdict open rather than false, so
    // that a new process neither announces unseen backends nor withdraws what its predecessor
    // announced before it knows.
    bool checked = it->cfg->health_check.has_value();
    size_t up = 0;
    size_t pending = 0;
    for (const model::ServerRuntime& s : it->servers) {
      if (!s.state->takes_new()) continue;
      if (!checked || s.state->probes_passed.load(std::memory_order_relaxed) > 0) {
        ++up;
      } else if (s.state->probes_failed.load(std::memory_order_relaxed) == 0) {
        ++pending;
      }
    }
    v.detail += fmt::format("{}: {} of {} healthy", name, up, it->servers.size());
    if (up < a.min_healthy) {
      v.detail += fmt::format(", need {}", a.min_healthy);
      if (up + pending >= a.min_healthy) {
        unknown = true;
        v.detail += fmt::format(" ({} not checked yet)", pending);
      } else {
        v.healthy = false;
      }
    }
  }
  if (v.healthy && unknown) {
    v.healthy = false;
    v.known = false;
  }
  return v;
}

Announcer::Announcer(SnapshotSource source, Timing timing)
    : source_(std::move(source)), timing_(timing) {}

Announcer::~Announcer() {
  stop();
}

void Announcer::start() {
  thread_ = std::thread([this] { run(); });
}

void Announcer::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void Announcer::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  applied_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Announcer::withdraw(std::chrono::milliseconds wait) {
  model::SnapshotPtr snap = source_();
  if (!snap || !snap->config->announce) return false;
  const config::Announce& a = *snap->config->announce;
  if (!a.withdraw_on_drain) {
    log::info("announce: withdraw_on_drain is off; {} left as {}", join(a.protocols),
              announced() ? "enabled" : "they are");
    return false;
  }
  std::unique_lock lock(mu_);
  if (stop_ || !thread_.joinable()) return false;
  hold_down_ = true;
  woken_ = true;
  cv_.notify_all();
  log::info("announce: withdrawing {} before draining", join(a.protocols));
  bool done = applied_cv_.wait_for(lock, wait, [&] { return stop_ || applied_ == false; }) &&
              applied_ == false;
  if (!done) {
    log::warn("announce: {} not withdrawn within {} ms (BIRD did not confirm); draining anyway",
              join(a.protocols), wait.count());
  }
  return done;
}

void Announcer::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    step(lock);
    if (stop_) break;
    auto tick = settings_ != nullptr ? timing_.tick : timing_.idle_tick;
    cv_.wait_for(lock, tick, [&] { return stop_ || woken_; });
    woken_ = false;
  }
}

void Announcer::lost(const config::Announce& a, const std::string& why) {
  bird_.close();
  {
    std::lock_guard lock(mu_);
    applied_.reset();  // a BIRD that comes back may hold anything: apply again
  }
  announced_.store(false, std::memory_order_relaxed);
  if (!unreachable_logged_) {
    log::warn("announce: BIRD at {} unreachable: {}; retrying (serving is not affected)",
              a.bird_socket, why);
    unreachable_logged_ = true;
  }
  backoff_ =
      backoff_.count() == 0 ? timing_.first_retry : std::min(backoff_ * 2, timing_.max_retry);
  retry_at_ = std::chrono::steady_clock::now() + backoff_;
}

// One evaluation, with mu_ held on entry and exit (released around the snapshot and BIRD).
void Announcer::step(std::unique_lock<std::mutex>& lock) {
  bool hold = hold_down_;
  bool urgent = hold && applied_ != false;
  lock.unlock();
  model::SnapshotPtr snap = source_();
  const config::Announce* a = snap && snap->config->announce ? &*snap->config->announce : nullptr;
  if (a == nullptr) {
    if (settings_ != nullptr) {
      log::info("announce: no longer configured; BIRD's protocols are left as they are");
      bird_.close();
      announced_.store(false, std::memory_order_relaxed);
    }
    cfg_.reset();
    settings_ = nullptr;
    lock.lock();
    applied_.reset();
    return;
  }
  if (snap->config != cfg_) {
    if (settings_ == nullptr || settings_->bird_socket != a->bird_socket ||
        settings_->protocols != a->protocols) {
      // A new socket or protocol list (start, reload): apply the state to it from scratch.
      bird_.close();
      {
        std::lock_guard l(mu_);
        applied_.reset();
      }
      announced_.store(false, std::memory_order_relaxed);
      retry_at_ = {};
      backoff_ = std::chrono::milliseconds{0};
      unreachable_logged_ = false;
    }
    cfg_ = snap->config;
    settings_ = a;
  }
  Verdict v = hold ? Verdict{false, true, "draining"} : evaluate(*a, *snap);
  std::string why;
  if (bird_.connected() && !bird_.check_alive(why)) lost(*a, why);
  if (v.known && applied_ != v.healthy &&
      (urgent || std::chrono::steady_clock::now() >= retry_at_)) {
    bool ok = false;
    if (!bird_.connected()) {
      why = bird_.connect(a->bird_socket, timing_.io_timeout);
      if (!why.empty()) {
        lost(*a, why);
      } else if (unreachable_logged_) {
        log::info("announce: BIRD at {} reachable again", a->bird_socket);
        unreachable_logged_ = false;
      }
    }
    if (bird_.connected()) ok = apply(*a, v.healthy, v.detail);
    if (ok) {
      backoff_ = std::chrono::milliseconds{0};
      announced_.store(v.healthy, std::memory_order_relaxed);
      lock.lock();
      applied_ = v.healthy;
      applied_cv_.notify_all();
      return;
    }
  }
  lock.lock();
}

bool Announcer::apply(const config::Announce& a, bool enable, const std::string& detail) {
  for (const std::string& proto : a.protocols) {
    std::string line = (enable ? "enable " : "disable ") + proto;
    BirdReply reply;
    std::string why;
    if (!bird_.command(line, timing_.io_timeout, reply, why)) {
      lost(a, why);
      return false;
    }
    if (!reply.ok()) {
      // A protocol BIRD does not know, access denied: retried (BIRD may be reconfigured), one
      // warning per distinct answer.
      std::string text = "\"" + line + "\": " + reply.error;
      if (text != refused_logged_) {
        log::warn("announce: BIRD at {} refused {}; retrying", a.bird_socket, text);
        refused_logged_ = text;
      }
      backoff_ =
          backoff_.count() == 0 ? timing_.first_retry : std::min(backoff_ * 2, timing_.max_retry);
      retry_at_ = std::chrono::steady_clock::now() + backoff_;
      return false;
    }
  }
  refused_logged_.clear();
  log::info("announce: {} {} ({})", join(a.protocols), enable ? "enabled" : "disabled", detail);
  return true;
}

}  // namespace weir::fleet
