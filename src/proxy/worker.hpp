#pragma once
// A worker: one thread, one reactor, its own listening sockets (SO_REUSEPORT), client
// connections, upstream pools, balancers and counters. Nothing here is shared with other
// workers except the config snapshot (read-only) and ServerState (atomics).
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "balance/balancer.hpp"
#include "core/buffer_pool.hpp"
#include "core/reactor.hpp"
#include "http/parser.hpp"
#include "model/snapshot.hpp"
#include "proxy/filter.hpp"
#include "proxy/splice.hpp"
#include "proxy/stats.hpp"
#include "proxy/upstream_pool.hpp"

namespace weir::proxy {

// The proxy's vocabulary for the shared model (src/model).
using model::BackendId;
using model::BackendRuntime;
using model::ListenerRuntime;
using model::ServerId;
using model::ServerRuntime;
using model::Snapshot;
using model::SnapshotPtr;

class ClientConn;
class Exchange;
class ExchangePool;

// Requests of this worker waiting for a server slot of one backend, first come first served.
struct WaitQueue {
  Exchange* head = nullptr;
  Exchange* tail = nullptr;
};

// What a worker derives from a snapshot: its own balancer per backend and counter pointers.
struct WorkerView {
  std::vector<WaitQueue> queues;  // by backend index
  SnapshotPtr snap;
  std::vector<std::unique_ptr<balance::Balancer>> balancers;  // by backend index
  // by listener index × (backend index + 1); slot 0 = no backend
  std::vector<CodeCounts*> counters;
  http::Limits limits;
  std::vector<size_t> slot_listener;     // listen socket slot → listener index in snap
  std::vector<ListenerFilters> filters;  // by listener index
  CodeCounts* counts(size_t listener, int backend) const {
    return counters[listener * (snap->backends.size() + 1) + static_cast<size_t>(backend + 1)];
  }
  balance::Balancer& balancer(BackendId id) const { return *balancers[id.index()]; }
  WaitQueue& queue(BackendId id) { return queues[id.index()]; }
};
using ViewPtr = std::shared_ptr<WorkerView>;

// A listening socket of this worker; `slot` indexes the listen addresses of the process
// (stable across reloads), mapped to a listener of the current snapshot by WorkerView.
struct ListenSocket {
  int fd = -1;
  size_t slot = 0;
  std::string address;  // as SocketAddress::to_string() prints it
};

// Retries may add at most 20% to the requests this worker sends (plus a floor of 10 saved up),
// so that retries cannot multiply the load on a backend that is already failing.
class RetryBudget {
 public:
  void on_request() { tokens_ = tokens_ + 0.2 > kCap ? kCap : tokens_ + 0.2; }
  bool try_spend() {
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  static constexpr double kCap = 100;
  double tokens_ = 10;
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
  void update_snapshot(SnapshotPtr snap);
  void begin_drain(Millis deadline);
  void stop();
  void collect_stats(std::function<void(WorkerStats)> done);

  // For the worker's own connections.
  Reactor& reactor() { return reactor_; }
  const ViewPtr& view() const { return view_; }
  UpstreamPool& pool() { return pool_; }
  WorkerStats& stats() { return stats_; }
  std::span<http::Header> scratch_headers() { return scratch_headers_; }
  std::string& scratch_string() { return scratch_; }
  std::string& scratch_header() { return scratch_header_; }  // one extra header line
  BufferPool& buffers() { return buffers_; }
  RetryBudget& retry_budget() { return retry_budget_; }
  ExchangePool& exchanges() { return *exchanges_; }
  PipePool& pipes() { return pipes_; }
  unsigned index() const { return index_; }
  bool draining() const { return draining_; }
  // A new connection of this worker (accepted, or taking over another's socket).
  void add_connection(ClientConn* c);
  void connection_closed(ClientConn* c, size_t slot);
  // `to` continues `from`'s socket (ALPN h2, h2c): same place in the list, same gate count.
  void replace_connection(ClientConn* from, ClientConn* to);
  uint64_t random();

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
  WorkerStats stats_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<std::string> slot_addresses_;
  std::vector<std::shared_ptr<ListenerGate>> gates_;
  std::vector<http::Header> scratch_headers_;
  std::string scratch_;
  std::string scratch_header_;
  BufferPool buffers_;
  RetryBudget retry_budget_;
  std::unique_ptr<ExchangePool> exchanges_;
  PipePool pipes_;
  ClientConn* conns_ = nullptr;  // intrusive list of open client connections
  bool draining_ = false;
  Timer drain_timer_;
  Timer housekeeping_;  // gives memory back after a burst (housekeep())
  uint64_t rng_state_;
  std::thread thread_;
};

}  // namespace weir::proxy
