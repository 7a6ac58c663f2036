#pragma once
// The TLS keys (private to config/): a listener's `tls:` and a server's `tls:`, plus the small
// readers they share with the rest of the loader. Only paths are read here: the certificates
// and keys themselves are loaded and checked by net/tls.
#include <optional>
#include <string>

#include "config/loader_parts.hpp"

namespace weir::config {

// A file name written in the config: a relative one is relative to the config file's folder.
std::string resolve_path(const LoadState& s, const std::string& path);

// An unquoted true or false (also True/TRUE/False/FALSE, as in YAML 1.2).
bool read_bool(Diagnostics& d, const Field& f, bool& out);

// `tls:` of an http listener: `certificates` (each `cert`, `key`, `ocsp`), `min_version`,
// `alpn`, `hsts`, `ocsp` (the certificates' default: `fetch` only). Sets `out` (even when some
// of it is invalid, which is reported) unless the value is not a map at all.
void load_listener_tls(LoadState& s, const Field& f, std::optional<ListenerTls>& out);

// `tls:` of a server: a map of `ca`, `sni` and `verify`, or `true` (all defaults) / `false`.
void load_server_tls(LoadState& s, const Field& f, std::optional<ServerTls>& out);

}  // namespace weir::config
