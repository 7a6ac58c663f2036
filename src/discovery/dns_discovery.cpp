#include "discovery/dns_discovery.hpp"

#include <ares.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "core/log.hpp"

namespace weir::discovery {
namespace {

using Kind = model::Discovered::Kind;
using model::DiscoveredAddress;

// c-ares bounds: each try waits 1 s (doubled per round over the servers), 2 tries.
constexpr int kTimeoutMs = 1000;
constexpr int kTries = 2;
constexpr uint32_t kMaxWeight = 1000;  // as for a configured server
// How often the SRV priority watch looks at the servers' health.
constexpr std::chrono::milliseconds kPriorityWatch{100};
constexpr int kSrvType = 33;  // ns_t_srv
constexpr int kClassIn = 1;   // ns_c_in

int64_t now_ns() {
  return model::ServerState::now_ns();
}

std::string_view kind_name(Kind k) {
  return k == Kind::Srv ? "SRV" : "A/AAAA";
}

std::string where_of(const config::SourcePos& p) {
  return p.file + ":" + std::to_string(p.line) + ":" + std::to_string(p.col);
}

std::string describe(Kind kind, const std::vector<DiscoveredAddress>& addrs) {
  std::string out;
  for (const auto& a : addrs) {
    if (!out.empty()) out += ", ";
    if (kind == Kind::Host) {
      out += a.addr.ip_string();
    } else {
      out += a.addr.to_string() + " (" + a.target + ", priority " + std::to_string(a.priority) +
             ", weight " + std::to_string(a.weight) + ")";
    }
  }
  return out;
}

net::SocketAddress from_node(const ares_addrinfo_node* n) {
  net::SocketAddress a;
  size_t len = std::min<size_t>(n->ai_addrlen, sizeof a.storage);
  std::memcpy(&a.storage, n->ai_addr, len);
  a.len = static_cast<socklen_t>(len);
  return a;
}

void init_library() {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

}  // namespace

Wanted wanted_by(const config::Config& cfg) {
  Wanted w;
  auto want = [&](Key key, std::chrono::milliseconds every, const config::SourcePos& pos) {
    auto [it, inserted] = w.lookups.try_emplace(std::move(key));
    if (inserted || every < it->second.interval) it->second.interval = every;
    if (inserted) it->second.where = where_of(pos);
  };
  for (const auto& b : cfg.backends) {
    for (const auto& s : b.servers)
      if (s.resolve) want({Kind::Host, s.host}, *s.resolve, s.pos);
    if (b.discovery) want({Kind::Srv, b.discovery->srv}, b.discovery->interval, b.discovery->pos);
  }
  for (const auto& r : cfg.resolvers)
    w.resolvers += (w.resolvers.empty() ? "" : ",") + r;
  return w;
}

void scale_srv_weights(std::vector<DiscoveredAddress>& addrs) {
  uint32_t max = 0;
  for (const auto& a : addrs)
    max = std::max<uint32_t>(max, a.weight);
  for (auto& a : addrs) {
    uint32_t w = max > kMaxWeight ? a.weight * kMaxWeight / max : a.weight;
    a.weight = static_cast<uint16_t>(std::max<uint32_t>(w, 1));
  }
}

// ---------------------------------------------------------------------------------------------
// The DNS thread: one c-ares channel driven by poll() over its sockets and an eventfd.

struct DnsDiscovery::Engine {
  struct SrvRecord {
    std::string target;
    uint16_t port = 0, priority = 0, weight = 0;
  };
  struct Lookup {
    Key key;
    std::chrono::milliseconds interval{0};
    std::string where;
    int64_t due_ns = 0;
    bool in_flight = false;
    bool removed = false;  // no longer wanted: an answer still in flight is dropped
    enum class Condition : uint8_t { None, Good, Failed } condition = Condition::None;
    // SRV: the records of the answer and their targets' addresses, while those are looked up.
    std::vector<SrvRecord> records;
    size_t pending = 0;
    bool aborted = false;  // the channel was destroyed under the target lookups
    std::map<std::string, std::vector<net::SocketAddress>> resolved;
  };
  struct Call {
    Engine* engine;
    std::shared_ptr<Lookup> lookup;
    std::string target;  // SRV target lookups
  };

  explicit Engine(DnsDiscovery& o) : owner(o) {
    wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }
  ~Engine() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  DnsDiscovery& owner;
  int wake_fd = -1;
  std::atomic<bool> stop{false};
  ares_channel channel = nullptr;
  bool have_channel = false;
  std::string resolvers;  // what the channel was made with
  std::map<int, short> socks;
  std::map<Key, std::shared_ptr<Lookup>> lookups;

  void wake() {
    uint64_t one = 1;
    if (wake_fd >= 0) [[maybe_unused]]
      auto n = ::write(wake_fd, &one, sizeof one);
  }

