#pragma once
// The admin listener: /healthz, /metrics (Prometheus text), /api/v1/backends (JSON).
// Runs on a thread of its own with its own reactor, so a slow scrape never touches a worker.
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "core/reactor.hpp"
#include "model/snapshot.hpp"
#include "proxy/stats.hpp"

namespace weir::server {
class HttpServer;
}

namespace weir::admin {

struct AdminSource {
  std::function<model::SnapshotPtr()> snapshot;
  std::function<proxy::WorkerStats()> stats;
};

class AdminServer {
 public:
  AdminServer(int listen_fd, AdminSource source);
  ~AdminServer();
  void start();
  void stop();

 private:
  Reactor reactor_;
  AdminSource source_;
  std::unique_ptr<server::HttpServer> http_;
  std::thread thread_;
};

// The bodies, exposed for unit tests.
std::string render_metrics(const model::Snapshot& snap, const proxy::WorkerStats& stats);
std::string render_backends_json(const model::Snapshot& snap, const proxy::WorkerStats& stats);

}  // namespace weir::admin
