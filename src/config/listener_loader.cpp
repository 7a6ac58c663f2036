// `listeners:` — addresses, mode, routes, TLS and the per-listener limits.
#include <algorithm>
#include <map>

#include "config/address.hpp"
#include "config/header_rules_loader.hpp"
#include "config/loader_parts.hpp"
#include "config/tls_loader.hpp"

namespace weir::config {
namespace {

// Exact host or "*.suffix", lower-cased; compared against the Host header without its port.
bool read_route_host(Diagnostics& d, const Field& f, std::string& out) {
  std::string host;
  if (!read_string(d, f, host)) return false;
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (host == "*") {
    d.error(f.mark, "host \"*\" matches every host: leave out \"host\" instead");
    return false;
  }
  std::string_view name = host;
  if (name.starts_with("*.")) name.remove_prefix(2);
  bool bracketed_v6 = name.size() > 2 && name.front() == '[' && name.back() == ']' &&
                      name.data() == host.data() && is_ipv6(name.substr(1, name.size() - 2));
  if (!bracketed_v6 && !is_hostname(name)) {
    std::string why = name.find(':') != std::string_view::npos ? " (without a port)" : "";
    d.error(f.mark, "invalid host " + quote(host) + why +
                        ": expected a host name such as api.example.com or *.example.com");
    return false;
  }
  out = std::move(host);
  return true;
}

// tcp mode: `match: { sni: NAME }`, exact or "*.suffix", case-insensitive.
bool load_tcp_match(LoadState& s, const Field& f, RouteMatch& match) {
  MapReader m(s.diag, f, "match", {"sni"});
  if (!m.ok()) return false;
  const Field* sni = m.require("sni");
  if (sni == nullptr) return false;
  std::string name;
  if (!read_string(s.diag, *sni, name)) return false;
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string_view bare = name;
  if (bare.starts_with("*.")) bare.remove_prefix(2);
  if (!is_hostname(bare) || is_ipv4(bare) || is_ipv6(bare)) {
    s.diag.error(sni->mark, "invalid sni " + quote(name) +
                                ": expected a host name such as www.example.com or *.example.com");
    return false;
  }
  match.sni = std::move(name);
  return true;
}

bool load_match(LoadState& s, const Field& f, RouteMatch& match) {
  MapReader m(s.diag, f, "match",
              {"host", "path", "path_prefix", "path_regex", "methods", "headers", "cookies",
               "query", "sni"});
  if (!m.ok()) return false;
  if (const Field* sni = m.find("sni")) {
    s.diag.error(sni->key_mark,
                 "\"sni\" matches the TLS ClientHello of a tcp listener; an http "
                 "listener routes by \"host\"");
  }
  bool ok = load_route_match_extra(s, m, match);
  if (const Field* host = m.find("host")) ok &= read_route_host(s.diag, *host, match.host);
  if (const Field* prefix = m.find("path_prefix")) {
    ok &= read_route_path(s.diag, *prefix, "path_prefix", match.path_prefix);
  }
  return ok;
}

// A route whose backend name could be read; its index is resolved once backends are known.
void add_route(LoadState& s, Listener& l, size_t listener_index, Route route,
               const Field& backend) {
  if (!read_string(s.diag, backend, route.backend)) return;
  s.backend_refs.push_back(BackendRef{listener_index, l.routes.size(), backend.mark});
  l.routes.push_back(std::move(route));
}

// tcp mode: each route is `match: { sni }` and `backend`.
void load_tcp_routes(LoadState& s, const Field& f, Listener& l, size_t listener_index) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  if (items.empty()) s.diag.error(f.mark, "\"routes\" needs at least one route");
  for (const Field& item : items) {
    MapReader m(s.diag, item, "tcp route", {"match", "backend"});
    if (!m.ok()) continue;
    Route route;
    route.pos = s.diag.pos(item.mark);
    const Field* match = m.require("match");
    const Field* backend = m.require("backend");
    if (match == nullptr || backend == nullptr) continue;
    if (!load_tcp_match(s, *match, route.match)) continue;
    add_route(s, l, listener_index, std::move(route), *backend);
  }
}

void load_routes(LoadState& s, const Field& f, Listener& l, size_t listener_index) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  if (items.empty()) s.diag.error(f.mark, "\"routes\" needs at least one route");
  const YAML::Mark* catch_all = nullptr;
  for (const Field& item : items) {
    MapReader m(s.diag, item, "route",
                {"match", "request_headers", "response_headers", "request_buffering", "backend",
                 "redirect", "respond", "static", "rewrite", "access", "compression", "cache"});
    if (!m.ok()) continue;
    Route route;
    route.pos = s.diag.pos(item.mark);
    if (const Field* match = m.find("match")) load_match(s, *match, route.match);
    if (const Field* access = m.find("access")) load_access(s, *access, route.access);
    if (const Field* c = m.find("compression")) load_compression(s, *c, true, route.compression);
    if (const Field* rules = m.find("request_headers")) {
      load_header_rules(s.diag, *rules, true, route.request_headers);
    }
    if (const Field* rules = m.find("response_headers")) {
      load_header_rules(s.diag, *rules, false, route.response_headers);
    }
    if (const Field* rb = m.find("request_buffering")) {
      load_request_buffering(s, *rb, route.request_buffering);
    }
    if (catch_all != nullptr) {
      s.diag.warning(item.mark, "this route is never used: the route at line " +
                                    line_of(s.diag, *catch_all) + " matches every request");
    } else if (route.match.matches_everything()) {
      catch_all = &item.mark;
    }
    // Exactly one action.
    const Field* backend = m.find("backend");
    const Field* redirect = m.find("redirect");
    const Field* respond = m.find("respond");
    const Field* static_files = m.find("static");
    std::vector<const Field*> actions;
    for (const Field* a : {backend, redirect, respond, static_files})
      if (a) actions.push_back(a);
    if (actions.empty()) {
      s.diag.error(
          item.mark,
          "a route needs one action: \"backend\", \"redirect\", \"respond\" or \"static\"");
      continue;
    }
    if (actions.size() > 1) {
      // The later one in the file.
      const Field* second = *std::max_element(
          actions.begin(), actions.end(),
          [](const Field* a, const Field* b) { return a->key_mark.pos < b->key_mark.pos; });
      s.diag.error(second->key_mark,
                   "a route has one action only: \"backend\", \"redirect\", "
                   "\"respond\" or \"static\"");
      continue;
    }
    if (const Field* c = m.find("cache")) {
      if (!backend) {
        s.diag.error(c->key_mark,
                     "\"cache\" stores what a backend answers: the route needs "
                     "\"backend\"");
      } else {
        load_route_cache(s, *c, route);
      }
    }
    if (const Field* rw = m.find("rewrite")) {
      if (!backend) {
        s.diag.error(rw->key_mark,
                     "\"rewrite\" changes the path forwarded to a backend: the "
                     "route needs \"backend\"");
      } else {
        load_route_rewrite(s, *rw, route);
      }
    }
    if (redirect) {
      load_route_redirect(s, *redirect, route);
      l.routes.push_back(std::move(route));
    } else if (respond) {
      load_route_respond(s, *respond, route);
      l.routes.push_back(std::move(route));
    } else if (static_files) {
      load_route_static(s, *static_files, route);
      l.routes.push_back(std::move(route));
    } else {
      add_route(s, l, listener_index, std::move(route), *backend);
    }
  }
}

