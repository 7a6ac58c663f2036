#pragma once
// The admin listener: /healthz, /metrics (Prometheus text), /api/v1/backends (JSON), the runtime
// API (server state and weight, cache purge; behind admin.token_file) and the dashboard (GET /).
// Runs on a thread of its own with its own reactor, so a slow scrape never touches a worker.
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "core/reactor.hpp"
#include "model/snapshot.hpp"
#include "proxy/stats.hpp"
#include "server/http_server.hpp"

namespace weir::admin {

struct AdminSource {
  std::function<model::SnapshotPtr()> snapshot;
  std::function<proxy::WorkerStats()> stats;
  // Builds the snapshot again from the running config (a weight set through the API).
  std::function<bool(std::string_view why)> rebuild;
  // True once SIGTERM began the drain: /healthz answers 503 (a fleet's checker moves away).
  std::function<bool()> draining;
};

class AdminServer {
 public:
  AdminServer(int listen_fd, AdminSource source, server::ServerOptions options = {});
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
std::string render_server_json(const model::ServerRuntime& s, const proxy::WorkerStats& stats);
std::string escape_json(std::string_view v);

// The write endpoints (api.cpp). Each checks the bearer token first: without admin.token_file
// they answer 404, with a wrong or missing token 401, and change nothing.
// POST /api/v1/backends/{backend}/servers/{server} {"state": ..., "weight": N}
server::Response set_server(const model::Snapshot& snap, const server::Request& r,
                            const AdminSource& source);
// POST /api/v1/caches/{name}/purge {"path": "/a.css"} or {"prefix": "/assets/"}
server::Response purge_cache(const model::Snapshot& snap, const server::Request& r);

}  // namespace weir::admin
