#pragma once
// The running load balancer: the current snapshot, the listening sockets, the workers and the
// admin listener. `weir run` builds one, the signal loop drives reload and drain.
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/snapshot.hpp"
#include "proxy/access_log.hpp"
#include "proxy/stats.hpp"
#include "proxy/worker.hpp"

namespace weir::admin {
class AdminServer;
}
namespace weir::health {
class HealthChecker;
}

namespace weir::app {

class Runtime {
 public:
  Runtime();
  ~Runtime();

  // Builds the snapshot, binds every socket, starts workers and admin. On failure prints the
  // reason and returns the exit code (1 config, 3 runtime); 0 on success.
  int start(config::ConfigPtr cfg);
  // Loads and validates `path`; swaps it in if good, else logs why and keeps the old one.
  bool reload(const std::string& path);
  // SIGUSR1: the access log files are opened again (after logrotate moved them).
  void reopen_logs();
  // Stops accepting, lets in-flight requests finish (up to the drain timeout), joins workers.
  void drain_and_stop();

  model::SnapshotPtr snapshot() const;
  // Sums every worker's counters (asks each worker on its own thread; waits up to 1 s).
  proxy::WorkerStats collect_stats() const;

 private:
  void start_ticket_rotation();
  void stop_ticket_rotation();

  // Before the workers: destroyed after them, so every line they handed over is written.
  std::unique_ptr<proxy::AccessLogWriter> access_log_;
  model::OpenAccessLog open_access_log();
  mutable std::mutex mu_;
  model::SnapshotPtr snap_;
  model::ServerRegistry registry_;
  std::vector<std::string> slot_addresses_;
  std::vector<std::unique_ptr<proxy::Worker>> workers_;
  std::unique_ptr<admin::AdminServer> admin_;
  std::unique_ptr<health::HealthChecker> health_;
  // TLS session-ticket keys are replaced every limits.tls_ticket_rotation.
  std::thread rotator_;
  std::mutex rotator_mu_;
  std::condition_variable rotator_cv_;
  bool rotator_stop_ = false;
};

}  // namespace weir::app
