// `backends:` — balancing, affinity, health checks, limits and the servers.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <utility>

#include "config/address.hpp"
#include "config/loader_parts.hpp"
#include "config/tls_loader.hpp"

namespace weir::config {
namespace {

constexpr uint32_t kMaxWeight = 1000;
constexpr uint32_t kMaxRetries = 10;
// DNS lookups (`resolve:`, `discovery.interval`) at most once a second per name.
constexpr Duration kMinLookupInterval{1000};

constexpr std::array<std::pair<std::string_view, Balance>, 6> kBalances{{
    {"random", Balance::Random},
    {"round_robin", Balance::RoundRobin},
    {"least_connections", Balance::LeastConnections},
    {"least_response_time", Balance::LeastResponseTime},
    {"ip_hash", Balance::IpHash},
    {"consistent_hash", Balance::ConsistentHash},
}};

bool is_query_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return c > 0x20 && c != 0x7f && c != '&' && c != '=' && c != '#';
  });
}

bool valid_hash_key(std::string_view key) {
  if (key == "client_ip" || key == "path") return true;
  if (key.starts_with("header:")) return is_token(key.substr(7));
  if (key.starts_with("cookie:")) return is_token(key.substr(7));
  if (key.starts_with("query:")) return is_query_name(key.substr(6));
  return false;
}

void load_balance(LoadState& s, const Field& f, Backend& b) {
  std::string text;
  if (!read_string(s.diag, f, text)) return;
  std::vector<std::string_view> names;
  for (const auto& [name, value] : kBalances) {
    if (name == text) {
      b.balance = value;
      return;
    }
    names.push_back(name);
  }
  std::string message = "unknown balance " + quote(text);
  if (std::string near = closest(text, names); !near.empty()) {
    message += "; did you mean " + quote(near) + "?";
  } else {
    message +=
        " (expected random, round_robin, least_connections, least_response_time, "
        "ip_hash or consistent_hash)";
  }
  s.diag.error(f.mark, message);
}

void load_sticky(LoadState& s, const Field& f, Backend& b) {
  MapReader m(s.diag, f, "sticky", {"cookie", "secret_file", "max_age"});
  if (!m.ok()) return;
  Sticky sticky;
  if (const Field* cookie = m.require("cookie");
      cookie && read_string(s.diag, *cookie, sticky.cookie)) {
    if (!is_token(sticky.cookie)) {
      s.diag.error(cookie->mark, "invalid cookie name " + quote(sticky.cookie));
    }
  }
  if (const Field* file = m.find("secret_file")) {
    std::string path;
    if (read_string(s.diag, *file, path)) {
      if (path.empty()) {
        s.diag.error(file->mark, "\"secret_file\" must not be empty");
      } else {
        sticky.secret_file = resolve_path(s, path);
        read_secret_file(s, *file, "secret_file", sticky.secret_file, sticky.secret);
      }
    }
  }
  Duration max_age{0};
  if (m.get_duration("max_age", false, max_age)) sticky.max_age = max_age;
  b.sticky = std::move(sticky);
}

void load_expect_status(LoadState& s, const Field& f, HealthCheck& h) {
  std::string text;
  if (!read_string(s.diag, f, text)) return;
  auto code = [](std::string_view t) -> int {
    if (t.size() != 3 ||
        !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return -1;
    }
    int v = std::stoi(std::string(t));
    return v >= 100 && v <= 599 ? v : -1;
  };
  size_t dash = text.find('-');
  int lo = code(std::string_view(text).substr(0, dash));
  int hi = dash == std::string::npos ? lo : code(std::string_view(text).substr(dash + 1));
  if (lo < 0 || hi < 0 || lo > hi) {
    s.diag.error(f.mark,
                 "\"expect_status\" must be a status code such as 200 or a range such as "
                 "200-399, got " +
                     quote(text));
    return;
  }
  h.expect_status_min = static_cast<uint16_t>(lo);
  h.expect_status_max = static_cast<uint16_t>(hi);
}

