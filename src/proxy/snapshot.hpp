#pragma once
// The runtime form of a config: addresses resolved, server state attached. Immutable once built;
// shared by every worker through a shared_ptr and replaced as a whole on reload.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "balance/balancer.hpp"
#include "config/config.hpp"
#include "net/address.hpp"
#include "net/tls/tls.hpp"
#include "proxy/hash_key.hpp"
#include "proxy/sticky.hpp"

namespace weir::proxy {

struct ServerRuntime {
  std::string name;
  std::string address_text;  // as configured, for the admin API
  net::SocketAddress addr;
  uint32_t weight = 1;
  std::shared_ptr<balance::ServerState> state;
  uint32_t id = 0;  // process-wide id (stable across reloads) for pools and counters
  std::shared_ptr<net::tls::ClientContext> tls;  // re-encryption (servers[].tls), else null
};

struct BackendRuntime {
  const config::Backend* cfg = nullptr;
  // Requests waiting for a server slot (limits.max_active_per_server), all workers.
  std::shared_ptr<std::atomic<int64_t>> queued = std::make_shared<std::atomic<int64_t>>(0);
  std::vector<ServerRuntime> servers;
  std::vector<balance::ServerInfo> infos;  // what the balancer sees, parallel to servers
  KeySpec hash_key;                        // ip_hash: client_ip; consistent_hash: hash_key
  std::optional<StickyTable> sticky;
};

struct ListenerRuntime {
  const config::Listener* cfg = nullptr;
  std::vector<net::SocketAddress> addrs;
  std::shared_ptr<net::tls::ServerContext> tls;  // certificates, SNI, ALPN; null = plain
};

struct Snapshot {
  config::ConfigPtr config;
  std::vector<ListenerRuntime> listeners;
  std::vector<BackendRuntime> backends;
  unsigned workers = 1;
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

// Keeps ServerState (health, in-flight counts) and ids alive across reloads, keyed by
// backend name, server name and address.
class ServerRegistry {
 public:
  std::pair<std::shared_ptr<balance::ServerState>, uint32_t> get(const std::string& key);
  // The key for sticky cookies of backends without a secret_file: made once per process.
  const std::string& process_sticky_key();
  // True if the random-key warning for this backend was already logged.
  bool warned_random_key(const std::string& backend);
  // TLS session-ticket keys of the process: every listener and worker, across reloads.
  const std::shared_ptr<net::tls::TicketKeys>& ticket_keys();

 private:
  std::mutex mu_;
  std::map<std::string, std::pair<std::shared_ptr<balance::ServerState>, uint32_t>> states_;
  uint32_t next_id_ = 0;
  std::string sticky_key_;
  std::set<std::string> warned_;
  std::shared_ptr<net::tls::TicketKeys> ticket_keys_;
};

// Builds a snapshot; on failure returns null and appends messages to `errors`.
SnapshotPtr build_snapshot(config::ConfigPtr cfg, ServerRegistry& registry,
                           std::vector<std::string>& errors);

}  // namespace weir::proxy
