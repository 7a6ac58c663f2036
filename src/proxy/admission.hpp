#pragma once
// Who may come in, checked before anything of theirs is read or reaches a backend (proxy.md):
// the listener's `access` list and `client_limits.max_connections` on accept (after the PROXY
// header when there is one), `client_limits.rate` per request, a route's `access` after
// routing. Each refusal is counted in weir_refused_total{listener,reason}.
#include <cstdint>
#include <string_view>

#include "proxy/client_origin.hpp"

namespace weir::config {
struct AccessList;
struct Listener;
}  // namespace weir::config
namespace weir::http {
struct RequestHead;
}
namespace weir::model {
struct ListenerRuntime;
}

namespace weir::proxy {

class Worker;

enum class Refusal : uint8_t { None, Access, Connections, Rate, ProxyProtocol };
std::string_view to_string(Refusal r);

// Deny wins over allow; no allow list lets everyone else in.
bool access_allows(const config::AccessList& a, const net::PeerAddress& addr);

// On accept: the listener's access list, then the client's connection count (taken into
// origin.hold when admitted). Counts the refusal; the caller closes or answers.
Refusal admit_connection(Worker& w, const model::ListenerRuntime& lr, ClientOrigin& origin);

// One request against client_limits.rate. None, or Rate with `retry_after` (seconds, ≥ 1).
Refusal admit_request(Worker& w, const model::ListenerRuntime& lr, const net::PeerAddress& addr,
                      const http::RequestHead& req, uint32_t& retry_after);

void count_refusal(Worker& w, const config::Listener& l, Refusal r);

}  // namespace weir::proxy
