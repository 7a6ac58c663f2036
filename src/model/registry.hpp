#pragma once
// What outlives a snapshot: per-server state and numbers, the sticky key made at start-up and
// the TLS ticket keys. One registry per process, consulted (under a lock) only when a snapshot
// is built, never on the request path.
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "model/server_state.hpp"
#include "net/tls/tls.hpp"

namespace weir::cache {
class Store;
}
namespace weir::config {
struct Cache;
}

namespace weir::model {

class ClientTable;

// Keeps ServerState (health, in-flight counts) and ids alive across reloads, keyed by
// backend name, server name and address.
class ServerRegistry {
 public:
  std::pair<std::shared_ptr<ServerState>, uint32_t> get(const std::string& key);
  // The key for sticky cookies of backends without a secret_file: made once per process.
  const std::string& process_sticky_key();
  // True if the random-key warning for this backend was already logged.
  bool warned_random_key(const std::string& backend);
  // TLS session-ticket keys of the process: every listener and worker, across reloads.
  const std::shared_ptr<net::tls::TicketKeys>& ticket_keys();
  // A listener's client_limits table: the same one across reloads while its size and `shared`
  // are unchanged (a change starts a new table; connections counted in the old one are given
  // back to it).
  std::shared_ptr<ClientTable> client_table(const std::string& listener, size_t capacity,
                                            bool shared = false);
  // A cache's store: the same one across reloads while its memory and max_object are unchanged
  // (a change starts an empty one).
  std::shared_ptr<cache::Store> cache(const config::Cache& c);

 private:
  std::mutex mu_;
  std::map<std::string, std::pair<std::shared_ptr<ServerState>, uint32_t>> states_;
  uint32_t next_id_ = 0;
  std::string sticky_key_;
  std::set<std::string> warned_;
  std::shared_ptr<net::tls::TicketKeys> ticket_keys_;
  std::map<std::string, std::pair<size_t, std::shared_ptr<ClientTable>>> client_tables_;
  std::map<std::string, std::shared_ptr<cache::Store>> caches_;
};

}  // namespace weir::model
