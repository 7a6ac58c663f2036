// DNS service discovery (src/discovery/, src/model/discovered.*): the table of discovered
// addresses (what counts as a change, who starts a slow_start ramp), SRV weights, what a config
// asks DNS for, snapshots built from the table (servers named IP:PORT, SRV priorities), and the
// c-ares engine against a small DNS server in the test (answers, failure keeps the last set,
// change callbacks, lookups dropped by retain).
#include "discovery/dns_discovery.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "config/loader.hpp"
#include "model/registry.hpp"
#include "model/snapshot.hpp"

namespace weir::discovery {
namespace {

using Kind = model::Discovered::Kind;
using model::DiscoveredAddress;
using std::chrono::milliseconds;

net::SocketAddress ip(const char* text, uint16_t port = 0) {
  auto a = net::parse_numeric(text, port);
  EXPECT_TRUE(a.has_value()) << text;
  return a ? *a : net::SocketAddress{};
}

DiscoveredAddress host(const char* text) {
  return {ip(text), "", 0, 0, 0};
}

DiscoveredAddress srv(const char* text, uint16_t port, const char* target, uint16_t prio,
                      uint16_t weight) {
  return {ip(text, port), target, prio, weight, 0};
}

config::ConfigPtr load(std::string_view yaml) {
  config::LoadResult r = config::load_config_string(yaml, "d.yaml");
  if (!r.ok()) {
    std::string all;
    for (const auto& d : r.diagnostics)
      all += "\n  " + d.format();
    ADD_FAILURE() << all;
  }
  return r.config;
}

// ---------------------------------------------------------------------------------------------
// The table

TEST(Discovered, FirstAnswerHasNoRampLaterAddressesDo) {
  model::Discovered t;
  EXPECT_FALSE(t.get(Kind::Host, "app").has_value());
  EXPECT_TRUE(t.store(Kind::Host, "app", {host("10.0.0.2"), host("10.0.0.1")}, 100));
  auto first = *t.get(Kind::Host, "app");
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].addr.ip_string(), "10.0.0.1");  // sorted
  EXPECT_EQ(first[0].appeared_ns, 0);
  EXPECT_EQ(first[1].appeared_ns, 0);
  // The same set in another order: no change.
  EXPECT_FALSE(t.store(Kind::Host, "app", {host("10.0.0.1"), host("10.0.0.2")}, 200));
  // One more, one fewer: the new one appeared now, the kept one keeps its 0.
  EXPECT_TRUE(t.store(Kind::Host, "app", {host("10.0.0.3"), host("10.0.0.1")}, 300));
  auto next = *t.get(Kind::Host, "app");
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].appeared_ns, 0);
  EXPECT_EQ(next[1].addr.ip_string(), "10.0.0.3");
  EXPECT_EQ(next[1].appeared_ns, 300);
  // Gone and back: it appears again (a new ramp).
  t.store(Kind::Host, "app", {host("10.0.0.3")}, 400);
  t.store(Kind::Host, "app", {host("10.0.0.3"), host("10.0.0.1")}, 500);
  EXPECT_EQ(t.get(Kind::Host, "app")->at(0).appeared_ns, 500);
}

TEST(Discovered, WeightOrPriorityChangeIsAChangeDuplicatesCollapse) {
  model::Discovered t;
  EXPECT_TRUE(t.store(Kind::Srv, "_s", {srv("10.0.0.1", 80, "a", 0, 5)}, 1));
  EXPECT_FALSE(t.store(Kind::Srv, "_s", {srv("10.0.0.1", 80, "a", 0, 5)}, 2));
  EXPECT_TRUE(t.store(Kind::Srv, "_s", {srv("10.0.0.1", 80, "a", 0, 6)}, 3));
  EXPECT_TRUE(t.store(Kind::Srv, "_s", {srv("10.0.0.1", 80, "a", 1, 6)}, 4));
  EXPECT_TRUE(t.store(Kind::Srv, "_s", {srv("10.0.0.1", 81, "a", 1, 6)}, 5));  // port
  // The same address twice (two records): one entry, the lowest priority.
  t.store(Kind::Srv, "_s", {srv("10.0.0.1", 81, "b", 2, 1), srv("10.0.0.1", 81, "a", 1, 6)}, 6);
  auto v = *t.get(Kind::Srv, "_s");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].priority, 1);
  // Host and SRV names are apart; retain forgets the rest.
  t.store(Kind::Host, "_s", {host("10.0.0.9")}, 7);
  t.retain({{Kind::Host, "_s"}});
  EXPECT_FALSE(t.get(Kind::Srv, "_s").has_value());
  EXPECT_TRUE(t.get(Kind::Host, "_s").has_value());
}

