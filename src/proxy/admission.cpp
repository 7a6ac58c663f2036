#include "proxy/admission.hpp"

#include <netinet/in.h>

#include "balance/hash.hpp"
#include "config/config.hpp"
#include "model/client_table.hpp"
#include "model/hash_key.hpp"
#include "model/snapshot.hpp"
#include "net/cidr_set.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {
namespace {

// The hash of a client address (its bytes, v4-mapped IPv6 as IPv4): the key of both
// max_connections and a client_ip rate.
uint64_t address_key(const net::PeerAddress& addr) {
  const char* bytes = reinterpret_cast<const char*>(addr.bytes);
  if (addr.family() == AF_INET) return balance::hash_key(std::string_view(bytes, 4));
  if (addr.family() == AF_INET6) {
    if (IN6_IS_ADDR_V4MAPPED(reinterpret_cast<const in6_addr*>(addr.bytes))) {
      return balance::hash_key(std::string_view(bytes + 12, 4));
    }
    return balance::hash_key(std::string_view(bytes, 16), 6);
  }
  return 0;
}

int64_t now_ns(Worker& w) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(w.reactor().now().time_since_epoch())
      .count();
}

}  // namespace

std::string_view to_string(Refusal r) {
  switch (r) {
    case Refusal::None:
      return "none";
    case Refusal::Access:
      return "access";
    case Refusal::Connections:
      return "connections";
    case Refusal::Rate:
      return "rate";
    case Refusal::ProxyProtocol:
      return "proxy_protocol";
  }
  return "none";
}

void ConnectionHold::release() {
  if (table_) {
    table_->close_connection(model::ClientTable::Conn{slot_, true, true});
    table_.reset();
  }
}

bool access_allows(const config::AccessList& a, const net::PeerAddress& addr) {
  if (a.deny && a.deny->contains(addr)) return false;
  return !a.allow || a.allow->contains(addr);
}

void count_refusal(Worker& w, const config::Listener& l, Refusal r) {
  ++w.stats().refused[{l.name, std::string(to_string(r))}];
}

Refusal admit_connection(Worker& w, const model::ListenerRuntime& lr, ClientOrigin& origin) {
  const config::Listener& l = *lr.cfg;
  Refusal r = Refusal::None;
  if (l.access && !access_allows(*l.access, origin.addr)) {
    r = Refusal::Access;
  } else if (lr.clients && l.client_limits->max_connections > 0) {
    auto c = lr.clients->open_connection(address_key(origin.addr), l.client_limits->max_connections,
                                         now_ns(w));
    if (!c.admitted) {
      r = Refusal::Connections;
    } else if (c.tracked) {
      origin.extra().hold = ConnectionHold(lr.clients, c.slot);
    }
  }
  if (r != Refusal::None) {
    count_refusal(w, l, r);
    origin.extra().refuse = r == Refusal::Access ? 403 : 429;
    origin.extra().retry_after = 1;
  }
  return r;
}

Refusal admit_request(Worker& w, const model::ListenerRuntime& lr, const net::PeerAddress& addr,
                      const http::RequestHead& req, uint32_t& retry_after) {
  const config::Listener& l = *lr.cfg;
  if (!lr.clients || l.client_limits->rate <= 0) return Refusal::None;
  const config::ClientLimits& cl = *l.client_limits;
  // A request without the header or cookie is counted under its address: leaving the key out
  // must not be a way around the limit.
  uint64_t key = 0;
  std::string_view value;
  if (cl.key != config::ClientLimits::Key::ClientIp &&
      model::extract_key(lr.limit_key, req, {}, value)) {
    key = balance::hash_key(value, 7);
  } else {
    key = address_key(addr);
  }
  auto t = lr.clients->take(key, cl.rate, cl.burst, now_ns(w));
  if (t.allowed) return Refusal::None;
  retry_after = std::max<uint32_t>(1, t.retry_after_s);
  count_refusal(w, l, Refusal::Rate);
  return Refusal::Rate;
}

}  // namespace weir::proxy
