#pragma once
// Passive health checks: live traffic judges servers between active probes. `failures`
// consecutive failures (connect error, reset, timeout, 5xx) eject a server for `cooldown`,
// doubled on each ejection in a row (up to 32×); a success resets the count. At most
// `max_ejected_percent` of a backend's servers are out at once, so a backend-wide problem
// cannot empty it.
#include <chrono>
#include <string_view>

#include "model/snapshot.hpp"

namespace weir::health {

// `status` (a 5xx answer) is appended to `reason` only if a log line is written: counting a
// failure allocates nothing.
void passive_failure(const model::BackendRuntime& backend, size_t server, std::string_view reason,
                     uint16_t status = 0);
void passive_success(const model::BackendRuntime& backend, size_t server);

// Unreachable servers, with or without `passive:` (HAProxy's `observe layer4`, Envoy's local-
// origin outlier detection): a connection refused, reset before any response byte or timed out
// takes the server out of every worker's picks at once for kUnreachableBase, doubled with each
// failure in a row up to kUnreachableMax. Failures seen while it is out (other connections that
// were already open) do not lengthen it. The last server in rotation of a backend is never taken
// out: a request then fails on its own rather than every request getting 503.
// A successful connect, or a health-check probe that started after the failure and passed,
// puts it back.
inline constexpr std::chrono::milliseconds kUnreachableBase{1000};
inline constexpr std::chrono::milliseconds kUnreachableMax{30000};
void connect_failure(const model::BackendRuntime& backend, size_t server, std::string_view reason);
void connect_success(const model::BackendRuntime& backend, size_t server);
// A probe of this server that started at `started_ns` (steady clock) passed.
void probe_passed(model::ServerState& state, int64_t started_ns);

}  // namespace weir::health
