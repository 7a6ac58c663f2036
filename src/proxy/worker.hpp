#pragma once
// A worker: one thread, one reactor, its own listening sockets (SO_REUSEPORT), client
// connections, upstream pools, balancers and counters. Nothing here is shared with other
// workers except the config snapshot (read-only) and ServerState (atomics).
#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "balance/balancer.hpp"
#include "core/buffer_pool.hpp"
#include "core/reactor.hpp"
#include "http/parser.hpp"
#include "model/snapshot.hpp"
#include "proxy/filter.hpp"
#include "proxy/splice.hpp"
#include "proxy/stats.hpp"
#include "proxy/upstream_h2.hpp"
#include "proxy/upstream_pool.hpp"

namespace weir::quic {
class Endpoint;
struct EndpointGroup;
}  // namespace weir::quic

namespace weir::proxy {

class BackgroundDownstream;

// The proxy's vocabulary for the shared model (src/model).
using model::BackendId;
using model::BackendRuntime;
using model::ListenerRuntime;
using model::ServerId;
using model::ServerRuntime;
using model::Snapshot;
using model::SnapshotPtr;

class AccessLogProducer;
class ClientConn;
class Exchange;
class ExchangePool;

// Requests of this worker waiting for a server slot of one backend, first come first served.
struct WaitQueue {
  Exchange* head = nullptr;
  Exchange* tail = nullptr;
};

// Retries that may have reached a server, per backend and worker (config::RetryBudget): each
// request earns percent/100 of a retry, a retry spends one; `min_retries` are there from the
// start and the bucket holds at most min_retries + percent (what 100 requests earn on top).
class RetryBudget {
 public:
  explicit RetryBudget(const config::RetryBudget& cfg = {})
      : per_request_(cfg.percent / 100.0),
        cap_(static_cast<double>(cfg.min_retries) + cfg.percent),
        tokens_(cfg.min_retries) {}
  void on_request() { tokens_ = tokens_ + per_request_ > cap_ ? cap_ : tokens_ + per_request_; }
  bool try_spend() {
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }
  // A reload keeps what was saved (within the new limits).
  void carry_from(const RetryBudget& old) { tokens_ = std::min(old.tokens_, cap_); }
  double tokens() const { return tokens_; }

 private:
  double per_request_;
  double cap_;
  double tokens_;
};

// What a worker derives from a snapshot: its own balancer per backend and counter pointers.
struct WorkerView {
  std::vector<WaitQueue> queues;  // by backend index
  SnapshotPtr snap;
  std::vector<std::unique_ptr<balance::Balancer>> balancers;  // by backend index
  std::vector<RetryBudget> budgets;                           // by backend index
  // by listener index × (backend index + 1); slot 0 = no backend
  std::vector<CodeCounts*> counters;
  http::Limits limits;
  std::vector<size_t> slot_listener;     // listen socket slot → listener index in snap
  std::vector<ListenerFilters> filters;  // by listener index
  bool sends_proxy_protocol = false;     // a backend has send_proxy_protocol: note local addresses
  CodeCounts* counts(size_t listener, int backend) const {
    return counters[listener * (snap->backends.size() + 1) + static_cast<size_t>(backend + 1)];
  }
  balance::Balancer& balancer(BackendId id) const { return *balancers[id.index()]; }
  WaitQueue& queue(BackendId id) { return queues[id.index()]; }
  RetryBudget& budget(BackendId id) { return budgets[id.index()]; }
};
using ViewPtr = std::shared_ptr<WorkerView>;

// A listening socket of this worker; `slot` indexes the listen addresses of the process
// (stable across reloads), mapped to a listener of the current snapshot by WorkerView.
struct ListenSocket {
  int fd = -1;
  size_t slot = 0;
  std::string address;  // as SocketAddress::to_string() prints it
  // UDP: the listener's HTTP/3 (QUIC) socket, served by a quic::Endpoint of this worker;
  // `quic` is shared by the endpoints of every worker for this address.
  std::shared_ptr<quic::EndpointGroup> quic;
};

// Open connections per listen address, across workers: beyond the listener's max_connections
// new ones wait in the kernel's accept queue.
struct ListenerGate {
  std::atomic<int64_t> open{0};
};

class Worker {
 public:
  // `slot_addresses[i]` is the address of listen slot i; `gates[i]` its connection gate.
  Worker(unsigned index, SnapshotPtr snap, std::vector<ListenSocket> sockets,
         std::vector<std::string> slot_addresses, std::vector<std::shared_ptr<ListenerGate>> gates);
  ~Worker();

