#pragma once
// Passive health checks: live traffic judges servers between active probes. `failures`
// consecutive failures (connect error, reset, timeout, 5xx) eject a server for `cooldown`,
// doubled on each ejection in a row (up to 32×); a success resets the count. At most
// `max_ejected_percent` of a backend's servers are out at once, so a backend-wide problem
// cannot empty it.
#include <string_view>

#include "model/snapshot.hpp"

namespace weir::health {

// `status` (a 5xx answer) is appended to `reason` only if a log line is written: counting a
// failure allocates nothing.
void passive_failure(const model::BackendRuntime& backend, size_t server, std::string_view reason,
                     uint16_t status = 0);
void passive_success(const model::BackendRuntime& backend, size_t server);

}  // namespace weir::health
