#include "proxy/worker.hpp"

#include "proxy/background.hpp"

#include <malloc.h>
#include <sys/random.h>
#include <unistd.h>

#include <sys/socket.h>
#include <cstdio>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/log.hpp"
#include "net/address.hpp"
#include "net/socket.hpp"
#include "proxy/admission.hpp"
#include "proxy/exchange.hpp"
#include "proxy/h1_connection.hpp"
#include "proxy/prelude.hpp"
#include "proxy/tcp_connection.hpp"
#include "quic/endpoint.hpp"

namespace weir::proxy {

// Accepts on one listening socket of this worker. Edge-triggered: accepts until EAGAIN, or until
// the listener's max_connections is reached, in which case it resumes when a connection closes.
class Worker::Acceptor final : public EventHandler {
 public:
  Acceptor(Worker& w, ListenSocket s) : w_(w), sock_(std::move(s)) {}
  ~Acceptor() override { net::close_fd(sock_.fd); }

  void on_event(uint32_t) override { accept_all(); }

  void accept_all() {
    if (sock_.fd < 0) return;
    const auto& snap = *w_.view_->snap;
    const auto& lr = snap.listeners[w_.view_->slot_listener[sock_.slot]];
    const auto& lc = *lr.cfg;
    auto& gate = *w_.gates_[sock_.slot];
    paused_ = false;
    for (int i = 0; i < 1024; ++i) {
      if (gate.open.load(std::memory_order_relaxed) >= static_cast<int64_t>(lc.max_connections)) {
        paused_ = true;
        return;
      }
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      int fd = ::accept4(sock_.fd, reinterpret_cast<sockaddr*>(&peer), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          log::warn("accept on {}: {}", sock_.address, strerror(errno));
        }
        return;
      }
      ClientOrigin origin;
      origin.addr = net::PeerAddress::from(peer);
      origin.slot = sock_.slot;
      if (w_.view_->sends_proxy_protocol) {
        sockaddr_storage local{};
        socklen_t local_len = sizeof local;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) == 0)
          origin.extra().local = net::PeerAddress::from(local);
      }
      ClientConn* c;
      if (needs_prelude(lc)) {
        // The client is known (PROXY header) or the route is (SNI) only after its first bytes.
        c = new Prelude(w_, fd, std::move(origin));
      } else if (admit_connection(w_, lr, origin) != Refusal::None &&
                 lc.mode == config::ListenerMode::Tcp) {
        net::close_fd(fd);  // layer 4 has nothing to say but closing
        continue;
      } else if (lc.mode == config::ListenerMode::Tcp) {
        c = new TcpConnection(w_, fd, std::move(origin));
      } else {
        c = new H1Connection(w_, fd, std::move(origin));
      }
      gate.open.fetch_add(1, std::memory_order_relaxed);
      ++w_.stats_.connections_accepted;
      ++w_.stats_.connections_open;
      w_.add_connection(c);
      c->start();
    }
    // Still more to accept: come back after this batch instead of starving other events.
    w_.reactor_.defer([this] { accept_all(); });
  }

  void stop() {
    if (sock_.fd >= 0) {
      w_.reactor_.remove(sock_.fd);
      net::close_fd(sock_.fd);
      sock_.fd = -1;
    }
  }
  int fd() const { return sock_.fd; }
  bool paused() const { return paused_; }
  size_t slot() const { return sock_.slot; }

 private:
  Worker& w_;
  ListenSocket sock_;
  bool paused_ = false;
};

Worker::Worker(unsigned index, SnapshotPtr snap, std::vector<ListenSocket> sockets,
               std::vector<std::string> slot_addresses,
               std::vector<std::shared_ptr<ListenerGate>> gates)
    : index_(index),
      pool_(*this),
      slot_addresses_(std::move(slot_addresses)),
      gates_(std::move(gates)),
      exchanges_(std::make_unique<ExchangePool>(*this)) {
  rng_state_ = 0x9E3779B97F4A7C15ull * (index + 1) ^
               static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  if (::getrandom(&request_id_prefix_, sizeof request_id_prefix_, 0) !=
      static_cast<ssize_t>(sizeof request_id_prefix_)) {
    request_id_prefix_ = rng_state_ ^ static_cast<uint64_t>(::getpid()) << 32;
  }
  install_view(std::move(snap));
  for (auto& s : sockets) {
    if (s.quic) {
      quic_.push_back(std::make_unique<quic::Endpoint>(*this, s.fd, s.slot, s.address, s.quic));
    } else {
      acceptors_.push_back(std::make_unique<Acceptor>(*this, std::move(s)));
    }
  }
  drain_timer_.set_callback([this] {
    // First the requests' deadline: what carries a tunnel may stay until its own.
    bool tunnels_only = reactor_.now() < tunnel_deadline_;
    size_t closed = 0, kept = 0;
    for (ClientConn* c = conns_; c;) {
      ClientConn* next = c->next;
      if (tunnels_only && c->holds_tunnel()) {
        ++kept;
      } else {
        ++closed;
        c->close();
      }
      c = next;
    }
    for (auto& q : quic_) {
      closed += q->connections();
      q->close_all();
    }
    if (closed)
      log::warn("worker {}: drain deadline reached, closed {} connection{}", index_, closed,
                closed == 1 ? "" : "s");
    if (kept) {
      log::info("worker {}: {} tunnel{} kept open until they end or the tunnel drain timeout",
                index_, kept, kept == 1 ? "" : "s");
      drain_timer_.arm(reactor_.timers(), tunnel_deadline_);
    }
    maybe_finish_drain();
  });
}

