#include "admin/admin_server.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "admin/dashboard.hpp"
#include "cache/store.hpp"
#include "model/client_table.hpp"
#include "server/http_server.hpp"

namespace weir::admin {
namespace {

std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

const proxy::ServerCounts& server_counts(const proxy::WorkerStats& st, uint32_t uid) {
  static const proxy::ServerCounts kNone;
  return uid < st.servers.size() ? st.servers[uid] : kNone;
}

uint64_t server_requests(const proxy::WorkerStats& st, uint32_t uid) {
  return server_counts(st, uid).requests;
}

}  // namespace

std::string escape_json(std::string_view v) {
  std::string out;
  for (char c : v) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out.push_back(c);
    }
  }
  return out;
}

void render_cache_metrics(const model::Snapshot& snap, std::string& out);

std::string render_metrics(const model::Snapshot& snap, const proxy::WorkerStats& st) {
  std::string out;
  out +=
      "# HELP weir_requests_total Requests answered, by listener, backend and status code (and "
      "gRPC status, for gRPC requests whose status is known).\n";
  out += "# TYPE weir_requests_total counter\n";
  for (const auto& [key, counts] : st.requests) {
    for (size_t i = 0; i < counts.by_status.size(); ++i) {
      if (!counts.by_status[i]) continue;
      out += fmt::format("weir_requests_total{{listener=\"{}\",backend=\"{}\",code=\"{}\"}} {}\n",
                         escape_label(key.first), escape_label(key.second), i + 100,
                         counts.by_status[i]);
    }
    for (const auto& g : counts.grpc) {
      out += fmt::format(
          "weir_requests_total{{listener=\"{}\",backend=\"{}\",code=\"{}\",grpc_status=\"{}\"}} "
          "{}\n",
          escape_label(key.first), escape_label(key.second), g.status, g.grpc, g.count);
    }
  }
  out += "# HELP weir_server_up 1 if the server is in rotation.\n# TYPE weir_server_up gauge\n";
  for (const auto& b : snap.backends) {
    for (const auto& s : b.servers) {
      out += fmt::format("weir_server_up{{backend=\"{}\",server=\"{}\"}} {}\n",
                         escape_label(b.cfg->name), escape_label(s.name),
                         s.state->in_rotation() ? 1 : 0);
    }
  }
  out += "# HELP weir_server_active_requests In-flight requests per server.\n";
  out += "# TYPE weir_server_active_requests gauge\n";
  for (const auto& b : snap.backends) {
    for (const auto& s : b.servers) {
      out += fmt::format("weir_server_active_requests{{backend=\"{}\",server=\"{}\"}} {}\n",
                         escape_label(b.cfg->name), escape_label(s.name), s.state->active.load());
    }
  }
  out += "# HELP weir_server_requests_total Requests sent to each server (tries included).\n";
  out += "# TYPE weir_server_requests_total counter\n";
  for (const auto& b : snap.backends) {
    for (const auto& s : b.servers) {
      out +=
          fmt::format("weir_server_requests_total{{backend=\"{}\",server=\"{}\"}} {}\n",
                      escape_label(b.cfg->name), escape_label(s.name), server_requests(st, s.uid));
    }
  }
  out += "# HELP weir_server_probe_results_total Health-check probes by result.\n";
  out += "# TYPE weir_server_probe_results_total counter\n";
  for (const auto& b : snap.backends) {
    for (const auto& s : b.servers) {
      for (auto [result, n] : {std::pair{"pass", s.state->probes_passed.load()},
                               std::pair{"fail", s.state->probes_failed.load()}}) {
        out += fmt::format(
            "weir_server_probe_results_total{{backend=\"{}\",server=\"{}\",result=\"{}\"}} {}\n",
            escape_label(b.cfg->name), escape_label(s.name), result, n);
      }
    }
  }
  out +=
      "# HELP weir_client_limits_keys Client keys tracked by a listener's client_limits table "
      "(idle ones included until reclaimed), and its size.\n";
  out += "# TYPE weir_client_limits_keys gauge\n";
  for (const auto& l : snap.listeners) {
    if (!l.clients) continue;
    out += fmt::format("weir_client_limits_keys{{listener=\"{}\"}} {}\n", escape_label(l.cfg->name),
                       l.clients->live_entries());
    out += fmt::format("weir_client_limits_table_size{{listener=\"{}\"}} {}\n",
                       escape_label(l.cfg->name), l.clients->capacity());
  }
  out +=
      "# HELP weir_client_limits_untracked_total Connections and requests served without a "
      "limit because the client_limits table had no slot for their key (fail-open at the "
      "bound).\n";
  out += "# TYPE weir_client_limits_untracked_total counter\n";
  for (const auto& l : snap.listeners) {
    if (!l.clients) continue;
    out += fmt::format("weir_client_limits_untracked_total{{listener=\"{}\"}} {}\n",
                       escape_label(l.cfg->name), l.clients->untracked());
  }
  render_cache_metrics(snap, out);
  out +=
      "# HELP weir_server_connect_failures_total Connections to the server refused, reset "
      "before any response byte or timed out.\n";
  out += "# TYPE weir_server_connect_failures_total counter\n";
  for (const auto& b : snap.backends) {
    for (const auto& s : b.servers) {
      out += fmt::format("weir_server_connect_failures_total{{backend=\"{}\",server=\"{}\"}} {}\n",
                         escape_label(b.cfg->name), escape_label(s.name),
                         s.state->connect_failures.load());
    }
  }
  out +=
      "# HELP weir_server_out 1 while the server is out of rotation, by cause: down (health "
      "checks), ejected (passive), unreachable (connect failures).\n";
  out += "# TYPE weir_server_out gauge\n";
  for (const auto& b : snap.backends) {
    for (const auto& s : b.servers) {
      const auto& st = *s.state;
      for (auto [cause, v] : {std::pair{"down", !st.up.load()}, std::pair{"ejected", st.ejected()},
                              std::pair{"unreachable", st.unreachable()}}) {
        out += fmt::format("weir_server_out{{backend=\"{}\",server=\"{}\",cause=\"{}\"}} {}\n",
                           escape_label(b.cfg->name), escape_label(s.name), cause, v ? 1 : 0);
      }
    }
  }
  out += "# HELP weir_backend_queued_requests Requests waiting for a server slot.\n";
  out += "# TYPE weir_backend_queued_requests gauge\n";
  for (const auto& b : snap.backends) {
    out += fmt::format("weir_backend_queued_requests{{backend=\"{}\"}} {}\n",
                       escape_label(b.cfg->name), b.queued->load());
  }
  out +=
      "# HELP weir_retries_total Requests tried again on another connection: unseen (no "
      "server saw it), resent (a server may have; within the retry budget).\n";
  out += "# TYPE weir_retries_total counter\n";
  out += fmt::format("weir_retries_total{{kind=\"unseen\"}} {}\n", st.retries_unseen);
  out += fmt::format("weir_retries_total{{kind=\"resent\"}} {}\n", st.retries_resent);
  out +=
      "# HELP weir_client_closed_total Requests whose client went away first, by what weir "
      "was doing: request (body still coming), waiting (for a server or its answer), response "
      "(body going down). The first two count as code 499 in weir_requests_total.\n";
  out += "# TYPE weir_client_closed_total counter\n";
  for (auto [phase, n] : {std::pair{"request", st.client_closed_request},
                          std::pair{"waiting", st.client_closed_waiting},
                          std::pair{"response", st.client_closed_response}}) {
    out += fmt::format("weir_client_closed_total{{phase=\"{}\"}} {}\n", phase, n);
  }
  out +=
      "# HELP weir_access_log_dropped_total Access log lines dropped (the writer fell behind, "
      "or the file could not be written).\n";
  out += "# TYPE weir_access_log_dropped_total counter\n";
  out += fmt::format("weir_access_log_dropped_total {}\n", st.access_log_dropped);
  out += "# HELP weir_access_log_lines_total Access log lines written.\n";
  out += "# TYPE weir_access_log_lines_total counter\n";
  out += fmt::format("weir_access_log_lines_total {}\n", st.access_log_written);
  out +=
      "# HELP weir_refused_total Clients refused before anything reached a backend, by "
      "listener and reason (access, connections, rate, proxy_protocol).\n";
  out += "# TYPE weir_refused_total counter\n";
  for (const auto& [key, n] : st.refused) {
    out += fmt::format("weir_refused_total{{listener=\"{}\",reason=\"{}\"}} {}\n",
                       escape_label(key.first), key.second, n);
  }
  out += "# HELP weir_request_duration_seconds Time from request head to response end.\n";
  out += "# TYPE weir_request_duration_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < proxy::kLatencyBuckets.size(); ++i) {
    cumulative += st.latency.counts[i];
    out += fmt::format("weir_request_duration_seconds_bucket{{le=\"{}\"}} {}\n",
                       proxy::kLatencyBuckets[i], cumulative);
  }
  cumulative += st.latency.counts.back();
  out += fmt::format("weir_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n", cumulative);
  out += fmt::format("weir_request_duration_seconds_sum {}\n", st.latency.sum);
  out += fmt::format("weir_request_duration_seconds_count {}\n", st.latency.count);
  // Plain counters and gauges: a name ending in _total is a counter.
  const std::pair<std::string_view, uint64_t> totals[] = {
      {"weir_connections_accepted_total", st.connections_accepted},
      {"weir_connections_open", st.connections_open},
      {"weir_upstream_connects_total", st.upstream_connects},
      {"weir_upstream_reuses_total", st.upstream_reuses},
      {"weir_bad_requests_total", st.parse_errors},
      {"weir_tls_handshake_failures_total", st.tls_handshake_failures},
      {"weir_h2_connections_total", st.h2_connections},
      {"weir_h2_abusive_connections_total", st.h2_abuse},
      {"weir_http3_connections_total", st.h3_connections},
      {"weir_h3_abusive_connections_total", st.h3_abuse},
      {"weir_quic_connections_open", static_cast<uint64_t>(std::max<int64_t>(0, st.quic_open))},
      {"weir_quic_retries_total", st.quic_retries},
      {"weir_quic_stateless_resets_total", st.quic_stateless_resets},
      {"weir_quic_version_negotiations_total", st.quic_version_negotiations},
      {"weir_quic_packets_dropped_total", st.quic_dropped},
      {"weir_quic_send_errors_total", st.quic_send_errors},
      {"weir_quic_packets_forwarded_total", st.quic_forwarded},
      {"weir_retries_refused_by_budget_total", st.retries_refused_by_budget},
      {"weir_buffer_blocks_in_use", st.buffers_in_use},
      {"weir_buffer_block_bytes", st.buffer_block_bytes},
      {"weir_announced", st.announced},  // `announce`: 1 while BIRD has the protocols enabled
  };
  for (const auto& [name, value] : totals) {
    std::string_view type = name.ends_with("_total") ? "counter" : "gauge";
    out += fmt::format("# TYPE {} {}\n{} {}\n", name, type, name, value);
  }
  if (st.cluster_up >= 0) {  // only with `cluster:`
    out +=
        "# HELP weir_cluster_up 1 while shared client limits sync through the cluster's Redis, "
        "0 while it is unreachable (limits count on this instance only).\n";
    out += fmt::format("# TYPE weir_cluster_up gauge\nweir_cluster_up {}\n", st.cluster_up);
  }
  return out;
}

