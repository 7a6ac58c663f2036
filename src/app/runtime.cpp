#include "app/runtime.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <set>

#include "admin/admin_server.hpp"
#include "cluster/redis_sync.hpp"
#include "config/loader.hpp"
#include "core/log.hpp"
#include "discovery/dns_discovery.hpp"
#include "fleet/announce.hpp"
#include "health/health_checker.hpp"
#include "net/socket.hpp"
#include "net/tls/ocsp.hpp"
#include "net/tls/tls.hpp"
#include "quic/endpoint.hpp"

namespace weir::app {
namespace {

// How long start and reload wait for the first DNS answers of `resolve:` / `discovery.srv`
// names (c-ares gives up on a silent server after 3 s, an SRV name and its targets after 6).
constexpr std::chrono::seconds kFirstAnswers{5};

// Certificates and keys are checked like `weir check` does: errors refuse the config,
// warnings (expiring soon) are logged.
bool certificates_ok(const config::Config& cfg, const char* context) {
  bool ok = true;
  for (const auto& d : net::tls::check_certificates(cfg, std::chrono::system_clock::now())) {
    if (d.warning) {
      log::warn("{}{}", context, d.format());
    } else {
      log::error("{}{}", context, d.format());
      ok = false;
    }
  }
  return ok;
}

}  // namespace

Runtime::Runtime() = default;
Runtime::~Runtime() {
  if (discovery_) discovery_->stop();
  if (announcer_) announcer_->stop();  // BIRD is left as it is
  if (cluster_) cluster_->stop();
  stop_ticket_rotation();
  net::tls::OcspFetcher::global().stop();
  if (health_) health_->stop();
  if (admin_) admin_->stop();
  for (auto& w : workers_) {
    w->stop();
    w->join();
  }
}

model::SnapshotPtr Runtime::snapshot() const {
  std::lock_guard lock(mu_);
  return snap_;
}

model::OpenAccessLog Runtime::open_access_log() {
  return [this](const std::string& path, std::string& error) {
    return access_log_->destination(path, error);
  };
}

void Runtime::reopen_logs() {
  if (access_log_) access_log_->reopen();
}

int Runtime::start(config::ConfigPtr cfg, InheritedSockets* inherited) {
  if (!certificates_ok(*cfg, "")) return 1;
  unsigned workers =
      cfg->workers ? cfg->workers : std::max(1u, std::thread::hardware_concurrency());
  access_log_ = std::make_unique<proxy::AccessLogWriter>(workers);
  // DNS discovery's first answers before the first snapshot (bounded: a name that does not
  // answer starts with no servers, logged, and is asked again every interval).
  discovery_ = std::make_unique<discovery::DnsDiscovery>(
      [this](std::string_view why) { rebuild(why); }, [this] { return snapshot(); });
  discovery_->add(*cfg, kFirstAnswers);
  std::vector<std::string> errors;
  auto snap =
      model::build_snapshot(cfg, registry_, errors, open_access_log(), &discovery_->table());
  if (!snap) {
    for (const auto& e : errors)
      log::error("{}", e);
    return 1;
  }
  // Every listen address gets one socket per worker (SO_REUSEPORT: the kernel spreads
  // connections); its slot number is how workers find it across reloads.
  std::vector<std::vector<proxy::ListenSocket>> per_worker(snap->workers);
  for (const auto& l : snap->listeners) {
    for (const auto& a : l.addrs) {
      std::string addr = a.to_string();
      if (std::find(slot_addresses_.begin(), slot_addresses_.end(), addr) !=
          slot_addresses_.end()) {
        log::error("listener {}: address {} is used twice", l.cfg->name, addr);
        return 1;
      }
      size_t slot = slot_addresses_.size();
      slot_addresses_.push_back(addr);
      bool have = false;  // a socket of this address exists: the others join its port
      for (unsigned w = 0; w < snap->workers; ++w) {
        std::string err;
        int fd = inherited ? inherited->take_listener(addr) : -1;
        if (fd < 0) fd = net::listen_socket(a, true, 4096, err, have, l.cfg->freebind);
        have = have || fd >= 0;
        if (fd < 0) {
          log::error("listener {}: cannot listen on {}: {}", l.cfg->name, addr, err);
          for (auto& socks : per_worker)
            for (auto& s : socks)
              net::close_fd(s.fd);
          return 3;
        }
        per_worker[w].push_back({fd, slot, addr});
        listening_.push_back({HandedSocket::Role::Listener, addr, fd});
      }
      // The old process had more workers: their sockets (in the same SO_REUSEPORT group, with
      // connections possibly queued) are served too, shared out among the workers.
      if (inherited) {
        unsigned w = 0;
        for (int fd : inherited->take_rest(addr)) {
          per_worker[w++ % snap->workers].push_back({fd, slot, addr});
          listening_.push_back({HandedSocket::Role::Listener, addr, fd});
        }
      }
      // HTTP/3: a UDP socket per worker on the same address and port. Not handed over on a
      // binary upgrade: the new process joins the port's SO_REUSEPORT group with its own.
      if (l.cfg->http3) {
        auto group = std::make_shared<quic::EndpointGroup>();
        RAND_bytes(group->secret.data(), static_cast<int>(group->secret.size()));
        group->deliver.resize(snap->workers);
        quic_groups_.emplace_back(slot, group);
        for (unsigned w = 0; w < snap->workers; ++w) {
          std::string err;
          int fd = net::udp_socket(a, err, w > 0 || inherited, l.cfg->freebind);
          if (fd < 0) {
            log::error("listener {}: cannot serve HTTP/3 on {}: {}", l.cfg->name, addr, err);
            for (auto& socks : per_worker)
              for (auto& s : socks)
                net::close_fd(s.fd);
            return 3;
          }
          per_worker[w].push_back({fd, slot, addr, group});
        }
      }
    }
  }
  int admin_fd = -1;
  if (!cfg->admin.listen.empty()) {
    std::string host, err;
    uint16_t port = 0;
    std::optional<net::SocketAddress> a;
    if (net::split_host_port(cfg->admin.listen, host, port)) a = net::resolve(host, port, err);
    if (!a) {
      log::error("admin: bad listen address {}: {}", cfg->admin.listen, err);
      return 1;
    }
    admin_fd = inherited ? inherited->take_admin(a->to_string()) : -1;
    if (admin_fd < 0) admin_fd = net::listen_socket(*a, false, 128, err);
    if (admin_fd >= 0) listening_.push_back({HandedSocket::Role::Admin, a->to_string(), admin_fd});
    if (admin_fd < 0) {
      log::error("admin: {}", err);
      for (auto& socks : per_worker)
        for (auto& s : socks)
          net::close_fd(s.fd);
      return 3;
    }
  }
  std::vector<std::shared_ptr<proxy::ListenerGate>> gates;
  for (size_t i = 0; i < slot_addresses_.size(); ++i)
    gates.push_back(std::make_shared<proxy::ListenerGate>());
  snap_ = snap;
  for (unsigned w = 0; w < snap->workers; ++w) {
    workers_.push_back(
        std::make_unique<proxy::Worker>(w, snap, std::move(per_worker[w]), slot_addresses_, gates));
  }
  // Datagrams of a connection that reach another worker's socket go to its own worker.
  for (auto& [slot, group] : quic_groups_) {
    for (auto& w : workers_) {
      quic::Endpoint* ep = w->quic_endpoint(slot);
      group->deliver[w->index()] = [ep](std::string d, quic::PathAddrs p, uint8_t ecn) {
        return ep->post(std::move(d), p, ecn);
      };
    }
  }
  for (auto& w : workers_) {
    w->set_access_log(&access_log_->producer(w->index()));
    w->start();
  }
  start_ticket_rotation();
  net::tls::OcspFetcher::global().start();  // `ocsp: { fetch: true }` certificates, if any
  health_ = std::make_unique<health::HealthChecker>();
  health_->update(snap);
  health_->start();
  // `announce:` (also when a reload adds it later): BIRD's protocols follow backend health.
  announcer_ = std::make_unique<fleet::Announcer>([this] { return snapshot(); });
  announcer_->start();
  // `cluster:` (also when a reload adds it later): shared client limits through Redis.
  cluster_ = std::make_unique<cluster::RedisSync>();
  cluster_->update(*snap);
  if (admin_fd >= 0) {
    server::ServerOptions options;
    options.header_timeout = cfg->admin.header_timeout;
    options.idle_timeout = cfg->admin.idle_timeout;
    options.max_connections = cfg->admin.max_connections;
    options.evict_waiting_at_cap = true;
    admin_ = std::make_unique<admin::AdminServer>(
        admin_fd,
        admin::AdminSource{[this] { return snapshot(); }, [this] { return collect_stats(); },
                           [this](std::string_view why) { return rebuild(why); },
                           [this] { return draining_.load(std::memory_order_relaxed); }},
        options);
    admin_->start();
  }
  for (const auto& l : snap->listeners) {
    std::string addrs;
    for (const auto& a : l.addrs)
      addrs += (addrs.empty() ? "" : ", ") + a.to_string();
    std::string_view mode = l.cfg->mode == config::ListenerMode::Tcp ? "tcp"
                            : l.tls                                  ? "https"
                            : l.cfg->h2c                             ? "http, h2c"
                                                                     : "http";
    log::info("listener {} on {} ({}{})", l.cfg->name, addrs, mode,
              l.cfg->http3 ? ", HTTP/3 over UDP" : "");
  }
  if (admin_) log::info("admin on {}", cfg->admin.listen);
  log::info("weir {} running with {} worker{}", WEIR_VERSION, snap->workers,
            snap->workers == 1 ? "" : "s");
  discovery_->arm();  // DNS changes rebuild the snapshot from now on
  return 0;
}

bool Runtime::reload(const std::string& path) {
  std::lock_guard build(build_mu_);
  auto res = config::load_config_file(path);
  if (!res.ok()) {
    log::error("reload: {} has errors; keeping the running config", path);
    for (const auto& d : res.diagnostics) {
      if (d.warning)
        log::warn("{}", d.format());
      else
        log::error("{}", d.format());
    }
    return false;
  }
  if (!certificates_ok(*res.config, "reload: ")) {
    log::error("reload: keeping the running config");
    return false;
  }
  // New `resolve:` / `discovery.srv` names are looked up first; on failure only the running
  // config's lookups are kept.
  discovery_->add(*res.config, kFirstAnswers);
  std::vector<std::string> errors;
  auto snap =
      model::build_snapshot(res.config, registry_, errors, open_access_log(), &discovery_->table());
  if (!snap) {
    for (const auto& e : errors)
      log::error("reload: {}", e);
    log::error("reload: keeping the running config");
    discovery_->retain(*snapshot()->config);
    return false;
  }
  // Listen addresses are bound at start: a reload may change everything else.
  std::set<std::string> old_addrs(slot_addresses_.begin(), slot_addresses_.end()), new_addrs;
  for (const auto& l : snap->listeners)
    for (const auto& a : l.addrs)
      new_addrs.insert(a.to_string());
  if (old_addrs != new_addrs) {
    log::error(
        "reload: listen addresses changed; that needs a restart. Keeping the running config");
    discovery_->retain(*snapshot()->config);
    return false;
  }
  // HTTP/3's UDP sockets are made at start too: a reload cannot add them (Alt-Svc would point
  // clients at a port nobody answers).
  for (const auto& l : snap->listeners) {
    if (!l.cfg->http3) continue;
    for (const auto& a : l.addrs) {
      size_t slot = static_cast<size_t>(
          std::find(slot_addresses_.begin(), slot_addresses_.end(), a.to_string()) -
          slot_addresses_.begin());
      bool bound = std::any_of(quic_groups_.begin(), quic_groups_.end(),
                               [&](const auto& g) { return g.first == slot; });
      if (!bound) {
        log::error(
            "reload: listener {}: http3 on {} needs its UDP sockets, made at start: "
            "restart or upgrade (SIGUSR2). Keeping the running config",
            l.cfg->name, a.to_string());
        discovery_->retain(*snapshot()->config);
        return false;
      }
    }
  }
  if (snap->workers != snapshot()->workers) {
    log::warn("reload: a new worker count takes effect at the next restart");
  }
  discovery_->retain(*res.config);
  install(std::move(snap), true);
  log::info("reload: {} applied", path);
  return true;
}

void Runtime::install(model::SnapshotPtr snap, bool new_config) {
  {
    std::lock_guard lock(mu_);
    snap_ = snap;
  }
  for (auto& w : workers_)
    w->update_snapshot(snap, new_config);
  if (announcer_) announcer_->wake();
  if (cluster_) cluster_->update(*snap);
  if (health_) health_->update(snap);
}

bool Runtime::rebuild(std::string_view why) {
  std::lock_guard build(build_mu_);
  std::vector<std::string> errors;
  auto snap = model::build_snapshot(snapshot()->config, registry_, errors, open_access_log(),
                                    discovery_ ? &discovery_->table() : nullptr);
  if (!snap) {
    for (const auto& e : errors)
      log::error("{}: {}", why, e);
    log::error("{}: keeping the running servers", why);
    return false;
  }
  install(std::move(snap), false);
  return true;
}

void Runtime::start_ticket_rotation() {
  bool any_tls = false;
  for (const auto& l : snapshot()->config->listeners)
    any_tls |= l.tls.has_value();
  if (!any_tls) return;  // a reload that adds TLS rotates from the next restart on
  auto keys = registry_.ticket_keys();
  rotator_ = std::thread([this, keys] {
    std::unique_lock lock(rotator_mu_);
    for (;;) {
      auto every = snapshot()->config->limits.tls_ticket_rotation;
      if (rotator_cv_.wait_for(lock, every, [this] { return rotator_stop_; })) return;
      keys->rotate();
      log::debug("TLS ticket keys rotated");
    }
  });
}

void Runtime::stop_ticket_rotation() {
  {
    std::lock_guard lock(rotator_mu_);
    rotator_stop_ = true;
  }
  rotator_cv_.notify_all();
  if (rotator_.joinable()) rotator_.join();
}

void Runtime::drain_and_stop(bool upgrade) {
  if (discovery_) discovery_->stop();  // no rebuild while the workers drain
  const auto& limits = snapshot()->config->limits;
  auto deadline = limits.drain_timeout;
  auto tunnels = upgrade ? limits.tunnel_drain_timeout : deadline;
  draining_.store(true);
  if (announcer_) {
    // An upgrade: the new process announces (its announcer applies the state again); SIGTERM:
    // withdraw first (withdraw_on_drain), so that routers move away before anything closes.
    if (upgrade) {
      announcer_->stop();
    } else {
      announcer_->withdraw(std::chrono::seconds(1));
    }
  }
  if (!upgrade && limits.drain_grace.count() > 0) {
    // A fleet: /healthz is 503 already, so the checker (keepalived, a load balancer in front)
    // moves the traffic away while this process still accepts and serves.
    log::info("draining: /healthz answers 503; still serving for drain_grace ({} ms)",
              limits.drain_grace.count());
    std::this_thread::sleep_for(limits.drain_grace);
  }
  listening_.clear();  // the workers close them as they stop accepting
  // Upgrade: the new process answers on the same admin socket.
  if (upgrade && admin_) admin_->stop();
  if (upgrade) {
    log::info("draining: no new connections; in-flight requests have {} ms, tunnels up to {} s",
              deadline.count(), std::max(deadline, tunnels).count() / 1000);
  } else {
    log::info("draining: no new connections; in-flight requests have {} ms", deadline.count());
  }
  for (auto& w : workers_)
    w->begin_drain(deadline, tunnels, upgrade);
  for (auto& w : workers_)
    w->join();
  stop_ticket_rotation();
  net::tls::OcspFetcher::global().stop();
  if (health_) health_->stop();
  if (announcer_) announcer_->stop();
  if (cluster_) cluster_->stop();
  if (admin_) admin_->stop();
  log::info("stopped");
}

proxy::WorkerStats Runtime::collect_stats() const {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    proxy::WorkerStats total;
    size_t pending = 0;
  };
  auto shared = std::make_shared<Shared>();
  shared->pending = workers_.size();
  for (auto& w : workers_) {
    w->collect_stats([shared](proxy::WorkerStats s) {
      std::lock_guard lock(shared->mu);
      shared->total.merge(s);
      if (--shared->pending == 0) shared->cv.notify_all();
    });
  }
  std::unique_lock lock(shared->mu);
  shared->cv.wait_for(lock, std::chrono::seconds(1), [&] { return shared->pending == 0; });
  proxy::WorkerStats total = shared->total;
  if (access_log_) {
    total.access_log_dropped = access_log_->dropped();
    total.access_log_written = access_log_->written();
  }
  if (announcer_) {
    total.announced = announcer_->announced() ? 1 : 0;
  }
  if (cluster_) total.cluster_up = cluster_->up();
  return total;
}

}  // namespace weir::app