void load_health_check(LoadState& s, const Field& f, Backend& b) {
  MapReader m(s.diag, f, "health_check",
              {"type", "path", "interval", "timeout", "rise", "fall", "expect_status"});
  if (!m.ok()) return;
  HealthCheck h;
  if (const Field* type = m.find("type")) {
    std::string text;
    if (read_string(s.diag, *type, text)) {
      if (text == "http") {
        h.type = HealthType::Http;
      } else if (text == "tcp") {
        h.type = HealthType::Tcp;
      } else {
        s.diag.error(type->mark, "health_check \"type\" must be http or tcp, got " + quote(text));
      }
    }
  }
  if (const Field* path = m.find("path"); path && read_string(s.diag, *path, h.path)) {
    if (h.path.empty() || h.path.front() != '/' ||
        std::any_of(h.path.begin(), h.path.end(),
                    [](unsigned char c) { return c <= 0x20 || c == 0x7f || c == '#'; })) {
      s.diag.error(path->mark,
                   "health_check \"path\" must start with \"/\" and hold no spaces, "
                   "got " +
                       quote(h.path));
    } else if (h.type == HealthType::Tcp) {
      s.diag.warning(path->key_mark, "\"path\" has no effect on a tcp health check");
    }
  }
  m.get_duration("interval", false, h.interval);
  m.get_duration("timeout", false, h.timeout);
  m.get_uint32("rise", 1, 1000, h.rise);
  m.get_uint32("fall", 1, 1000, h.fall);
  if (const Field* expect = m.find("expect_status")) load_expect_status(s, *expect, h);
  if (h.timeout > h.interval) {
    const Field* t = m.find("timeout");
    s.diag.warning(t != nullptr ? t->key_mark : m.mark(),
                   "health_check timeout is longer than its interval");
  }
  b.health_check = h;
}

void load_backend_limits(LoadState& s, const Field& f, BackendLimits& l) {
  MapReader m(s.diag, f, "backend limits",
              {"max_active_per_server", "queue_size", "queue_timeout"});
  if (!m.ok()) return;
  m.get_uint32("max_active_per_server", 0, 1000000, l.max_active_per_server);
  m.get_uint32("queue_size", 0, 10000000, l.queue_size);
  m.get_duration("queue_timeout", false, l.queue_timeout);
}

void load_backend_timeouts(LoadState& s, const Field& f, BackendTimeouts& t) {
  MapReader m(s.diag, f, "backend timeouts", {"connect", "response"});
  if (!m.ok()) return;
  m.get_duration("connect", false, t.connect);
  m.get_duration("response", false, t.response);
}

void load_passive(LoadState& s, const Field& f, Backend& b) {
  MapReader m(s.diag, f, "passive", {"failures", "cooldown", "max_ejected_percent"});
  if (!m.ok()) return;
  Passive p;
  m.get_uint32("failures", 1, 1000, p.failures);
  m.get_duration("cooldown", false, p.cooldown);
  m.get_uint32("max_ejected_percent", 0, 100, p.max_ejected_percent);
  b.passive = p;
}

void load_retry_budget(LoadState& s, const Field& f, Backend& b) {
  MapReader m(s.diag, f, "retry_budget", {"percent", "min_retries"});
  if (!m.ok()) return;
  m.get_uint32("percent", 0, 1000, b.retry_budget.percent);
  m.get_uint32("min_retries", 0, 1000000, b.retry_budget.min_retries);
}

void load_balance_factor(LoadState& s, const Field& f, Backend& b) {
  std::string text;
  if (!read_string(s.diag, f, text)) return;
  double v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || !(v >= 1.0 && v <= 100.0)) {
    s.diag.error(f.mark, "\"hash_balance_factor\" must be a number from 1.0 to 100 (e.g. 1.25)");
    return;
  }
  b.hash_balance_factor = v;
}

// `resolve: DURATION` (at least 1s) on a server whose host is a DNS name: an IP address has
// nothing to look up, so it is refused rather than silently resolved once.
void load_server_resolve(LoadState& s, MapReader& m, Server& server) {
  Duration every{0};
  if (!m.get_duration("resolve", false, every)) return;
  const Field* f = m.find("resolve");
  if (every < kMinLookupInterval) {
    s.diag.error(f->mark, "\"resolve\" must be at least 1s");
    return;
  }
  if (!server.host.empty() && (is_ipv4(server.host) || is_ipv6(server.host))) {
    s.diag.error(f->key_mark,
                 "\"resolve\" needs a DNS name, but " + quote(server.host) + " is an IP address");
    return;
  }
  if (const Field* name = m.find("name")) {
    s.diag.warning(name->key_mark,
                   "\"name\" has no effect with \"resolve\": each address found is a server "
                   "named IP:PORT");
  }
  server.resolve = every;
}

