#pragma once
// The runtime form of a config: addresses resolved, server state attached. Immutable once built;
// shared by every worker through a shared_ptr and replaced as a whole on reload.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "model/discovered.hpp"
#include "model/hash_key.hpp"
#include "model/ids.hpp"
#include "model/registry.hpp"
#include "model/server_state.hpp"
#include "model/sticky.hpp"
#include "net/address.hpp"
#include "net/tls/tls.hpp"

namespace weir::quic {
class TlsContext;
}

namespace weir::model {

class ClientTable;

struct ServerRuntime {
  std::string name;
  std::string address_text;  // as configured, for the admin API (SRV: "target:port")
  net::SocketAddress addr;
  uint32_t weight = 1;    // discovery.srv: 0 while its priority is not the one serving
  uint16_t priority = 0;  // discovery.srv: the record's priority
  std::shared_ptr<ServerState> state;
  uint32_t uid = 0;  // process-wide number (stable across reloads) for pools and counters
  std::shared_ptr<net::tls::ClientContext> tls;  // re-encryption (servers[].tls), else null
};

struct BackendRuntime {
  const config::Backend* cfg = nullptr;
  // Requests waiting for a server slot (limits.max_active_per_server), all workers.
  std::shared_ptr<std::atomic<int64_t>> queued = std::make_shared<std::atomic<int64_t>>(0);
  std::vector<ServerRuntime> servers;
  std::vector<ServerInfo> infos;  // what the balancer sees, parallel to servers
  KeySpec hash_key;               // ip_hash: client_ip; consistent_hash: hash_key
  std::optional<StickyTable> sticky;
  // discovery.srv: the SRV priority whose servers take traffic, the lowest with a server in
  // rotation when the snapshot was built (the others have weight 0); -1 = no SRV servers.
  // The discovery thread rebuilds when serving_priority() tells another one.
  int active_priority = -1;

  const ServerRuntime& server(ServerId id) const { return servers[id.index()]; }
  ServerState& state(ServerId id) const { return *servers[id.index()].state; }
  bool has(ServerId id) const { return id.valid() && id.index() < servers.size(); }
};

struct ListenerRuntime {
  const config::Listener* cfg = nullptr;
  std::vector<net::SocketAddress> addrs;
  std::shared_ptr<net::tls::ServerContext> tls;  // certificates, SNI, ALPN; null = plain
  std::shared_ptr<quic::TlsContext> quic_tls;     // `http3: true`: the same, for QUIC (GnuTLS)
  // `client_limits`: the counts of every worker, kept across reloads (ServerRegistry).
  std::shared_ptr<ClientTable> clients;
  KeySpec limit_key;  // the rate's key (header/cookie name) in hash_key's terms
  // The access log this listener writes to (its own `access_log`, else the top-level one): a
  // destination id of the process's log writer, -1 = none; `log_combined`: the format.
  int log_destination = -1;
  bool log_combined = false;
};

struct Snapshot {
  config::ConfigPtr config;
  std::vector<ListenerRuntime> listeners;
  std::vector<std::shared_ptr<cache::Store>> caches;  // by config::Config::caches index
  std::vector<BackendRuntime> backends;
  unsigned workers = 1;

  const BackendRuntime& backend(BackendId id) const { return backends[id.index()]; }
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

// Builds a snapshot; on failure returns null and appends messages to `errors`.
// Opens (or finds) an access log destination: its id, or -1 with `error`.
using OpenAccessLog = std::function<int(const std::string& path, std::string& error)>;

// `discovered`: the servers of `resolve:` entries and `discovery.srv` backends (src/discovery/);
// without it a `resolve:` server is resolved once here (blocking) and SRV backends are empty.
SnapshotPtr build_snapshot(config::ConfigPtr cfg, ServerRegistry& registry,
                           std::vector<std::string>& errors, const OpenAccessLog& open_log = {},
                           const Discovered* discovered = nullptr);

// The lowest SRV priority of `b` with a server in rotation now (the lowest of all when none
// is), -1 when `b` has no SRV servers.
int serving_priority(const BackendRuntime& b);

}  // namespace weir::model