  void start();
  void join();

  // Thread-safe entry points (they post to the worker's reactor).
  // `new_config`: a reload (HTTP/2 clients get GOAWAY to reconnect to it); false: the same
  // config with other servers or weights (runtime API, DNS discovery).
  void update_snapshot(SnapshotPtr snap, bool new_config = true);
  // Stops accepting; requests in flight have `deadline`, connections carrying a tunnel
  // `tunnel_deadline` (SIGTERM: the same; a binary upgrade: limits.tunnel_drain_timeout).
  // `upgrade`: a new process took over the listen sockets; HTTP/3 connections close at once
  // (their UDP port is shared with the new process, which would reset them anyway).
  void begin_drain(Millis deadline, Millis tunnel_deadline, bool upgrade = false);
  void stop();
  void collect_stats(std::function<void(WorkerStats)> done);

  // For the worker's own connections.
  Reactor& reactor() { return reactor_; }
  const ViewPtr& view() const { return view_; }
  // Where this worker's access log lines go (set before start(); null: no logging at all).
  void set_access_log(AccessLogProducer* p) { access_log_ = p; }
  AccessLogProducer* access_log() const { return access_log_; }
  const model::ListenerRuntime& listener_runtime(size_t slot) const {
    return view_->snap->listeners[view_->slot_listener[slot]];
  }
  UpstreamPool& pool() { return pool_; }
  H2Pool& h2pool() { return h2pool_; }
  WorkerStats& stats() { return stats_; }
  std::span<http::Header> scratch_headers() { return scratch_headers_; }
  std::string& scratch_string() { return scratch_; }
  std::string& scratch_header() { return scratch_header_; }  // one extra header line
  BufferPool& buffers() { return buffers_; }
  ExchangePool& exchanges() { return *exchanges_; }
  // Requests weir runs without a client (background.hpp): aborted when the worker goes.
  std::unordered_set<BackgroundDownstream*>& background() { return background_; }
  PipePool& pipes() { return pipes_; }
  unsigned index() const { return index_; }
  bool draining() const { return draining_; }
  // This worker's HTTP/3 endpoint of listen slot `slot` (null if none).
  quic::Endpoint* quic_endpoint(size_t slot) const;
  // QUIC connections count in their listener's max_connections with the TCP ones (the same
  // gate): false if the listener is full. Closed: a paused acceptor may resume, a drain end.
  bool quic_connection_opening(size_t slot);
  void quic_connection_closed(size_t slot);
  // A new connection of this worker (accepted, or taking over another's socket).
  void add_connection(ClientConn* c);
  void connection_closed(ClientConn* c, size_t slot);
  // `to` continues `from`'s socket (ALPN h2, h2c): same place in the list, same gate count.
  void replace_connection(ClientConn* from, ClientConn* to);
  uint64_t random();
  // A fresh request id: this worker's random 64-bit prefix (from getrandom at start, so unique
  // across workers and restarts), '-', its counter. Written into `out`.
  void next_request_id(std::string& out);

 private:
  class Acceptor;
  void install_view(SnapshotPtr snap);
  void maybe_finish_drain();
  void housekeep();
  void run();

  unsigned index_;
  Reactor reactor_;
  ViewPtr view_;
  UpstreamPool pool_;
  H2Pool h2pool_{*this};
  WorkerStats stats_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<std::unique_ptr<quic::Endpoint>> quic_;
  std::vector<std::string> slot_addresses_;
  std::vector<std::shared_ptr<ListenerGate>> gates_;
  std::vector<http::Header> scratch_headers_;
  std::string scratch_;
  std::string scratch_header_;
  BufferPool buffers_;
  std::unique_ptr<ExchangePool> exchanges_;
  std::unordered_set<BackgroundDownstream*> background_;
  PipePool pipes_;
  ClientConn* conns_ = nullptr;  // intrusive list of open client connections
  bool draining_ = false;
  Timer drain_timer_;
  TimePoint tunnel_deadline_{};  // draining: when connections carrying a tunnel close
  Timer housekeeping_;           // gives memory back after a burst (housekeep())
  AccessLogProducer* access_log_ = nullptr;
  uint64_t request_id_prefix_ = 0;
  uint64_t request_id_counter_ = 0;
  uint64_t rng_state_;
  std::thread thread_;
};

}  // namespace weir::proxy
