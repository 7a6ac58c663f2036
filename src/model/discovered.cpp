#include "model/discovered.hpp"

#include <arpa/inet.h>

#include <algorithm>

namespace weir::model {
namespace {

bool same(const DiscoveredAddress& a, const DiscoveredAddress& b) {
  return a.priority == b.priority && a.weight == b.weight &&
         address_key(a.addr) == address_key(b.addr);
}

// Sorted by address (then priority) so that a change of order in the answer is no change.
void sort_by_address(std::vector<DiscoveredAddress>& v) {
  std::sort(v.begin(), v.end(), [](const DiscoveredAddress& a, const DiscoveredAddress& b) {
    std::string ka = address_key(a.addr), kb = address_key(b.addr);
    if (ka != kb) return ka < kb;
    if (a.priority != b.priority) return a.priority < b.priority;
    return a.weight > b.weight;
  });
}

}  // namespace

std::string address_key(const net::SocketAddress& a) {
  return a.to_string();
}

net::SocketAddress with_port(net::SocketAddress a, uint16_t port) {
  if (a.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(port);
  } else if (a.family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(port);
  }
  return a;
}

std::optional<std::vector<DiscoveredAddress>> Discovered::get(Kind kind,
                                                              const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = sets_.find({kind, name});
  if (it == sets_.end()) return std::nullopt;
  return it->second;
}

bool Discovered::store(Kind kind, const std::string& name, std::vector<DiscoveredAddress> addrs,
                       int64_t now_ns) {
  sort_by_address(addrs);
  // One entry per address: the first (lowest priority) wins.
  addrs.erase(std::unique(addrs.begin(), addrs.end(),
                          [](const DiscoveredAddress& a, const DiscoveredAddress& b) {
                            return address_key(a.addr) == address_key(b.addr);
                          }),
              addrs.end());
  std::lock_guard lock(mu_);
  auto [it, first] = sets_.try_emplace({kind, name});
  std::vector<DiscoveredAddress>& old = it->second;
  for (auto& a : addrs) {
    auto prev = std::find_if(old.begin(), old.end(), [&](const DiscoveredAddress& o) {
      return address_key(o.addr) == address_key(a.addr);
    });
    a.appeared_ns = prev != old.end() ? prev->appeared_ns : first ? 0 : now_ns;
  }
  bool changed = first || old.size() != addrs.size() ||
                 !std::equal(old.begin(), old.end(), addrs.begin(), same);
  old = std::move(addrs);
  return changed;
}

void Discovered::retain(const std::set<Key>& keep) {
  std::lock_guard lock(mu_);
  std::erase_if(sets_, [&](const auto& entry) { return !keep.count(entry.first); });
}

}  // namespace weir::model
