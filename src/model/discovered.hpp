#pragma once
// The addresses DNS discovery found (src/discovery/), by name: what build_snapshot turns into
// servers for `resolve:` entries and `discovery.srv` backends. Written by the discovery thread,
// read when a snapshot is built; one lock, never taken on the request path.
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "net/address.hpp"

namespace weir::model {

struct DiscoveredAddress {
  // A/AAAA: the address with port 0 (the server's configured port is used). SRV: the target's
  // address with the record's port.
  net::SocketAddress addr;
  std::string target;  // SRV: the record's target name ("" for A/AAAA)
  uint16_t priority = 0;
  uint16_t weight = 0;
  // When it first appeared (steady-clock ns): 0 when it was in the name's first answer, so that
  // only servers that appear later start a slow_start ramp.
  int64_t appeared_ns = 0;
};

class Discovered {
 public:
  enum class Kind : uint8_t { Host, Srv };
  using Key = std::pair<Kind, std::string>;

  // The last good answer for a name; nullopt while the name has none yet.
  std::optional<std::vector<DiscoveredAddress>> get(Kind kind, const std::string& name) const;
  // Stores a good (non-empty) answer. Addresses kept from the last answer keep their
  // `appeared_ns`; new ones get `now_ns` unless this is the name's first answer. Returns true
  // when the set changed (addresses, ports, weights or priorities).
  bool store(Kind kind, const std::string& name, std::vector<DiscoveredAddress> addrs,
             int64_t now_ns);
  // Forgets every name not in `keep`.
  void retain(const std::set<Key>& keep);

 private:
  mutable std::mutex mu_;
  std::map<Key, std::vector<DiscoveredAddress>> sets_;
};

// Identity of a discovered address: family, address bytes and port ("1.2.3.4:80").
std::string address_key(const net::SocketAddress& a);
// `a` with its port set (IPv4 and IPv6; other families unchanged).
net::SocketAddress with_port(net::SocketAddress a, uint16_t port);

}  // namespace weir::model
