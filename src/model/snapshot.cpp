#include "model/snapshot.hpp"

#include "core/log.hpp"

#include <thread>

namespace weir::model {

SnapshotPtr build_snapshot(config::ConfigPtr cfg, ServerRegistry& registry,
                           std::vector<std::string>& errors, const OpenAccessLog& open_log) {
  auto snap = std::make_shared<Snapshot>();
  snap->config = cfg;
  snap->workers = cfg->workers ? cfg->workers : std::max(1u, std::thread::hardware_concurrency());
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
      lr.clients = registry.client_table(l.name, cl.table_size);
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
    for (const auto& s : b.servers) {
      std::string err;
      auto a = net::resolve(s.host, s.port, err);
      if (!a) {
        errors.push_back("backend " + b.name + " server " + s.name + ": " + err);
        continue;
      }
      ServerRuntime sr;
      sr.name = s.name;
      sr.address_text = s.address;
      sr.addr = *a;
      sr.weight = s.weight;
      auto [state, id] = registry.get(b.name + "/" + s.name + "@" + a->to_string());
      sr.state = state;
      sr.uid = id;
      if (s.tls) {
        std::string_view alpn = b.protocol == config::UpstreamProtocol::H2 ? "\x02h2"
                                : b.protocol == config::UpstreamProtocol::Auto
                                    ? "\x02h2\x08http/1.1"
                                    : "";
        sr.tls = net::tls::ClientContext::build(*s.tls, s.host, err, alpn);
        if (!sr.tls) {
          errors.push_back("backend " + b.name + " server " + s.name + ": TLS: " + err);
          continue;
        }
      }
      br.servers.push_back(std::move(sr));
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

}  // namespace weir::model