  static void sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* e = static_cast<Engine*>(data);
    if (!readable && !writable) {
      e->socks.erase(fd);
    } else {
      e->socks[fd] = static_cast<short>((readable ? POLLIN : 0) | (writable ? POLLOUT : 0));
    }
  }

  void destroy_channel() {
    if (!have_channel) return;
    ares_destroy(channel);  // callbacks run now with ARES_EDESTRUCTION
    have_channel = false;
    socks.clear();
  }

  void make_channel() {
    ares_options o{};
    o.sock_state_cb = &Engine::sock_state;
    o.sock_state_cb_data = this;
    o.timeout = kTimeoutMs;
    o.tries = kTries;
    char lookups_dns_only[] = "b";  // DNS only, not /etc/hosts, like HAProxy and NGINX
    o.lookups = lookups_dns_only;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
    if (int rc = ares_init_options(&channel, &o, mask); rc != ARES_SUCCESS) {
      log::error("dns: cannot start the resolver: {}", ares_strerror(rc));
      return;
    }
    have_channel = true;
    if (!resolvers.empty()) {
      if (int rc = ares_set_servers_ports_csv(channel, resolvers.c_str()); rc != ARES_SUCCESS) {
        log::error("dns: cannot use resolvers {}: {}", resolvers, ares_strerror(rc));
      }
    }
  }

  // Takes in what the owner wants: new lookups, dropped ones, other resolvers.
  void sync() {
    Wanted w;
    {
      std::lock_guard lock(owner.mu_);
      w = owner.wanted_;
    }
    if (!have_channel || w.resolvers != resolvers) {
      destroy_channel();
      resolvers = w.resolvers;
      make_channel();
      if (!resolvers.empty()) log::info("dns: resolvers {}", resolvers);
    }
    for (auto it = lookups.begin(); it != lookups.end();) {
      if (w.lookups.count(it->first)) {
        ++it;
        continue;
      }
      it->second->removed = true;
      it = lookups.erase(it);
    }
    for (const auto& [key, want] : w.lookups) {
      auto& l = lookups[key];
      if (!l) {
        l = std::make_shared<Lookup>();
        l->key = key;
      }
      l->interval = want.interval;
      l->where = want.where;
    }
  }

  void run() {
    pthread_setname_np(pthread_self(), "weir-dns");
    std::vector<pollfd> fds;
    while (!stop.load()) {
      sync();
      int64_t now = now_ns();
      int64_t next = now + 1'000'000'000;
      for (auto& [key, l] : lookups) {
        if (l->in_flight) continue;
        if (l->due_ns <= now) {
          start(l);
        } else {
          next = std::min(next, l->due_ns);
        }
      }
      int timeout_ms = static_cast<int>(std::max<int64_t>(0, (next - now) / 1'000'000) + 1);
      if (have_channel) {
        timeval max{timeout_ms / 1000, (timeout_ms % 1000) * 1000}, tv{};
        if (timeval* t = ares_timeout(channel, &max, &tv)) {
          timeout_ms = static_cast<int>(t->tv_sec * 1000 + t->tv_usec / 1000) + 1;
        }
      }
      fds.clear();
      fds.push_back({wake_fd, POLLIN, 0});
      for (auto [fd, events] : socks)
        fds.push_back({fd, events, 0});
      int n = ::poll(fds.data(), fds.size(), timeout_ms);
      if (n > 0 && (fds[0].revents & POLLIN)) {
        uint64_t v;
        [[maybe_unused]] auto r = ::read(wake_fd, &v, sizeof v);
      }
      if (!have_channel) continue;
      for (size_t i = 1; n > 0 && i < fds.size(); ++i) {
        short re = fds[i].revents;
        if (re == 0) continue;
        ares_socket_t rd = (re & (POLLIN | POLLERR | POLLHUP)) ? fds[i].fd : ARES_SOCKET_BAD;
        ares_socket_t wr = (re & POLLOUT) ? fds[i].fd : ARES_SOCKET_BAD;
        ares_process_fd(channel, rd, wr);
      }
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
    }
    destroy_channel();
    lookups.clear();
  }

  void start(const std::shared_ptr<Lookup>& l) {
    l->in_flight = true;
    if (!have_channel) {
      finish(*l, false, {}, "no resolver");
      return;
    }
    const std::string& name = l->key.second;
    if (l->key.first == Kind::Host) {
      ares_addrinfo_hints hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_flags = ARES_AI_NOSORT;
      ares_getaddrinfo(channel, name.c_str(), nullptr, &hints, &Engine::on_host,
                       new Call{this, l, ""});
    } else {
      ares_query(channel, name.c_str(), kClassIn, kSrvType, &Engine::on_srv, new Call{this, l, ""});
    }
  }

