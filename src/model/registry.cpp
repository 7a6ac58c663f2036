#include "model/registry.hpp"

#include "cache/store.hpp"
#include "config/config.hpp"
#include "model/client_table.hpp"
#include "model/sticky.hpp"

namespace weir::model {

std::pair<std::shared_ptr<ServerState>, uint32_t> ServerRegistry::get(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = states_.find(key);
  if (it != states_.end()) return it->second;
  auto entry = std::make_pair(std::make_shared<ServerState>(), next_id_++);
  states_.emplace(key, entry);
  return entry;
}

const std::string& ServerRegistry::process_sticky_key() {
  std::lock_guard lock(mu_);
  if (sticky_key_.empty()) sticky_key_ = random_key();
  return sticky_key_;
}

bool ServerRegistry::warned_random_key(const std::string& backend) {
  std::lock_guard lock(mu_);
  return !warned_.insert(backend).second;
}

const std::shared_ptr<net::tls::TicketKeys>& ServerRegistry::ticket_keys() {
  std::lock_guard lock(mu_);
  if (!ticket_keys_) ticket_keys_ = std::make_shared<net::tls::TicketKeys>();
  return ticket_keys_;
}

std::shared_ptr<ClientTable> ServerRegistry::client_table(const std::string& listener,
                                                          size_t capacity, bool shared) {
  std::lock_guard lock(mu_);
  auto& [size, table] = client_tables_[listener];
  if (!table || size != capacity || table->shared() != shared) {
    table = std::make_shared<ClientTable>(capacity, std::chrono::seconds(60), shared);
    size = capacity;
  }
  return table;
}

std::shared_ptr<cache::Store> ServerRegistry::cache(const config::Cache& c) {
  std::lock_guard lock(mu_);
  auto& store = caches_[c.name];
  if (!store || store->memory() != c.memory || store->max_object() != c.max_object) {
    cache::StoreConfig sc;
    sc.memory = c.memory;
    sc.max_object = c.max_object;
    store = std::make_shared<cache::Store>(sc);
  }
  return store;
}

}  // namespace weir::model
