#include "proxy/stats.hpp"

#include <algorithm>

namespace weir::proxy {

void WorkerStats::merge(const WorkerStats& o) {
  for (const auto& [key, counts] : o.requests) {
    auto& mine = requests[key];
    for (size_t i = 0; i < counts.by_status.size(); ++i)
      mine.by_status[i] += counts.by_status[i];
    for (const auto& g : counts.grpc)
      mine.add_grpc(g.status, g.grpc, g.count);
  }
  if (servers.size() < o.servers.size()) servers.resize(o.servers.size());
  for (size_t i = 0; i < o.servers.size(); ++i)
    servers[i].merge(o.servers[i]);
  latency.merge(o.latency);
  connections_accepted += o.connections_accepted;
  connections_open += o.connections_open;
  upstream_connects += o.upstream_connects;
  upstream_reuses += o.upstream_reuses;
  parse_errors += o.parse_errors;
  tls_handshake_failures += o.tls_handshake_failures;
  h2_connections += o.h2_connections;
  h2_abuse += o.h2_abuse;
  h3_connections += o.h3_connections;
  quic_open += o.quic_open;
  quic_retries += o.quic_retries;
  quic_stateless_resets += o.quic_stateless_resets;
  quic_version_negotiations += o.quic_version_negotiations;
  quic_dropped += o.quic_dropped;
  quic_send_errors += o.quic_send_errors;
  quic_forwarded += o.quic_forwarded;
  h3_abuse += o.h3_abuse;
  client_closed_request += o.client_closed_request;
  client_closed_waiting += o.client_closed_waiting;
  client_closed_response += o.client_closed_response;
  retries_unseen += o.retries_unseen;
  retries_resent += o.retries_resent;
  retries_refused_by_budget += o.retries_refused_by_budget;
  for (const auto& [key, n] : o.refused)
    refused[key] += n;
  buffers_in_use += o.buffers_in_use;
  buffer_block_bytes = std::max(buffer_block_bytes, o.buffer_block_bytes);
}

}  // namespace weir::proxy
