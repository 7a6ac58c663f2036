#pragma once
// Active health checks for the whole process: one thread with its own reactor runs one probe
// per checked server (not one per worker) and publishes the verdict through the shared
// ServerState::up that every worker's balancer reads.
#include <memory>
#include <random>
#include <thread>
#include <unordered_map>

#include "core/reactor.hpp"
#include "model/snapshot.hpp"

namespace weir::health {

class Probe;

class HealthChecker {
 public:
  HealthChecker();
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts the thread. update() may come before or after.
  void start();
  // Stops the thread and closes every probe socket. Idempotent; no restart afterwards.
  void stop();
  // Thread-safe. Call at start and after every reload: probes are keyed by ServerState, so a
  // server present in both snapshots keeps its counters and state; probes of servers that are
  // gone, or whose backend no longer has a health_check, stop and leave the server up.
  void update(model::SnapshotPtr snap);

 private:
  void reconcile(const model::Snapshot& snap);  // on the checker's thread
  void retire(std::unique_ptr<Probe> probe);

  Reactor reactor_;
  std::thread thread_;
  std::mt19937_64 rng_;
  std::unordered_map<model::ServerState*, std::unique_ptr<Probe>> probes_;
};

}  // namespace weir::health
