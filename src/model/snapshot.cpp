#include "model/snapshot.hpp"

#include "quic/quic_tls.hpp"

#include "core/log.hpp"

#include <algorithm>
#include <set>
#include <thread>

namespace weir::model {

SnapshotPtr build_snapshot(config::ConfigPtr cfg, ServerRegistry& registry,
                           std::vector<std::string>& errors, const OpenAccessLog& open_log,
                           const Discovered* discovered) {
  auto snap = std::make_shared<Snapshot>();
  snap->config = cfg;
  // `auto`: one per CPU, at most 256 as a configured count (QUIC connection IDs name their
  // worker in one byte).
  snap->workers =
      cfg->workers ? cfg->workers : std::clamp(std::thread::hardware_concurrency(), 1u, 256u);
  for (const auto& c : cfg->caches)
    snap->caches.push_back(registry.cache(c));
  for (const auto& l : cfg->listeners) {
    ListenerRuntime lr;
    lr.cfg = &l;
    for (const auto& text : l.listen) {
      std::string host, err;
      uint16_t port = 0;
      if (!net::split_host_port(text, host, port)) {
        errors.push_back("listener " + l.name + ": bad address \"" + text + "\"");
        continue;
      }
      auto a = net::resolve(host, port, err);
      if (!a) {
        errors.push_back("listener " + l.name + ": " + err);
        continue;
      }
      lr.addrs.push_back(*a);
    }
    if (l.tls) {
      std::string err;
      lr.tls = net::tls::ServerContext::build(*l.tls, registry.ticket_keys(), err);
      if (!lr.tls) errors.push_back("listener " + l.name + ": TLS: " + err);
      if (l.http3) {
        lr.quic_tls = quic::TlsContext::load(*l.tls, err);
        if (!lr.quic_tls) errors.push_back("listener " + l.name + ": HTTP/3 TLS: " + err);
      }
    }
    const auto& log = l.access_log ? l.access_log : cfg->access_log;
    if (log && open_log) {
      std::string err;
      lr.log_destination = open_log(log->path, err);
      lr.log_combined = log->format == config::AccessLogFormat::Combined;
      if (lr.log_destination < 0) errors.push_back("listener " + l.name + ": access log: " + err);
    }
    if (l.client_limits) {
      const config::ClientLimits& cl = *l.client_limits;
      lr.clients = registry.client_table(l.name, cl.table_size, cl.shared);
      if (cl.key == config::ClientLimits::Key::Header) {
        lr.limit_key = {KeySpec::Kind::Header, cl.key_name};
      } else if (cl.key == config::ClientLimits::Key::Cookie) {
        lr.limit_key = {KeySpec::Kind::Cookie, cl.key_name};
      }
    }
    snap->listeners.push_back(std::move(lr));
  }
  for (const auto& b : cfg->backends) {
    BackendRuntime br;
    br.cfg = &b;
    std::set<std::string> names;
    // One server: its state from the registry (kept across rebuilds by backend, name and
    // address); a discovered one that appeared after its name's first answer starts its
    // slow_start ramp then.
    auto add = [&](ServerRuntime sr, const config::Server* s, int64_t appeared_ns) {
      if (!names.insert(sr.name).second) return;  // the same address found twice
      auto [state, id] = registry.get(b.name + "/" + sr.name + "@" + sr.addr.to_string());
      if (appeared_ns != 0 && b.slow_start.count() > 0 &&
          state->ramp_start_ns.load(std::memory_order_relaxed) < appeared_ns) {
        state->ramp_start_ns.store(appeared_ns, std::memory_order_relaxed);
      }
      sr.state = state;
      sr.uid = id;
      // A weight set through the runtime API wins while the server stays in the config.
      if (int64_t w = state->weight_override.load(); w >= 0) sr.weight = static_cast<uint32_t>(w);
      if (s && s->tls) {
        std::string err;
        std::string_view alpn = b.protocol == config::UpstreamProtocol::H2 ? "\x02h2"
                                : b.protocol == config::UpstreamProtocol::Auto
                                    ? "\x02h2\x08http/1.1"
                                    : "";
        sr.tls = net::tls::ClientContext::build(*s->tls, s->host, err, alpn);
        if (!sr.tls) {
          errors.push_back("backend " + b.name + " server " + sr.name + ": TLS: " + err);
          return;
        }
      }
      br.servers.push_back(std::move(sr));
    };
    for (const auto& s : b.servers) {
      ServerRuntime sr;
      sr.name = s.name;
      sr.address_text = s.address;
      sr.weight = s.weight;
      if (s.resolve && discovered) {
        // Every address found is a server "IP:PORT"; none yet: none (the discovery logged it).
        auto found = discovered->get(Discovered::Kind::Host, s.host);
        for (const auto& d : found ? *found : std::vector<DiscoveredAddress>{}) {
          sr.addr = with_port(d.addr, s.port);
          sr.name = sr.addr.to_string();
          add(sr, &s, d.appeared_ns);
        }
        continue;
      }
      std::string err;
      auto a = net::resolve(s.host, s.port, err);
      if (!a) {
        errors.push_back("backend " + b.name + " server " + s.name + ": " + err);
        continue;
      }
      sr.addr = *a;
      if (s.resolve) sr.name = a->to_string();
      add(std::move(sr), &s, 0);
    }
    if (b.discovery && discovered) {
      auto found = discovered->get(Discovered::Kind::Srv, b.discovery->srv);
      for (const auto& d : found ? *found : std::vector<DiscoveredAddress>{}) {
        ServerRuntime sr;
        sr.addr = d.addr;
        sr.name = d.addr.to_string();
        sr.address_text = d.target + ":" + std::to_string(d.addr.port());
        sr.weight = d.weight;
        sr.priority = d.priority;
        add(std::move(sr), nullptr, d.appeared_ns);
      }
      br.active_priority = serving_priority(br);
      for (auto& sr : br.servers)
        if (sr.priority != br.active_priority) sr.weight = 0;
    }
    for (auto& sr : br.servers)
      br.infos.push_back(
          {sr.weight, sr.state.get(), sr.name, std::chrono::nanoseconds(b.slow_start).count()});
    br.hash_key = KeySpec::parse(b.balance == config::Balance::IpHash ? "client_ip" : b.hash_key);
    if (b.sticky) {
      // Without a secret_file the key is made at start-up: cookies then last until a restart.
      if (b.sticky->secret.empty() && !registry.warned_random_key(b.name)) {
        log::warn(
            "backend {}: sticky cookies signed with a key made at start-up (set "
            "sticky.secret_file to keep sessions across restarts and instances)",
            b.name);
      }
      StickyTable t;
      t.cookie = b.sticky->cookie;
      t.max_age = b.sticky->max_age;
      const std::string& key =
          b.sticky->secret.empty() ? registry.process_sticky_key() : b.sticky->secret;
      for (auto& sr : br.servers)
        t.tokens.push_back(sticky_token(key, b.name, sr.name));
      br.sticky = std::move(t);
    }
    snap->backends.push_back(std::move(br));
  }
  if (!errors.empty()) return nullptr;
  return snap;
}

int serving_priority(const BackendRuntime& b) {
  int lowest = -1, lowest_up = -1;
  for (const auto& sr : b.servers) {
    if (lowest < 0 || sr.priority < lowest) lowest = sr.priority;
    if (sr.state->takes_new() && (lowest_up < 0 || sr.priority < lowest_up))
      lowest_up = sr.priority;
  }
  return lowest_up >= 0 ? lowest_up : lowest;
}

}  // namespace weir::model
