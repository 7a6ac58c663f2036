#pragma once
// The pieces of load_config (private to config/): one function per section of the file, sharing
// the diagnostics and the cross-references that can only be checked once everything is read.
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/yaml_reader.hpp"

namespace weir::config {

struct BackendRef {
  size_t listener = 0;
  size_t route = 0;
  YAML::Mark mark;  // the `backend:` value
};

struct LoadState {
  Diagnostics& diag;
  Config& config;
  std::string base_dir;  // relative file names in the config are relative to this
  std::vector<BackendRef> backend_refs;
  std::vector<YAML::Mark> backend_marks;  // parallel to config.backends
  // "host:port" (host lower-cased) → who listens there, for duplicate addresses.
  std::map<std::string, std::string> addresses;
};

// Names of listeners, backends and servers: letters, digits, '.', '_' and '-'.
bool read_name(Diagnostics& d, const Field& f, std::string& out);
// An address "HOST:PORT" / "[V6]:PORT" that something listens on; also checks it is not taken.
bool read_listen_address(LoadState& s, const Field& f, const std::string& owner, std::string& out);

void load_listeners(LoadState& s, const Field& f);
// A file holding a secret (sticky secret_file, admin token_file): read now, trailing white space
// dropped, at least 16 bytes. `key` names the config key in errors.
bool read_secret_file(LoadState& s, const Field& f, std::string_view key, const std::string& path,
                      std::string& out);
// An RFC 9110 token (header names, methods): letters, digits and !#$%&'*+-.^_`|~
// (route_loader.cpp).
bool is_token(std::string_view s);
// ASCII lower case (header_rules_loader.cpp).
std::string lower(std::string_view s);
// route_loader.cpp: a path key (starts with "/"; no spaces, controls, "?" or "#"), the match
// keys beyond host and path_prefix, and the route actions.
bool read_route_path(Diagnostics& d, const Field& f, std::string_view key, std::string& out);
bool load_route_match_extra(LoadState& s, const MapReader& m, RouteMatch& match);
void load_route_redirect(LoadState& s, const Field& f, Route& route);
void load_route_respond(LoadState& s, const Field& f, Route& route);
void load_route_rewrite(LoadState& s, const Field& f, Route& route);
// `request_buffering: { max: SIZE }` (routes and backends).
void load_request_buffering(LoadState& s, const Field& f, std::optional<RequestBuffering>& out);
void load_backends(LoadState& s, const Field& f);
// proxy_loader.cpp: the reverse-proxy keys of listeners (and `access` of routes).
void load_access(LoadState& s, const Field& f, std::optional<AccessList>& out);
void load_trusted_proxies(LoadState& s, const Field& f, Listener& l);
void load_client_limits(LoadState& s, const Field& f, Listener& l);
// `cluster:` (fleet.md), before the listeners.
void load_cluster(LoadState& s, const Field& f);
void load_request_id(LoadState& s, const Field& f, Listener& l);
void load_error_pages(LoadState& s, const Field& f, Listener& l);
void load_access_log(LoadState& s, const Field& f, std::optional<AccessLog>& out);
// edge_loader.cpp: `compression` (a route may turn its listener's off with `false`), `static`.
void load_route_static(LoadState& s, const Field& f, Route& route);
void load_caches(LoadState& s, const Field& f);
// A route's `cache: NAME` (the caches are loaded first).
void load_route_cache(LoadState& s, const Field& f, Route& route);
void load_compression(LoadState& s, const Field& f, bool on_route, std::optional<Compression>& out);
// fleet_loader.cpp: `announce:` (after the backends: `when.backends` names them).
void load_announce(LoadState& s, const Field& f);

}  // namespace weir::config