TEST(Discovered, WithPortAndV6Names) {
  EXPECT_EQ(model::with_port(ip("10.1.2.3"), 8080).to_string(), "10.1.2.3:8080");
  EXPECT_EQ(model::with_port(ip("fd00::1"), 443).to_string(), "[fd00::1]:443");
}

TEST(SrvWeights, ZeroCountsAsOneLargeOnesScaleToAThousand) {
  std::vector<DiscoveredAddress> v{srv("10.0.0.1", 1, "a", 0, 0), srv("10.0.0.2", 1, "b", 0, 7)};
  scale_srv_weights(v);
  EXPECT_EQ(v[0].weight, 1);
  EXPECT_EQ(v[1].weight, 7);
  std::vector<DiscoveredAddress> big{srv("10.0.0.1", 1, "a", 0, 65535),
                                     srv("10.0.0.2", 1, "b", 0, 32768),
                                     srv("10.0.0.3", 1, "c", 0, 1)};
  scale_srv_weights(big);
  EXPECT_EQ(big[0].weight, 1000);
  EXPECT_EQ(big[1].weight, 500);
  EXPECT_EQ(big[2].weight, 1);
}

TEST(Wanted, NamesIntervalsAndResolvers) {
  auto cfg = load(R"(resolvers: [127.0.0.1:5353, "[::1]:53"]
listeners:
  - { name: web, listen: 127.0.0.1:18080, backend: a }
backends:
  - name: a
    servers:
      - { address: app.internal:80, resolve: 10s }
      - { address: app.internal:81, resolve: 2s }
      - { address: 127.0.0.1:82 }
  - name: b
    discovery: { srv: _http._tcp.app.internal, interval: 3s }
)");
  ASSERT_TRUE(cfg);
  Wanted w = wanted_by(*cfg);
  ASSERT_EQ(w.lookups.size(), 2u);
  const auto& h = w.lookups.at({Kind::Host, "app.internal"});
  EXPECT_EQ(h.interval, milliseconds(2000));  // the shortest
  EXPECT_EQ(h.where, "d.yaml:7:9");
  EXPECT_EQ(w.lookups.at({Kind::Srv, "_http._tcp.app.internal"}).interval, milliseconds(3000));
  EXPECT_EQ(w.resolvers, "127.0.0.1:5353,[::1]:53");
}

// ---------------------------------------------------------------------------------------------
// Snapshots from the table

constexpr std::string_view kTwoBackends = R"(listeners:
  - { name: web, listen: 127.0.0.1:18080, backend: a }
backends:
  - name: a
    slow_start: 10s
    servers:
      - { address: app.internal:8080, resolve: 5s, weight: 4 }
      - { address: 127.0.0.1:9000, name: fixed }
  - name: s
    slow_start: 10s
    discovery: { srv: _http._tcp.app.internal }
)";

model::SnapshotPtr build(const config::ConfigPtr& cfg, model::ServerRegistry& reg,
                         const model::Discovered& table) {
  std::vector<std::string> errors;
  auto snap = model::build_snapshot(cfg, reg, errors, {}, &table);
  EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors[0]);
  return snap;
}

TEST(DiscoveredSnapshot, ResolveServersAreNamedIpPortWithTheConfiguredWeight) {
  auto cfg = load(kTwoBackends);
  ASSERT_TRUE(cfg);
  model::ServerRegistry reg;
  model::Discovered table;
  // No answer yet: the name gives no server, the fixed one is there.
  auto snap = build(cfg, reg, table);
  ASSERT_EQ(snap->backends[0].servers.size(), 1u);
  EXPECT_EQ(snap->backends[0].servers[0].name, "fixed");
  EXPECT_TRUE(snap->backends[1].servers.empty());
  EXPECT_EQ(snap->backends[1].active_priority, -1);

  table.store(Kind::Host, "app.internal", {host("10.0.0.1"), host("fd00::2")}, 1);
  snap = build(cfg, reg, table);
  const auto& servers = snap->backends[0].servers;
  ASSERT_EQ(servers.size(), 3u);
  EXPECT_EQ(servers[0].name, "10.0.0.1:8080");
  EXPECT_EQ(servers[0].addr.to_string(), "10.0.0.1:8080");
  EXPECT_EQ(servers[0].address_text, "app.internal:8080");
  EXPECT_EQ(servers[0].weight, 4u);
  EXPECT_EQ(servers[1].name, "[fd00::2]:8080");
  EXPECT_EQ(servers[0].state->ramp_start_ns.load(), 0);  // first answer: no ramp
  // State survives a rebuild with the same address; a new address ramps from when it appeared.
  auto* kept = servers[0].state.get();
  int64_t now = model::ServerState::now_ns();
  table.store(Kind::Host, "app.internal", {host("10.0.0.1"), host("10.0.0.3")}, now);
  snap = build(cfg, reg, table);
  const auto& again = snap->backends[0].servers;
  ASSERT_EQ(again.size(), 3u);
  EXPECT_EQ(again[0].state.get(), kept);
  EXPECT_EQ(again[1].name, "10.0.0.3:8080");
  EXPECT_EQ(again[1].state->ramp_start_ns.load(), now);
  EXPECT_EQ(again[0].state->ramp_start_ns.load(), 0);
}