void load_listen(LoadState& s, const Field& f, Listener& l) {
  const std::string owner = "listener " + quote(l.name);
  if (f.value.IsScalar()) {
    std::string address;
    if (read_listen_address(s, f, owner, address)) l.listen.push_back(address);
    return;
  }
  std::vector<Field> items;
  if (!f.value.IsSequence()) {
    s.diag.error(f.mark,
                 "\"listen\" must be an address or a list of addresses, got " + describe(f.value));
    return;
  }
  read_list(s.diag, f, items);
  if (items.empty()) s.diag.error(f.mark, "\"listen\" needs at least one address");
  for (const Field& item : items) {
    std::string address;
    if (read_listen_address(s, item, owner, address)) l.listen.push_back(address);
  }
}

void load_listener_timeouts(LoadState& s, const Field& f, ListenerTimeouts& t) {
  MapReader m(s.diag, f, "listener timeouts", {"header", "idle", "body"});
  if (!m.ok()) return;
  m.get_duration("header", false, t.header);
  m.get_duration("idle", false, t.idle);
  m.get_duration("body", false, t.body);
}

// `tls`, `h2c` and `redirect_https`: TLS termination is for http listeners, and the other two
// for plain (not TLS) http listeners.
void load_listener_protocols(LoadState& s, MapReader& m, Listener& l) {
  const Field* tls = m.find("tls");
  const Field* h2c = m.find("h2c");
  const Field* redirect = m.find("redirect_https");
  const Field* http3 = m.find("http3");
  if (http3 != nullptr && read_bool(s.diag, *http3, l.http3) && l.http3) {
    if (l.mode == ListenerMode::Tcp) {
      s.diag.error(http3->key_mark, "http3 is for http listeners: a tcp listener forwards bytes");
    } else if (tls == nullptr) {
      s.diag.error(http3->key_mark,
                   "http3 needs tls: QUIC always encrypts, with the listener's certificates");
    }
  }
  if (l.mode == ListenerMode::Tcp) {
    if (tls != nullptr) {
      s.diag.error(tls->key_mark,
                   "TLS termination is for http listeners: a tcp listener forwards TLS untouched");
    }
    if (h2c != nullptr) {
      s.diag.error(h2c->key_mark,
                   "h2c is for http listeners: a tcp listener forwards bytes untouched");
    }
    if (redirect != nullptr) {
      s.diag.error(redirect->key_mark,
                   "redirect_https is for http listeners: a tcp listener forwards bytes untouched");
    }
    return;
  }
  if (tls != nullptr) load_listener_tls(s, *tls, l.tls);
  if (h2c != nullptr) {
    if (tls != nullptr) {
      s.diag.error(h2c->key_mark, "h2c is for plain listeners: a TLS listener offers h2 by ALPN");
    } else {
      read_bool(s.diag, *h2c, l.h2c);
    }
  }
  if (redirect != nullptr) {
    uint32_t port = 0;
    if (tls != nullptr) {
      s.diag.error(redirect->key_mark,
                   "redirect_https is for plain listeners: a TLS listener already speaks HTTPS");
    } else if (read_uint32(s.diag, *redirect, 1, 65535, port)) {
      l.redirect_https = static_cast<uint16_t>(port);
    }
  }
}

