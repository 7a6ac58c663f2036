#pragma once
// Per-worker counters. Only the owning worker thread touches them; the admin thread asks each
// worker for a copy (a task posted to its reactor) and sums the copies, so counting a request
// is a plain increment with no lock and no shared cache line.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace weir::proxy {

struct CodeCounts {
  std::array<uint64_t, 500> by_status{};  // index = status - 100
  // gRPC requests whose gRPC status is known, by (HTTP status, gRPC status): a short list, as a
  // backend sees a handful of combinations.
  struct Grpc {
    uint16_t status;
    uint8_t grpc;
    uint64_t count;
  };
  std::vector<Grpc> grpc;
  void add(uint16_t status) {
    if (status >= 100 && status < 600) ++by_status[status - 100];
  }
  void add_grpc(uint16_t status, uint8_t grpc_status, uint64_t n = 1) {
    for (auto& g : grpc) {
      if (g.status == status && g.grpc == grpc_status) {
        g.count += n;
        return;
      }
    }
    if (grpc.size() < 256) grpc.push_back({status, grpc_status, n});
  }
};

constexpr std::array<double, 12> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                    0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

struct LatencyHistogram {
  std::array<uint64_t, kLatencyBuckets.size() + 1> counts{};  // last = +Inf
  double sum = 0;
  uint64_t count = 0;
  static size_t bucket(double seconds) {
    size_t i = 0;
    while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i])
      ++i;
    return i;
  }
  void observe(double seconds) { observe_in(bucket(seconds), seconds); }
  // `i` = bucket(seconds), found once for several histograms.
  void observe_in(size_t i, double seconds) {
    ++counts[i];
    sum += seconds;
    ++count;
  }
  void merge(const LatencyHistogram& o) {
    for (size_t i = 0; i < counts.size(); ++i)
      counts[i] += o.counts[i];
    sum += o.sum;
    count += o.count;
  }
};

// What the dashboard and /api/v1/backends show per server.
struct ServerCounts {
  uint64_t requests = 0;     // tries sent to it (weir_server_requests_total)
  uint64_t errors = 0;       // requests it was the last try of that ended 5xx (its or weir's)
  LatencyHistogram latency;  // requests it was the last try of: head to response end
  void merge(const ServerCounts& o) {
    requests += o.requests;
    errors += o.errors;
    latency.merge(o.latency);
  }
};

struct WorkerStats {
  // (listener, backend) → counts by status; backend "" for requests answered without one.
  // std::map: nodes never move, so a worker caches pointers to them per snapshot.
  std::map<std::pair<std::string, std::string>, CodeCounts> requests;
  std::vector<ServerCounts> servers;  // by ServerRuntime::uid
  ServerCounts& server(uint32_t uid) {
    if (servers.size() <= uid) servers.resize(uid + 1);
    return servers[uid];
  }
  LatencyHistogram latency;
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t upstream_connects = 0;
  uint64_t upstream_reuses = 0;
  uint64_t parse_errors = 0;
  uint64_t tls_handshake_failures = 0;
  uint64_t h2_connections = 0;  // connections that chose HTTP/2 (ALPN h2 or h2c)
  uint64_t h2_abuse = 0;        // HTTP/2 connections closed for flooding (GOAWAY calm down)
  // HTTP/3 over QUIC (src/quic/)
  uint64_t h3_connections = 0;            // QUIC connections given state
  int64_t quic_open = 0;                  // open now (closing periods included)
  uint64_t quic_retries = 0;              // Retry packets sent (address validation)
  uint64_t quic_stateless_resets = 0;     // Stateless Reset packets sent
  uint64_t quic_version_negotiations = 0; // Version Negotiation packets sent
  uint64_t quic_dropped = 0;              // datagrams dropped: malformed, unknown, refused, over limits
  uint64_t quic_send_errors = 0;          // packets the socket did not take (full buffer)
  uint64_t h3_abuse = 0;                  // HTTP/3 connections closed for rapid reset
  uint64_t quic_forwarded = 0;            // datagrams handed to the worker owning their connection
  // Retries: of requests no server saw (connect failed, a reused connection closed first),
  // bounded by `retries` alone; of requests a server may have seen, also by the retry budget;
  // and those the budget refused.
  // Requests whose client went away first (closed, reset its stream, cut its body): by what
  // weir was doing then. Counted as code 499 in `requests` (NGINX's "client closed request")
  // unless the response head had reached the client (then its status).
  uint64_t client_closed_request = 0;   // while the request body was still coming
  uint64_t client_closed_waiting = 0;   // waiting for a server slot or the response head
  uint64_t client_closed_response = 0;  // while the response body was going down
  uint64_t retries_unseen = 0;
  uint64_t retries_resent = 0;
  uint64_t retries_refused_by_budget = 0;
  // weir_refused_total: (listener, reason) → clients refused (access, connections, rate,
  // proxy_protocol).
  std::map<std::pair<std::string, std::string>, uint64_t> refused;
  uint64_t access_log_dropped = 0;  // process-wide (the log writer's), set when collected
  uint64_t access_log_written = 0;
  uint64_t announced = 0;  // process-wide: `announce` protocols enabled in BIRD (1) or not (0)
  int cluster_up = -1;     // process-wide: `cluster` Redis synced (1) or not (0); -1 = no cluster
  uint64_t buffers_in_use = 0;      // buffer blocks held, summed over workers when collected
  uint64_t buffer_block_bytes = 0;  // the size of one block

  void merge(const WorkerStats& o);
};

}  // namespace weir::proxy