TEST(DiscoveredSnapshot, SrvServersOnlyTheLowestPriorityWithServersUpServes) {
  auto cfg = load(kTwoBackends);
  ASSERT_TRUE(cfg);
  model::ServerRegistry reg;
  model::Discovered table;
  table.store(Kind::Srv, "_http._tcp.app.internal",
              {srv("10.0.0.1", 80, "a.internal", 0, 10), srv("10.0.0.2", 81, "b.internal", 0, 30),
               srv("10.0.0.3", 80, "c.internal", 1, 5)},
              1);
  auto snap = build(cfg, reg, table);
  const auto& b = snap->backends[1];
  ASSERT_EQ(b.servers.size(), 3u);
  EXPECT_EQ(b.active_priority, 0);
  EXPECT_EQ(b.servers[0].name, "10.0.0.1:80");
  EXPECT_EQ(b.servers[0].address_text, "a.internal:80");
  EXPECT_EQ(b.servers[0].weight, 10u);
  EXPECT_EQ(b.servers[1].weight, 30u);
  EXPECT_EQ(b.servers[2].weight, 0u);  // standby
  EXPECT_EQ(b.infos[2].weight, 0u);
  EXPECT_EQ(model::serving_priority(b), 0);
  // Priority 0 down: the watch sees priority 1 serve; the rebuild gives it the traffic.
  b.servers[0].state->up.store(false);
  EXPECT_EQ(model::serving_priority(b), 0);
  b.servers[1].state->up.store(false);
  EXPECT_EQ(model::serving_priority(b), 1);
  snap = build(cfg, reg, table);
  const auto& failed_over = snap->backends[1];
  EXPECT_EQ(failed_over.active_priority, 1);
  EXPECT_EQ(failed_over.servers[0].weight, 0u);
  EXPECT_EQ(failed_over.servers[2].weight, 5u);
  // Everything down: the lowest priority keeps its weights (nothing better to offer).
  failed_over.servers[2].state->up.store(false);
  EXPECT_EQ(model::serving_priority(failed_over), 0);
}

TEST(DiscoveredSnapshot, WithoutATableResolveIsOnceAndSrvIsEmpty) {
  auto cfg = load(R"(listeners:
  - { name: web, listen: 127.0.0.1:18080, backend: a }
backends:
  - name: a
    servers:
      - { address: localhost:8080, resolve: 5s }
  - name: s
    discovery: { srv: _http._tcp.app.internal }
)");
  ASSERT_TRUE(cfg);
  model::ServerRegistry reg;
  std::vector<std::string> errors;
  auto snap = model::build_snapshot(cfg, reg, errors);
  ASSERT_TRUE(snap) << (errors.empty() ? "" : errors[0]);
  ASSERT_EQ(snap->backends[0].servers.size(), 1u);
  EXPECT_EQ(snap->backends[0].servers[0].name, snap->backends[0].servers[0].addr.to_string());
  EXPECT_TRUE(snap->backends[1].servers.empty());
}

// ---------------------------------------------------------------------------------------------
// The engine against a DNS server in the test (UDP on 127.0.0.1, A and SRV, NXDOMAIN else)

class FakeDns {
 public:
  FakeDns() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDns() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void set_a(const std::string& name, std::vector<std::string> ips) {
    std::lock_guard lock(mu_);
    a_[name] = std::move(ips);
  }
  struct Srv {
    uint16_t priority, weight, port;
    std::string target;
  };
  void set_srv(const std::string& name, std::vector<Srv> records) {
    std::lock_guard lock(mu_);
    srv_[name] = std::move(records);
  }
  void set_silent(bool silent) { silent_ = silent; }
  int queries() const { return queries_; }