void load_listener(LoadState& s, const Field& item,
                   std::map<std::string, YAML::Mark, std::less<>>& names) {
  MapReader m(s.diag, item, "listener",
              {"name",
               "listen",
               "mode",
               "routes",
               "backend",
               "max_connections",
               "timeouts",
               "trusted_proxies",
               "tls",
               "h2c",
               "http3",
               "redirect_https",
               "hide_server_headers",
               "proxy_protocol",
               "access",
               "client_limits",
               "request_id",
               "error_pages",
               "access_log",
               "compression",
               "freebind"});
  if (!m.ok()) return;
  const size_t index = s.config.listeners.size();
  Listener l;
  l.pos = s.diag.pos(m.mark());
  if (const Field* name = m.require("name"); name && read_name(s.diag, *name, l.name)) {
    auto [it, inserted] = names.emplace(l.name, name->mark);
    if (!inserted) {
      s.diag.error(name->mark, "duplicate listener name " + quote(l.name) + " (first at line " +
                                   line_of(s.diag, it->second) + ")");
    }
  }
  if (const Field* listen = m.require("listen")) load_listen(s, *listen, l);
  if (const Field* hide = m.find("hide_server_headers"))
    read_bool(s.diag, *hide, l.hide_server_headers);
  if (const Field* freebind = m.find("freebind")) read_bool(s.diag, *freebind, l.freebind);
  if (const Field* mode = m.find("mode")) {
    std::string text;
    if (read_string(s.diag, *mode, text)) {
      if (text == "http") {
        l.mode = ListenerMode::Http;
      } else if (text == "tcp") {
        l.mode = ListenerMode::Tcp;
      } else {
        s.diag.error(mode->mark, "\"mode\" must be http or tcp, got " + quote(text));
      }
    }
  }
  const Field* routes = m.find("routes");
  const Field* backend = m.find("backend");
  const Field* redirect = m.find("redirect_https");
  if (l.mode == ListenerMode::Tcp) {
    if (routes != nullptr) load_tcp_routes(s, *routes, l, index);
    if (routes == nullptr && backend == nullptr) {
      s.diag.error(m.mark(), "tcp listener needs \"backend\" (or \"routes\" by sni)");
    }
  } else {
    if (routes != nullptr) load_routes(s, *routes, l, index);
    // A listener that redirects every request to HTTPS needs nothing to route to.
    if (routes == nullptr && backend == nullptr && redirect == nullptr) {
      s.diag.error(m.mark(), "listener needs routes or backend");
    }
  }
  load_listener_protocols(s, m, l);
  // The shorthand is a catch-all route after any explicit ones, with no header rules.
  if (backend != nullptr) {
    Route route;
    route.pos = s.diag.pos(backend->key_mark);
    add_route(s, l, index, std::move(route), *backend);
  }
  m.get_uint32("max_connections", 1, 10000000, l.max_connections);
  if (const Field* t = m.find("timeouts")) load_listener_timeouts(s, *t, l.timeouts);
  if (const Field* t = m.find("trusted_proxies")) load_trusted_proxies(s, *t, l);
  if (const Field* p = m.find("proxy_protocol")) read_bool(s.diag, *p, l.proxy_protocol);
  if (const Field* a = m.find("access")) load_access(s, *a, l.access);
  if (const Field* c = m.find("client_limits")) load_client_limits(s, *c, l);
  if (const Field* r = m.find("request_id")) {
    if (l.mode == ListenerMode::Tcp) {
      s.diag.error(r->key_mark, "\"request_id\" is a header: it is for http listeners");
    } else {
      load_request_id(s, *r, l);
    }
  }
  if (const Field* e = m.find("error_pages")) {
    if (l.mode == ListenerMode::Tcp) {
      s.diag.error(e->key_mark, "\"error_pages\" are HTTP answers: they are for http listeners");
    } else {
      load_error_pages(s, *e, l);
    }
  }
  if (const Field* a = m.find("access_log")) load_access_log(s, *a, l.access_log);
  if (const Field* c = m.find("compression")) {
    if (l.mode == ListenerMode::Tcp) {
      s.diag.error(c->key_mark,
                   "\"compression\" is for http listeners: a tcp listener does not "
                   "read the bytes it forwards");
    } else {
      load_compression(s, *c, false, l.compression);
    }
  }
  s.config.listeners.push_back(std::move(l));
}

}  // namespace

void load_listeners(LoadState& s, const Field& f) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  if (items.empty()) s.diag.error(f.mark, "at least one listener is required");
  std::map<std::string, YAML::Mark, std::less<>> names;
  for (const Field& item : items)
    load_listener(s, item, names);
}

}  // namespace weir::config