void render_cache_metrics(const model::Snapshot& snap, std::string& out) {
  if (snap.caches.empty()) return;
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
    uint64_t (*value)(const cache::Store&);
  };
  static const Metric metrics[] = {
      {"weir_cache_hits_total", "counter", "Requests answered from a cache's store.",
       [](const cache::Store& s) { return s.hits(); }},
      {"weir_cache_misses_total", "counter",
       "Cacheable requests the store had no response for (forwarded).",
       [](const cache::Store& s) { return s.misses(); }},
      {"weir_cache_bytes", "gauge",
       "Bytes a cache holds (heads, bodies, index; never above its memory).",
       [](const cache::Store& s) { return static_cast<uint64_t>(s.bytes()); }},
      {"weir_cache_memory_bytes", "gauge", "A cache's memory bound.",
       [](const cache::Store& s) { return static_cast<uint64_t>(s.memory()); }},
      {"weir_cache_entries", "gauge", "Responses a cache holds.",
       [](const cache::Store& s) { return s.entries(); }},
      {"weir_cache_evictions_total", "counter", "Responses evicted to make room (LRU).",
       [](const cache::Store& s) { return s.evictions(); }},
      {"weir_cache_coalesced_total", "counter",
       "Requests that waited for another request's response instead of going to the server.",
       [](const cache::Store& s) { return s.coalesced(); }},
  };
  const auto& caches = snap.config->caches;
  for (const Metric& m : metrics) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", m.name, m.help, m.name, m.type);
    for (size_t i = 0; i < caches.size(); ++i)
      out += fmt::format("{}{{cache=\"{}\"}} {}\n", m.name, escape_label(caches[i].name),
                         m.value(*snap.caches[i]));
  }
}