  static std::vector<net::SocketAddress> addresses(ares_addrinfo* res) {
    std::vector<net::SocketAddress> out;
    for (auto* n = res ? res->nodes : nullptr; n; n = n->ai_next) {
      if (n->ai_family == AF_INET || n->ai_family == AF_INET6) out.push_back(from_node(n));
    }
    return out;
  }

  static void on_host(void* arg, int status, int, ares_addrinfo* res) {
    std::unique_ptr<Call> c(static_cast<Call*>(arg));
    std::vector<net::SocketAddress> found =
        status == ARES_SUCCESS ? addresses(res) : std::vector<net::SocketAddress>{};
    if (res) ares_freeaddrinfo(res);
    Lookup& l = *c->lookup;
    if (status == ARES_EDESTRUCTION) {
      l.in_flight = false;
      l.due_ns = 0;  // again at once on the next channel
      return;
    }
    std::vector<DiscoveredAddress> addrs;
    for (const auto& a : found)
      addrs.push_back({model::with_port(a, 0), "", 0, 0, 0});
    c->engine->finish(l, status == ARES_SUCCESS, std::move(addrs),
                      status == ARES_SUCCESS ? "empty answer" : ares_strerror(status));
  }

  static void on_srv(void* arg, int status, int, unsigned char* abuf, int alen) {
    std::unique_ptr<Call> c(static_cast<Call*>(arg));
    Lookup& l = *c->lookup;
    Engine& e = *c->engine;
    if (status == ARES_EDESTRUCTION) {
      l.in_flight = false;
      l.due_ns = 0;
      return;
    }
    if (status != ARES_SUCCESS) {
      e.finish(l, false, {}, ares_strerror(status));
      return;
    }
    ares_srv_reply* reply = nullptr;
    if (int rc = ares_parse_srv_reply(abuf, alen, &reply); rc != ARES_SUCCESS) {
      e.finish(l, false, {}, std::string("bad SRV answer: ") + ares_strerror(rc));
      return;
    }
    l.records.clear();
    for (auto* r = reply; r; r = r->next) {
      std::string target = r->host ? r->host : "";
      if (!target.empty() && target.back() == '.') target.pop_back();
      if (target.empty()) continue;  // "." = no such service here (RFC 2782)
      l.records.push_back({target, r->port, r->priority, r->weight});
    }
    ares_free_data(reply);
    if (l.records.empty()) {
      e.finish(l, false, {}, "no SRV records");
      return;
    }
    std::set<std::string> targets;
    for (const auto& r : l.records)
      targets.insert(r.target);
    l.resolved.clear();
    l.aborted = false;
    l.pending = targets.size();
    for (const auto& t : targets) {
      ares_addrinfo_hints hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_flags = ARES_AI_NOSORT;
      ares_getaddrinfo(e.channel, t.c_str(), nullptr, &hints, &Engine::on_target,
                       new Call{&e, c->lookup, t});
    }
  }

  static void on_target(void* arg, int status, int, ares_addrinfo* res) {
    std::unique_ptr<Call> c(static_cast<Call*>(arg));
    Lookup& l = *c->lookup;
    if (status == ARES_SUCCESS) {
      if (auto found = addresses(res); !found.empty()) l.resolved[c->target] = std::move(found);
    }
    if (res) ares_freeaddrinfo(res);
    if (status == ARES_EDESTRUCTION) l.aborted = true;
    if (--l.pending > 0) return;
    if (l.aborted) {
      l.in_flight = false;
      l.due_ns = 0;
      return;
    }
    c->engine->finish_srv(l);
  }

  // Every record's target addresses with the record's port, priority and weight. A target that
  // did not resolve this time keeps the addresses it had in the last good answer.
  void finish_srv(Lookup& l) {
    auto last = owner.table_.get(Kind::Srv, l.key.second);
    std::vector<DiscoveredAddress> addrs;
    for (const auto& r : l.records) {
      auto it = l.resolved.find(r.target);
      if (it != l.resolved.end()) {
        for (const auto& a : it->second)
          addrs.push_back({model::with_port(a, r.port), r.target, r.priority, r.weight, 0});
        continue;
      }
      for (const auto& old : last ? *last : std::vector<DiscoveredAddress>{}) {
        if (old.target == r.target && old.addr.port() == r.port) {
          addrs.push_back({old.addr, r.target, r.priority, r.weight, 0});
        }
      }
    }
    scale_srv_weights(addrs);
    finish(l, true, std::move(addrs), "no SRV target resolves");
  }