void load_servers(LoadState& s, const Field& f, Backend& b) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  if (items.empty()) s.diag.error(f.mark, "\"servers\" needs at least one server");
  std::map<std::string, YAML::Mark, std::less<>> names;
  std::map<std::string, YAML::Mark, std::less<>> addresses;
  for (size_t i = 0; i < items.size(); ++i) {
    MapReader m(s.diag, items[i], "server", {"address", "weight", "name", "tls", "resolve"});
    if (!m.ok()) continue;
    Server server;
    server.pos = s.diag.pos(m.mark());
    if (const Field* address = m.require("address");
        address && read_string(s.diag, *address, server.address)) {
      HostPort hp;
      if (std::string why = parse_host_port(server.address, hp); !why.empty()) {
        s.diag.error(address->mark, why);
      } else {
        server.host = hp.host;
        server.port = hp.port;
        auto [it, inserted] = addresses.emplace(server.address, address->mark);
        if (!inserted) {
          s.diag.warning(address->mark, "server address " + quote(server.address) +
                                            " is listed twice (first at line " +
                                            line_of(s.diag, it->second) + ")");
        }
      }
    }
    m.get_uint32("weight", 0, kMaxWeight, server.weight);
    YAML::Mark name_mark = m.mark();
    if (const Field* name = m.find("name")) {
      name_mark = name->mark;
      read_name(s.diag, *name, server.name);
    } else {
      server.name = b.name + "-" + std::to_string(i + 1);
    }
    if (!server.name.empty()) {
      auto [it, inserted] = names.emplace(server.name, name_mark);
      if (!inserted) {
        s.diag.error(name_mark, "duplicate server name " + quote(server.name) + " in backend " +
                                    quote(b.name) + " (first at line " +
                                    line_of(s.diag, it->second) + ")");
      }
    }
    if (const Field* tls = m.find("tls")) load_server_tls(s, *tls, server.tls);
    load_server_resolve(s, m, server);
    b.servers.push_back(std::move(server));
  }
  if (!b.servers.empty() && std::all_of(b.servers.begin(), b.servers.end(),
                                        [](const Server& sv) { return sv.weight == 0; })) {
    s.diag.warning(f.key_mark, "every server of backend " + quote(b.name) +
                                   " has weight 0: it receives no traffic");
  }
}

// `discovery: { srv: NAME, interval: DURATION }`: the servers are the SRV records of NAME.
void load_discovery(LoadState& s, const Field& f, Backend& b) {
  MapReader m(s.diag, f, "discovery", {"srv", "interval"});
  if (!m.ok()) return;
  Discovery d;
  d.pos = s.diag.pos(m.mark());
  if (const Field* srv = m.require("srv"); srv && read_string(s.diag, *srv, d.srv)) {
    if (!d.srv.empty() && d.srv.back() == '.') d.srv.pop_back();  // fully qualified
    if (!is_hostname(d.srv) || is_ipv4(d.srv)) {
      s.diag.error(srv->mark, "\"srv\" must be a DNS name such as _http._tcp.app.internal, got " +
                                  quote(d.srv));
    }
  }
  if (m.get_duration("interval", false, d.interval) && d.interval < kMinLookupInterval) {
    s.diag.error(m.find("interval")->mark, "discovery \"interval\" must be at least 1s");
  }
  b.discovery = std::move(d);
}

// `protocol:` and what it asks of the servers: TLS for h2 and auto, none for h2c; no PROXY
// header on a connection many clients' requests share.
void load_protocol(LoadState& s, const Field& f, Backend& b) {
  std::string text = f.value.IsScalar() ? f.value.Scalar() : "";
  if (text == "http1") {
    b.protocol = UpstreamProtocol::Http1;
  } else if (text == "h2") {
    b.protocol = UpstreamProtocol::H2;
  } else if (text == "h2c") {
    b.protocol = UpstreamProtocol::H2c;
  } else if (text == "auto") {
    b.protocol = UpstreamProtocol::Auto;
  } else {
    s.diag.error(f.mark, "\"protocol\" must be http1, h2, h2c or auto, got " + describe(f.value));
    return;
  }
  if (b.protocol == UpstreamProtocol::Http1) return;
  if (b.send_proxy_protocol != ProxyProtocolVersion::Off) {
    s.diag.error(f.mark, "\"send_proxy_protocol\" cannot be used with protocol " + text +
                             ": a PROXY header names one client, and an HTTP/2 connection "
                             "carries many clients' requests");
  }
  if (b.discovery && b.protocol != UpstreamProtocol::H2c) {
    s.diag.error(f.mark, "protocol " + text +
                             " needs TLS to the servers, and servers found by \"discovery\" "
                             "have none (use h2c for clear text)");
  }
  for (const Server& sv : b.servers) {
    if (b.protocol == UpstreamProtocol::H2c && sv.tls) {
      s.diag.error(f.mark, "protocol h2c is HTTP/2 in clear text, but server " + quote(sv.name) +
                               " has \"tls\" (use protocol h2 or auto)");
    } else if (b.protocol != UpstreamProtocol::H2c && !sv.tls) {
      s.diag.error(f.mark, "protocol " + text + " needs TLS to the servers, but server " +
                               quote(sv.name) + " has no \"tls\" (use h2c for clear text)");
    }
  }
}