std::string render_server_json(const model::ServerRuntime& s, const proxy::WorkerStats& st) {
  const proxy::ServerCounts& c = server_counts(st, s.uid);
  std::string latency;
  for (uint64_t n : c.latency.counts)
    latency += fmt::format("{}{}", latency.empty() ? "" : ",", n);
  const model::ServerState& state = *s.state;
  return fmt::format(
      "{{\"name\":\"{}\",\"address\":\"{}\",\"weight\":{},\"healthy\":{},\"state\":\"{}\","
      "\"active_requests\":{},\"requests_total\":{},\"errors_total\":{},"
      "\"latency_counts\":[{}],\"up\":{},\"ejected\":{},\"unreachable\":{},"
      "\"connect_failures\":{},\"probes_passed\":{},\"probes_failed\":{}}}",
      escape_json(s.name), escape_json(s.address_text), s.weight, state.in_rotation(),
      model::admin_state_name(state.admin.load(std::memory_order_relaxed)), state.active.load(),
      c.requests, c.errors, latency, state.up.load(), state.ejected(), state.unreachable(),
      state.connect_failures.load(), state.probes_passed.load(), state.probes_failed.load());
}

std::string render_backends_json(const model::Snapshot& snap, const proxy::WorkerStats& st) {
  std::string out = "{\"listeners\":[";
  for (size_t i = 0; i < snap.listeners.size(); ++i) {
    const auto& l = snap.listeners[i];
    std::string addrs;
    for (const auto& a : l.addrs)
      addrs += fmt::format("{}\"{}\"", addrs.empty() ? "" : ",", escape_json(a.to_string()));
    uint64_t requests = 0;
    for (const auto& [key, counts] : st.requests) {
      if (key.first != l.cfg->name) continue;
      for (uint64_t n : counts.by_status)
        requests += n;
      for (const auto& g : counts.grpc)
        requests += g.count;
    }
    std::string_view mode = l.cfg->mode == config::ListenerMode::Tcp ? "tcp"
                            : l.tls                                  ? "https"
                                                                     : "http";
    out += fmt::format(
        "{}{{\"name\":\"{}\",\"addresses\":[{}],\"mode\":\"{}\",\"requests_total\":{}}}",
        i ? "," : "", escape_json(l.cfg->name), addrs, mode, requests);
  }
  out += "],\"latency_buckets\":[";
  for (size_t i = 0; i < proxy::kLatencyBuckets.size(); ++i)
    out += fmt::format("{}{}", i ? "," : "", proxy::kLatencyBuckets[i]);
  out += "],\"backends\":[";
  for (size_t i = 0; i < snap.backends.size(); ++i) {
    const auto& b = snap.backends[i];
    out += fmt::format("{}{{\"name\":\"{}\",\"queued\":{},\"servers\":[", i ? "," : "",
                       escape_json(b.cfg->name), b.queued->load());
    for (size_t j = 0; j < b.servers.size(); ++j) {
      if (j) out += ',';
      out += render_server_json(b.servers[j], st);
    }
    out += "]}";
  }
  out += fmt::format("],\"buffers\":{{\"in_use\":{},\"block_bytes\":{}}}}}\n", st.buffers_in_use,
                     st.buffer_block_bytes);
  return out;
}