Worker::~Worker() {
  join();
  acceptors_.clear();
  quic_.clear();
  while (conns_)
    conns_->close();
  abort_background(*this);
  pool_.close_all();
  h2pool_.close_all();
  reactor_.run_pending();
}

uint64_t Worker::random() {
  // xorshift64*: per-worker, lock-free, good enough for balancing draws.
  rng_state_ ^= rng_state_ >> 12;
  rng_state_ ^= rng_state_ << 25;
  rng_state_ ^= rng_state_ >> 27;
  return rng_state_ * 0x2545F4914F6CDD1Dull;
}

void Worker::next_request_id(std::string& out) {
  char buf[48];
  int n = std::snprintf(buf, sizeof buf, "%016llx-%llx",
                        static_cast<unsigned long long>(request_id_prefix_),
                        static_cast<unsigned long long>(++request_id_counter_));
  out.assign(buf, static_cast<size_t>(n));
}

void Worker::install_view(SnapshotPtr snap) {
  auto v = std::make_shared<WorkerView>();
  v->snap = std::move(snap);
  const auto& cfg = *v->snap->config;
  v->limits.max_request_line = cfg.limits.max_request_line;
  v->limits.max_head_bytes = cfg.limits.max_header_bytes;
  v->limits.max_headers = cfg.limits.max_headers;
  scratch_headers_.resize(cfg.limits.max_headers);
  // Every connection buffer is one block: big enough for a whole head, at least buffer_size.
  buffers_.set_block_size(std::max<size_t>(cfg.limits.buffer_size, cfg.limits.max_header_bytes));
  pool_.set_limits(cfg.limits.max_idle_upstream_per_server, cfg.limits.upstream_idle_timeout);
  h2pool_.set_limits(cfg.limits.max_idle_upstream_per_server, cfg.limits.upstream_idle_timeout);
  v->queues.resize(v->snap->backends.size());
  for (const auto& l : v->snap->listeners)
    v->filters.push_back(build_filters(*l.cfg));
  for (const auto& b : v->snap->backends) {
    if (b.cfg->send_proxy_protocol != config::ProxyProtocolVersion::Off)
      v->sends_proxy_protocol = true;
    v->balancers.push_back(balance::make_balancer(
        b.cfg->balance, b.infos, random(), {.hash_balance_factor = b.cfg->hash_balance_factor}));
    RetryBudget& budget = v->budgets.emplace_back(b.cfg->retry_budget);
    if (view_) {
      for (size_t i = 0; i < view_->snap->backends.size(); ++i) {
        if (view_->snap->backends[i].cfg->name == b.cfg->name) budget.carry_from(view_->budgets[i]);
      }
    }
  }
  // Map each listen slot to the listener that now owns its address (the caller checked that
  // every slot still has one).
  v->slot_listener.assign(slot_addresses_.size(), 0);
  for (size_t slot = 0; slot < slot_addresses_.size(); ++slot) {
    for (size_t l = 0; l < v->snap->listeners.size(); ++l) {
      for (const auto& a : v->snap->listeners[l].addrs) {
        if (a.to_string() == slot_addresses_[slot]) v->slot_listener[slot] = l;
      }
    }
  }
  size_t nb = v->snap->backends.size() + 1;
  v->counters.resize(v->snap->listeners.size() * nb);
  for (size_t l = 0; l < v->snap->listeners.size(); ++l) {
    const std::string& lname = v->snap->listeners[l].cfg->name;
    v->counters[l * nb] = &stats_.requests[{lname, ""}];
    for (size_t b = 0; b < v->snap->backends.size(); ++b) {
      v->counters[l * nb + b + 1] = &stats_.requests[{lname, v->snap->backends[b].cfg->name}];
    }
  }
  view_ = std::move(v);
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

// Every half second: once a burst is over (far fewer buffer blocks in use than at its peak),
// cached blocks and exchanges beyond a few are freed and the heap's free pages go back to the
// kernel. Never under steady load, where that would only make the next requests fault the
// same pages in again.
void Worker::housekeep() {
  if (buffers_.shrink_after_burst(64, 8)) {
    exchanges_->trim(16);
    pipes_.trim(2);
    ::malloc_trim(0);
  }
  housekeeping_.arm(reactor_.timers(), reactor_.now() + Millis(500));
}

void Worker::run() {
  housekeeping_.set_callback([this] { housekeep(); });
  housekeeping_.arm(reactor_.timers(), reactor_.now() + Millis(500));
  for (auto& a : acceptors_) {
    reactor_.add(a->fd(), a.get(), EPOLLIN | EPOLLET);
    a->accept_all();
  }
  for (auto& q : quic_)
    q->start();
  reactor_.run();
  housekeeping_.cancel();
  // Stopped: close what is left.
  for (auto& a : acceptors_)
    a->stop();
  for (auto& q : quic_) {
    q->close_all();
    q->stop();
  }
  while (conns_)
    conns_->close();
  pool_.close_all();
  h2pool_.close_all();
  reactor_.run_pending();  // frees what close() retired
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::update_snapshot(SnapshotPtr snap, bool new_config) {
  reactor_.post([this, snap = std::move(snap), new_config]() mutable {
    install_view(std::move(snap));
    if (!new_config) return;
    for (auto& q : quic_)
      q->on_new_config();
    // HTTP/2 connections are told to go (GOAWAY): their clients reconnect to the new config.
    for (ClientConn* c = conns_; c;) {
      ClientConn* next = c->next;
      c->on_new_config();
      c = next;
    }
  });
}

void Worker::stop() {
  reactor_.stop();
}

void Worker::begin_drain(Millis deadline, Millis tunnel_deadline, bool upgrade) {
  reactor_.post([this, deadline, tunnel_deadline, upgrade] {
    if (draining_) return;
    draining_ = true;
    for (auto& a : acceptors_)
      a->stop();
    for (auto& q : quic_) {
      q->begin_drain();
      if (upgrade) {
        q->close_all();
        q->stop();
      }
    }
    pool_.close_all();
    h2pool_.close_idle();  // the others close once their last stream ends
    for (ClientConn* c = conns_; c;) {
      ClientConn* next = c->next;
      c->begin_drain();
      c = next;
    }
    tunnel_deadline_ = reactor_.now() + std::max(deadline, tunnel_deadline);
    drain_timer_.arm(reactor_.timers(), reactor_.now() + deadline);
    maybe_finish_drain();
  });
}

quic::Endpoint* Worker::quic_endpoint(size_t slot) const {
  for (const auto& q : quic_)
    if (q->slot() == slot) return q.get();
  return nullptr;
}

bool Worker::quic_connection_opening(size_t slot) {
  const auto& lc = *listener_runtime(slot).cfg;
  auto& gate = *gates_[slot];
  if (gate.open.load(std::memory_order_relaxed) >= static_cast<int64_t>(lc.max_connections))
    return false;
  gate.open.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Worker::quic_connection_closed(size_t slot) {
  gates_[slot]->open.fetch_sub(1, std::memory_order_relaxed);
  for (auto& a : acceptors_) {
    if (a->paused() && a->slot() == slot) {
      reactor_.defer([acc = a.get()] { acc->accept_all(); });
    }
  }
  if (draining_) reactor_.defer([this] { maybe_finish_drain(); });
}

void Worker::maybe_finish_drain() {
  size_t quic_open = 0;
  for (const auto& q : quic_)
    quic_open += q->connections();
  if (draining_ && !conns_ && quic_open == 0) {
    drain_timer_.cancel();
    reactor_.stop();
  }
}

void Worker::collect_stats(std::function<void(WorkerStats)> done) {
  reactor_.post([this, done = std::move(done)] {
    stats_.buffers_in_use = buffers_.in_use();
    stats_.buffer_block_bytes = buffers_.block_size();
    done(stats_);
  });
}

void Worker::add_connection(ClientConn* c) {
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
}

void Worker::replace_connection(ClientConn* from, ClientConn* to) {
  to->prev = from->prev;
  to->next = from->next;
  if (from->prev)
    from->prev->next = to;
  else
    conns_ = to;
  if (from->next) from->next->prev = to;
  from->prev = from->next = nullptr;
}

void Worker::connection_closed(ClientConn* c, size_t slot) {
  if (c->prev)
    c->prev->next = c->next;
  else
    conns_ = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  --stats_.connections_open;
  gates_[slot]->open.fetch_sub(1, std::memory_order_relaxed);
  for (auto& a : acceptors_) {
    if (a->paused() && a->slot() == slot) {
      reactor_.defer([acc = a.get()] { acc->accept_all(); });
    }
  }
  if (draining_) reactor_.defer([this] { maybe_finish_drain(); });
}

}  // namespace weir::proxy