  void finish(Lookup& l, bool ok, std::vector<DiscoveredAddress> addrs, const std::string& error) {
    int64_t now = now_ns();
    l.in_flight = false;
    l.due_ns = now + std::chrono::nanoseconds(l.interval).count();
    if (l.removed) return;
    const auto& [kind, name] = l.key;
    if (ok && !addrs.empty()) {
      if (l.condition == Lookup::Condition::Failed) {
        log::info("dns: {} {} answers again", kind_name(kind), name);
      }
      l.condition = Lookup::Condition::Good;
      if (owner.table_.store(kind, name, addrs, now)) {
        auto stored = owner.table_.get(kind, name);
        log::info("dns: {} {}: {}", kind_name(kind), name,
                  describe(kind, stored ? *stored : addrs));
        owner.notify("dns: " + name + " changed");
      }
    } else if (l.condition != Lookup::Condition::Failed) {
      l.condition = Lookup::Condition::Failed;
      auto last = owner.table_.get(kind, name);
      if (last) {
        log::warn("dns: {} {}: {}; keeping the last {} address{}", kind_name(kind), name, error,
                  last->size(), last->size() == 1 ? "" : "es");
      } else {
        log::warn("dns: {}: {} {}: {}; no servers from it until it answers", l.where,
                  kind_name(kind), name, error);
      }
    }
    std::lock_guard lock(owner.mu_);
    owner.answered_.insert(l.key);
    owner.answered_cv_.notify_all();
  }
};

// ---------------------------------------------------------------------------------------------

DnsDiscovery::DnsDiscovery(OnChange on_change, Current current)
    : on_change_(std::move(on_change)), current_(std::move(current)) {}

DnsDiscovery::~DnsDiscovery() {
  stop();
}

void DnsDiscovery::add(const config::Config& cfg, std::chrono::milliseconds wait) {
  Wanted w = wanted_by(cfg);
  std::unique_lock lock(mu_);
  for (const auto& [key, want] : w.lookups) {
    auto [it, inserted] = wanted_.lookups.try_emplace(key, want);
    if (!inserted) it->second.interval = std::min(it->second.interval, want.interval);
  }
  wanted_.resolvers = w.resolvers;
  if (wanted_.lookups.empty() && !engine_) return;  // no DNS needed (yet)
  if (!engine_) {
    init_library();
    engine_ = std::make_shared<Engine>(*this);
    dns_thread_ = std::thread([e = engine_] { e->run(); });
    watch_thread_ = std::thread([this] { watch(); });
  }
  engine_->wake();
  answered_cv_.wait_for(lock, wait, [&] {
    return std::all_of(w.lookups.begin(), w.lookups.end(),
                       [&](const auto& kv) { return answered_.count(kv.first) > 0; });
  });
}

void DnsDiscovery::retain(const config::Config& cfg) {
  Wanted w = wanted_by(cfg);
  std::set<Key> keep;
  for (const auto& [key, want] : w.lookups)
    keep.insert(key);
  {
    std::lock_guard lock(mu_);
    wanted_ = std::move(w);
    std::erase_if(answered_, [&](const Key& k) { return !keep.count(k); });
    if (engine_) engine_->wake();
  }
  table_.retain(keep);
}

void DnsDiscovery::arm() {
  std::lock_guard lock(watch_mu_);
  armed_ = true;
  watch_cv_.notify_all();
}

void DnsDiscovery::notify(std::string why) {
  std::lock_guard lock(watch_mu_);
  pending_ = std::move(why);
  watch_cv_.notify_all();
}

void DnsDiscovery::stop() {
  {
    std::lock_guard lock(watch_mu_);
    stopping_ = true;
    watch_cv_.notify_all();
  }
  if (watch_thread_.joinable()) watch_thread_.join();
  std::shared_ptr<Engine> e;
  {
    std::lock_guard lock(mu_);
    e = engine_;
  }
  if (e) {
    e->stop.store(true);
    e->wake();
  }
  if (dns_thread_.joinable()) dns_thread_.join();
}

// Rebuilds on a change of the discovered sets, and when the lowest SRV priority with a server
// in rotation is not the one a backend's snapshot serves (its servers went down or came back).
void DnsDiscovery::watch() {
  pthread_setname_np(pthread_self(), "weir-dns-watch");
  std::unique_lock lock(watch_mu_);
  while (!stopping_) {
    watch_cv_.wait_for(lock, kPriorityWatch,
                       [&] { return stopping_ || (armed_ && !pending_.empty()); });
    if (stopping_) break;
    if (!armed_) continue;
    std::string why = std::move(pending_);
    pending_.clear();
    lock.unlock();
    if (why.empty()) {
      if (model::SnapshotPtr snap = current_ ? current_() : nullptr) {
        for (const auto& b : snap->backends) {
          if (!b.cfg->discovery) continue;
          int serving = model::serving_priority(b);
          if (serving != b.active_priority) {
            why = "dns: backend " + b.cfg->name + ": SRV priority " + std::to_string(serving) +
                  " now serves";
            log::info("{}", why);
            break;
          }
        }
      }
    }
    if (!why.empty() && on_change_) on_change_(why);
    lock.lock();
  }
}

}  // namespace weir::discovery