AdminServer::AdminServer(int listen_fd, AdminSource source, server::ServerOptions options)
    : source_(std::move(source)) {
  auto handle = [this](const server::Request& r) {
    server::Response resp;
    if (r.path == "/" && (r.method == "GET" || r.method == "HEAD")) {
      resp.body = std::string(dashboard_html());
      resp.headers.emplace_back("Content-Type", "text/html; charset=utf-8");
      resp.headers.emplace_back("Cache-Control", "no-store");
    } else if (r.path == "/healthz") {
      if (source_.draining && source_.draining()) {
        resp.status = 503;
        resp.body = "draining\n";
      } else {
        resp.body = "ok\n";
      }
    } else if (r.path == "/metrics") {
      auto snap = source_.snapshot();
      resp.body = render_metrics(*snap, source_.stats());
      resp.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
    } else if (r.path.starts_with("/api/v1/caches/") && r.path.ends_with("/purge")) {
      auto snap = source_.snapshot();
      resp = purge_cache(*snap, r);
    } else if (r.path == "/api/v1/backends") {
      auto snap = source_.snapshot();
      resp.body = render_backends_json(*snap, source_.stats());
      resp.headers.emplace_back("Content-Type", "application/json");
      resp.headers.emplace_back("Cache-Control", "no-store");
    } else if (r.path.starts_with("/api/v1/backends/")) {
      resp = set_server(*source_.snapshot(), r, source_);
    } else {
      resp.status = 404;
      resp.body = "Not Found\n";
    }
    return resp;
  };
  http_ = std::make_unique<server::HttpServer>(reactor_, listen_fd, handle, options);
}

AdminServer::~AdminServer() {
  stop();
}

void AdminServer::start() {
  thread_ = std::thread([this] { reactor_.run(); });
}

void AdminServer::stop() {
  reactor_.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace weir::admin
