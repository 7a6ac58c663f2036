#pragma once
// The running load balancer: the current snapshot, the listening sockets, the workers and the
// admin listener. `weir run` builds one, the signal loop drives reload and drain.
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "app/upgrade.hpp"
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
namespace weir::discovery {
class DnsDiscovery;
}
namespace weir::cluster {
class RedisSync;
}
namespace weir::fleet {
class Announcer;
}

namespace weir::quic {
struct EndpointGroup;
}

namespace weir::app {

class Runtime {
 public:
  Runtime();
  ~Runtime();

  // Builds the snapshot, binds every socket, starts workers and admin. On failure prints the
  // reason and returns the exit code (1 config, 3 runtime); 0 on success.
  // `inherited`: the listening sockets a binary upgrade handed over (used before binding).
  int start(config::ConfigPtr cfg, InheritedSockets* inherited = nullptr);
  // Loads and validates `path`; swaps it in if good, else logs why and keeps the old one.
  bool reload(const std::string& path);
  // Builds the snapshot again from the running config (a runtime weight change, a new set of
  // discovered servers) and installs it like a reload does. `why` is logged on failure.
  bool rebuild(std::string_view why);
  // SIGUSR1: the access log files are opened again (after logrotate moved them).
  void reopen_logs();
  // Stops accepting, lets in-flight requests finish (up to the drain timeout), joins workers.
  // `upgrade`: a new process took over: the admin listener stops at once, and connections
  // carrying tunnels may stay up to limits.tunnel_drain_timeout.
  void drain_and_stop(bool upgrade = false);
  // Every listening socket (each worker's, and the admin's), for a binary upgrade.
  std::vector<HandedSocket> listening_sockets() const { return listening_; }

  model::SnapshotPtr snapshot() const;
  // Sums every worker's counters (asks each worker on its own thread; waits up to 1 s).
  proxy::WorkerStats collect_stats() const;

 private:
  void start_ticket_rotation();
  void stop_ticket_rotation();

  // Before the workers: destroyed after them, so every line they handed over is written.
  std::unique_ptr<proxy::AccessLogWriter> access_log_;
  model::OpenAccessLog open_access_log();
  // Installs a built snapshot in the workers and the health checker (reload, rebuild).
  void install(model::SnapshotPtr snap, bool new_config);
  mutable std::mutex mu_;
  // Serializes building and installing snapshots (SIGHUP on the main thread, runtime API
  // changes on the admin thread, DNS answers on the discovery thread).
  std::mutex build_mu_;
  model::SnapshotPtr snap_;
  model::ServerRegistry registry_;
  std::vector<std::string> slot_addresses_;
  // HTTP/3 listen slots and what their endpoints share.
  std::vector<std::pair<size_t, std::shared_ptr<quic::EndpointGroup>>> quic_groups_;
  std::vector<HandedSocket> listening_;
  std::atomic<bool> draining_{false};  // /healthz says 503
  std::vector<std::unique_ptr<proxy::Worker>> workers_;
  std::unique_ptr<admin::AdminServer> admin_;
  std::unique_ptr<health::HealthChecker> health_;
  // `resolve:` / `discovery.srv` lookups (src/discovery/): its table feeds build_snapshot, its
  // changes call rebuild(). Stopped first on the way out.
  std::unique_ptr<discovery::DnsDiscovery> discovery_;
  // `announce:` (src/fleet/): enables/disables BIRD protocols from backend health; withdraws
  // first on SIGTERM.
  std::unique_ptr<fleet::Announcer> announcer_;
  // `cluster:` (src/cluster/): merges `shared: true` client limits through Redis every
  // sync_interval on its own thread; told of every snapshot.
  std::unique_ptr<cluster::RedisSync> cluster_;
  // TLS session-ticket keys are replaced every limits.tls_ticket_rotation.
  std::thread rotator_;
  std::mutex rotator_mu_;
  std::condition_variable rotator_cv_;
  bool rotator_stop_ = false;
};

}  // namespace weir::app