void load_backend(LoadState& s, const Field& item,
                  std::map<std::string, YAML::Mark, std::less<>>& names) {
  MapReader m(s.diag, item, "backend",
              {"name", "balance", "hash_key", "hash_balance_factor", "sticky", "health_check",
               "passive", "slow_start", "limits", "timeouts", "retries", "retry_budget",
               "request_buffering", "servers", "discovery", "send_proxy_protocol", "protocol"});
  if (!m.ok()) return;
  Backend b;
  b.pos = s.diag.pos(m.mark());
  if (const Field* name = m.require("name"); name && read_name(s.diag, *name, b.name)) {
    auto [it, inserted] = names.emplace(b.name, name->mark);
    if (!inserted) {
      s.diag.error(name->mark, "duplicate backend name " + quote(b.name) + " (first at line " +
                                   line_of(s.diag, it->second) + ")");
    }
  }
  if (const Field* balance = m.find("balance")) load_balance(s, *balance, b);
  if (const Field* key = m.find("hash_key"); key && read_string(s.diag, *key, b.hash_key)) {
    if (!valid_hash_key(b.hash_key)) {
      s.diag.error(key->mark, "invalid hash_key " + quote(b.hash_key) +
                                  " (expected client_ip, path, header:NAME, cookie:NAME or "
                                  "query:NAME)");
    } else if (b.balance != Balance::ConsistentHash && b.hash_key != "client_ip") {
      // Not for the default value: the contract's own example writes it next to round_robin.
      s.diag.warning(key->key_mark, "\"hash_key\" has no effect unless balance is consistent_hash");
    }
  }
  if (const Field* f = m.find("sticky")) load_sticky(s, *f, b);
  if (const Field* f = m.find("health_check")) load_health_check(s, *f, b);
  if (const Field* f = m.find("limits")) load_backend_limits(s, *f, b.limits);
  if (const Field* f = m.find("timeouts")) load_backend_timeouts(s, *f, b.timeouts);
  m.get_uint32("retries", 0, kMaxRetries, b.retries);
  if (const Field* f = m.find("retry_budget")) load_retry_budget(s, *f, b);
  if (const Field* f = m.find("request_buffering")) {
    load_request_buffering(s, *f, b.request_buffering);
  }
  if (const Field* f = m.find("passive")) load_passive(s, *f, b);
  if (const Field* f = m.find("send_proxy_protocol")) {
    std::string text = f->value.IsScalar() ? f->value.Scalar() : "";
    if (text == "v1") {
      b.send_proxy_protocol = ProxyProtocolVersion::V1;
    } else if (text == "v2") {
      b.send_proxy_protocol = ProxyProtocolVersion::V2;
    } else if (text == "off" || text == "false") {
      b.send_proxy_protocol = ProxyProtocolVersion::Off;
    } else {
      s.diag.error(f->mark,
                   "\"send_proxy_protocol\" must be off, v1 or v2, got " + describe(f->value));
    }
  }
  m.get_duration("slow_start", true, b.slow_start);
  if (const Field* f = m.find("hash_balance_factor")) load_balance_factor(s, *f, b);
  // The servers come from `servers:` or from `discovery:` (SRV records), never both: SRV
  // priorities would have no meaning for the listed servers.
  if (const Field* f = m.find("discovery")) {
    load_discovery(s, *f, b);
    if (m.has("servers")) {
      s.diag.error(f->key_mark, "backend " + quote(b.name) +
                                    " has both \"servers\" and \"discovery\"; use one of them");
    }
  } else if (const Field* f = m.require("servers")) {
    load_servers(s, *f, b);
  }
  if (const Field* f = m.find("protocol")) load_protocol(s, *f, b);
  s.backend_marks.push_back(m.mark());
  s.config.backends.push_back(std::move(b));
}

}  // namespace

void load_request_buffering(LoadState& s, const Field& f, std::optional<RequestBuffering>& out) {
  MapReader m(s.diag, f, "request_buffering", {"max"});
  if (!m.ok()) return;
  RequestBuffering rb;
  m.get_size("max", 1, 64 * 1024 * 1024, rb.max);
  out = rb;
}

void load_backends(LoadState& s, const Field& f) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  std::map<std::string, YAML::Mark, std::less<>> names;
  for (const Field& item : items)
    load_backend(s, item, names);
}

}  // namespace weir::config
