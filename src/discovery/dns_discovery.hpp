#pragma once
// DNS service discovery (`resolve:` on a server, `discovery.srv` on a backend, `resolvers:`):
// c-ares lookups on a thread of their own, every interval, answers stored in a
// model::Discovered table that build_snapshot reads. A change calls back (from a second thread,
// so that a reload waiting for first answers never waits on a rebuild) to rebuild the snapshot.
// A failed or empty answer keeps the last good set, logged once per change of condition.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "model/discovered.hpp"
#include "model/snapshot.hpp"

namespace weir::discovery {

using Key = model::Discovered::Key;

// What one config asks DNS for.
struct Wanted {
  struct Lookup {
    std::chrono::milliseconds interval{0};  // the shortest any user of the name asks for
    std::string where;                      // "FILE:LINE:COL" of its first user, for logs
  };
  std::map<Key, Lookup> lookups;
  std::string resolvers;  // "IP:PORT,..." (c-ares' form); "" = /etc/resolv.conf
};
Wanted wanted_by(const config::Config& cfg);

// SRV weights for the balancers: 0 counts as 1, and when the largest is above 1000 (the most
// a configured weight may be) all are scaled so that it is 1000, ratios kept.
void scale_srv_weights(std::vector<model::DiscoveredAddress>& addrs);

class DnsDiscovery {
 public:
  // `on_change(why)` rebuilds the snapshot; `current()` is the running snapshot (the SRV
  // priority watch reads it).
  using OnChange = std::function<void(std::string_view why)>;
  using Current = std::function<model::SnapshotPtr()>;
  DnsDiscovery(OnChange on_change, Current current);
  ~DnsDiscovery();
  DnsDiscovery(const DnsDiscovery&) = delete;
  DnsDiscovery& operator=(const DnsDiscovery&) = delete;

  // Starts the lookups `cfg` needs (and the threads, the first time any is needed), keeping
  // those of names it does not use until retain(), then waits up to `wait` for a first answer
  // (or failure) of each of its names. Resolvers change to `cfg`'s.
  void add(const config::Config& cfg, std::chrono::milliseconds wait);
  // Stops the lookups `cfg` does not use and forgets their addresses; resolvers as `cfg`'s.
  void retain(const config::Config& cfg);
  // Changes call on_change from now on (once the first snapshot is installed).
  void arm();
  void stop();

  const model::Discovered& table() const { return table_; }

 private:
  struct Engine;  // the c-ares channel and the lookups, owned by the DNS thread
  void notify(std::string why);
  void watch();  // the second thread: change callbacks and the SRV priority watch

  OnChange on_change_;
  Current current_;
  model::Discovered table_;

  std::mutex mu_;
  std::condition_variable answered_cv_;
  Wanted wanted_;           // what the DNS thread should look up
  std::set<Key> answered_;  // names with a first answer or failure since added
  std::shared_ptr<Engine> engine_;
  std::thread dns_thread_;

  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool armed_ = false;
  bool stopping_ = false;
  std::string pending_;  // why a rebuild is due ("" = none)
  std::thread watch_thread_;

  friend struct Engine;
};

}  // namespace weir::discovery