 private:
  static void put16(std::string& out, uint16_t v) {
    out += static_cast<char>(v >> 8);
    out += static_cast<char>(v & 0xff);
  }
  static void put_name(std::string& out, const std::string& name) {
    size_t start = 0;
    while (start < name.size()) {
      size_t dot = name.find('.', start);
      if (dot == std::string::npos) dot = name.size();
      out += static_cast<char>(dot - start);
      out += name.substr(start, dot - start);
      start = dot + 1;
    }
    out += '\0';
  }

  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      unsigned char buf[512];
      sockaddr_in from{};
      socklen_t flen = sizeof from;
      ssize_t n = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      if (n < 17) continue;
      ++queries_;
      if (silent_) continue;
      // The question: labels from byte 12, then type and class.
      std::string name;
      size_t i = 12;
      while (i < static_cast<size_t>(n) && buf[i] != 0) {
        size_t len = buf[i];
        if (!name.empty()) name += '.';
        name.append(reinterpret_cast<char*>(buf + i + 1), len);
        i += len + 1;
      }
      size_t qend = i + 5;
      if (qend > static_cast<size_t>(n)) continue;
      uint16_t type = static_cast<uint16_t>(buf[i + 1] << 8 | buf[i + 2]);
      std::string answers;
      int count = 0;
      bool known = false;
      {
        std::lock_guard lock(mu_);
        if (auto it = a_.find(name); it != a_.end()) {
          known = true;
          for (const auto& text : it->second) {
            in_addr addr{};
            if (type != 1 || inet_pton(AF_INET, text.c_str(), &addr) != 1) continue;
            put16(answers, 0xc00c);
            put16(answers, 1);
            put16(answers, 1);
            answers += std::string("\0\0\0\0", 4);  // TTL 0
            put16(answers, 4);
            answers.append(reinterpret_cast<char*>(&addr), 4);
            ++count;
          }
        }
        if (auto it = srv_.find(name); it != srv_.end()) {
          known = true;
          for (const auto& r : it->second) {
            if (type != 33) continue;
            std::string rdata;
            put16(rdata, r.priority);
            put16(rdata, r.weight);
            put16(rdata, r.port);
            put_name(rdata, r.target);
            put16(answers, 0xc00c);
            put16(answers, 33);
            put16(answers, 1);
            answers += std::string("\0\0\0\0", 4);
            put16(answers, static_cast<uint16_t>(rdata.size()));
            answers += rdata;
            ++count;
          }
        }
      }
      std::string out(reinterpret_cast<char*>(buf), 2);  // id
      put16(out, known ? 0x8580 : 0x8583);               // answer, authoritative, NXDOMAIN?
      put16(out, 1);
      put16(out, static_cast<uint16_t>(count));
      put16(out, 0);
      put16(out, 0);
      out.append(reinterpret_cast<char*>(buf + 12), qend - 12);
      out += answers;
      ::sendto(fd_, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false}, silent_{false};
  std::atomic<int> queries_{0};
  std::mutex mu_;
  std::map<std::string, std::vector<std::string>> a_;
  std::map<std::string, std::vector<Srv>> srv_;
};

std::string engine_config(const std::string& resolver) {
  return "resolvers: [" + resolver + R"(]
listeners:
  - { name: web, listen: 127.0.0.1:18080, backend: a }
backends:
  - name: a
    servers:
      - { address: app.test:8080, resolve: 1s }
  - name: s
    discovery: { srv: _http._tcp.app.test, interval: 1s }
)";
}

std::vector<std::string> ips_of(const model::Discovered& t, Kind kind, const std::string& name) {
  std::vector<std::string> out;
  if (auto v = t.get(kind, name))
    for (const auto& a : *v)
      out.push_back(kind == Kind::Host ? a.addr.ip_string() : a.addr.to_string());
  return out;
}

struct Changes {
  std::mutex mu;
  std::vector<std::string> whys;
  size_t count() {
    std::lock_guard lock(mu);
    return whys.size();
  }
};

