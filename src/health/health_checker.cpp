#include "health/health_checker.hpp"

#include <pthread.h>

#include "core/log.hpp"
#include "health/probe.hpp"

namespace weir::health {
namespace {

// `Host:` carries the configured host; an IPv6 literal goes in brackets (RFC 9110 7.2).
std::string host_header(const model::ServerRuntime& s) {
  std::string host;
  uint16_t port = 0;
  if (!net::split_host_port(s.address_text, host, port)) host = s.addr.ip_string();
  if (host.find(':') != std::string::npos) return "[" + host + "]";
  return host;
}

}  // namespace

HealthChecker::HealthChecker() : rng_(std::random_device{}()) {}

HealthChecker::~HealthChecker() {
  stop();
  // Never started: the probes (if any) were made on no thread but this one.
  probes_.clear();
  reactor_.run_deferred();
}

void HealthChecker::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "weir-health");
    reactor_.run();
    // run() has drained posted updates; close every socket here, on the reactor's thread.
    probes_.clear();
    reactor_.run_deferred();
  });
}

void HealthChecker::stop() {
  reactor_.stop();
  if (thread_.joinable()) thread_.join();
}

void HealthChecker::update(model::SnapshotPtr snap) {
  if (!snap) return;
  reactor_.post([this, snap = std::move(snap)] { reconcile(*snap); });
}

void HealthChecker::retire(std::unique_ptr<Probe> probe) {
  // Events for it may still be queued in this batch: delete after the batch.
  reactor_.defer([p = probe.release()] { delete p; });
}

void HealthChecker::reconcile(const model::Snapshot& snap) {
  std::unordered_map<model::ServerState*, std::unique_ptr<Probe>> next;
  size_t started = 0;
  for (const auto& b : snap.backends) {
    if (!b.cfg || !b.cfg->health_check) continue;
    for (const auto& s : b.servers) {
      ProbeTarget t{b.cfg->name,          s.name, s.addr,         host_header(s),
                    *b.cfg->health_check, s.tls,  b.cfg->protocol};
      auto it = probes_.find(s.state.get());
      if (it != probes_.end()) {
        it->second->reconfigure(std::move(t));
        next.emplace(s.state.get(), std::move(it->second));
        probes_.erase(it);
        continue;
      }
      if (next.count(s.state.get())) continue;  // the same state listed twice: one probe
      auto p = std::make_unique<Probe>(reactor_, rng_, std::move(t), s.state);
      p->start();
      next.emplace(s.state.get(), std::move(p));
      ++started;
    }
  }
  // What is left is no longer checked: its server is gone or its backend dropped health_check.
  // Either way it counts as up again (a server without a check is always up).
  for (auto& [state, probe] : probes_) {
    state->up.store(true, std::memory_order_relaxed);
    retire(std::move(probe));
  }
  size_t stopped = probes_.size();
  probes_ = std::move(next);
  if (started || stopped) {
    log::debug("health checks: {} running ({} started, {} stopped)", probes_.size(), started,
               stopped);
  }
}

}  // namespace weir::health