bool eventually(const std::function<bool()>& pred, milliseconds within = milliseconds(5000)) {
  auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

TEST(DnsDiscoveryEngine, FirstAnswersChangesFailuresAndRetain) {
  FakeDns dns;
  dns.set_a("app.test", {"10.0.0.1", "10.0.0.2"});
  dns.set_a("t1.test", {"10.0.1.1"});
  dns.set_srv("_http._tcp.app.test", {{0, 10, 8001, "t1.test"}, {1, 5, 8002, "missing.test"}});
  auto cfg = load(engine_config(dns.address()));
  ASSERT_TRUE(cfg);
  Changes changes;
  DnsDiscovery d(
      [&](std::string_view why) {
        std::lock_guard lock(changes.mu);
        changes.whys.emplace_back(why);
      },
      [] { return model::SnapshotPtr{}; });
  d.add(*cfg, milliseconds(5000));
  // Both first answers are in before add returns. A target that does not resolve is left out.
  EXPECT_EQ(ips_of(d.table(), Kind::Host, "app.test"),
            (std::vector<std::string>{"10.0.0.1", "10.0.0.2"}));
  EXPECT_EQ(ips_of(d.table(), Kind::Srv, "_http._tcp.app.test"),
            (std::vector<std::string>{"10.0.1.1:8001"}));
  EXPECT_EQ(d.table().get(Kind::Srv, "_http._tcp.app.test")->at(0).weight, 10);
  d.arm();
  // A change: seen within 2 intervals, and a rebuild is asked for.
  dns.set_a("app.test", {"10.0.0.2", "10.0.0.3"});
  EXPECT_TRUE(eventually([&] {
    return ips_of(d.table(), Kind::Host, "app.test") ==
           std::vector<std::string>{"10.0.0.2", "10.0.0.3"};
  }));
  EXPECT_TRUE(eventually([&] { return changes.count() >= 1; }));
  // An empty answer (no data) and then silence keep the last good set.
  dns.set_a("app.test", {});
  size_t before = changes.count();
  std::this_thread::sleep_for(milliseconds(1500));
  dns.set_silent(true);
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_EQ(ips_of(d.table(), Kind::Host, "app.test"),
            (std::vector<std::string>{"10.0.0.2", "10.0.0.3"}));
  EXPECT_EQ(changes.count(), before);
  dns.set_silent(false);
  dns.set_a("app.test", {"10.0.0.4"});
  EXPECT_TRUE(eventually([&] {
    return ips_of(d.table(), Kind::Host, "app.test") == std::vector<std::string>{"10.0.0.4"};
  }));
  // retain with a config without the SRV backend: its lookups stop, its set is forgotten.
  auto fewer = load("resolvers: [" + dns.address() + R"(]
listeners:
  - { name: web, listen: 127.0.0.1:18080, backend: a }
backends:
  - name: a
    servers:
      - { address: app.test:8080, resolve: 1s }
)");
  ASSERT_TRUE(fewer);
  d.retain(*fewer);
  EXPECT_FALSE(d.table().get(Kind::Srv, "_http._tcp.app.test").has_value());
  d.stop();
  int after_stop = dns.queries();
  std::this_thread::sleep_for(milliseconds(1200));
  EXPECT_EQ(dns.queries(), after_stop);  // stopped means stopped
}

TEST(DnsDiscoveryEngine, NoAnswerAtStartIsBoundedAndLeavesTheNameEmpty) {
  FakeDns dns;
  dns.set_silent(true);
  auto cfg = load(engine_config(dns.address()));
  ASSERT_TRUE(cfg);
  DnsDiscovery d([](std::string_view) {}, [] { return model::SnapshotPtr{}; });
  auto t0 = std::chrono::steady_clock::now();
  d.add(*cfg, milliseconds(1500));
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(waited, std::chrono::milliseconds(3000));
  EXPECT_FALSE(d.table().get(Kind::Host, "app.test").has_value());
  // The server wakes up: the name fills at a later lookup.
  dns.set_silent(false);
  dns.set_a("app.test", {"10.0.0.7"});
  EXPECT_TRUE(eventually(
      [&] {
        return ips_of(d.table(), Kind::Host, "app.test") == std::vector<std::string>{"10.0.0.7"};
      },
      milliseconds(8000)));
}

TEST(DnsDiscoveryEngine, NothingToLookUpStartsNoThread) {
  auto cfg = load(R"(listeners:
  - { name: web, listen: 127.0.0.1:18080, backend: a }
backends:
  - name: a
    servers:
      - { address: 127.0.0.1:8080 }
)");
  ASSERT_TRUE(cfg);
  DnsDiscovery d([](std::string_view) {}, [] { return model::SnapshotPtr{}; });
  auto t0 = std::chrono::steady_clock::now();
  d.add(*cfg, milliseconds(5000));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(100));
  d.stop();
}

}  // namespace
}  // namespace weir::discovery
