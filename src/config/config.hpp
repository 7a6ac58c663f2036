#pragma once
// The validated, immutable configuration snapshot. Produced by load_config() (config/loader.hpp)
// and then only read; a reload builds a new one and swaps a shared_ptr.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace re2 {
class RE2;
}
namespace weir::net {
class CidrSet;
}

namespace weir::config {

using Duration = std::chrono::milliseconds;

struct SourcePos {
  std::string file;
  int line = 0;  // 1-based
  int col = 0;   // 1-based
};

enum class Balance : uint8_t {
  Random,
  RoundRobin,
  LeastConnections,
  LeastResponseTime,
  IpHash,
  ConsistentHash
};
enum class ListenerMode : uint8_t { Http, Tcp };
enum class HealthType : uint8_t { Http, Tcp };

// Re-encryption to a server (`servers[].tls`).
struct ServerTls {
  std::string ca;      // CA bundle (PEM) to verify the server with; "" = the system's trust store
  std::string sni;     // name sent and verified; default: the host part of the address
  bool verify = true;  // false only for tests
  SourcePos pos;       // the `tls:` key
};

struct Server {
  std::string name;     // default "<backend>-<index>" (index from 1)
  std::string address;  // as written, "host:port" or "[v6]:port"
  std::string host;     // host part (without brackets)
  uint16_t port = 0;
  uint32_t weight = 1;
  std::optional<ServerTls> tls;
  // `resolve: DURATION`: `host` is a DNS name looked up again every this often; every A/AAAA
  // record is a server named "IP:PORT" (src/discovery/). Unset: resolved once when a snapshot
  // is built.
  std::optional<Duration> resolve;
  SourcePos pos;
};

// `discovery:` on a backend: its servers are the SRV records of `srv` (target:port, weight from
// the record), looked up every `interval`. Such a backend has no `servers:`.
struct Discovery {
  std::string srv;
  Duration interval{10000};
  SourcePos pos;
};

struct HealthCheck {
  HealthType type = HealthType::Http;
  std::string path = "/healthz";
  Duration interval{2000};
  Duration timeout{1000};
  uint32_t rise = 2;
  uint32_t fall = 3;
  uint16_t expect_status_min = 200;  // expect_status: "200-399" or 200
  uint16_t expect_status_max = 399;
};

struct BackendLimits {
  uint32_t max_active_per_server = 0;  // 0 = unlimited
  uint32_t queue_size = 1000;
  Duration queue_timeout{5000};
};

struct BackendTimeouts {
  Duration connect{2000};
  Duration response{30000};
};

struct Sticky {
  std::string cookie;
  std::string secret_file;  // optional; relative paths resolved against the config file's folder
  std::string secret;       // the file's contents (trailing whitespace removed), read by the loader
  std::optional<Duration> max_age;
};

// Passive health: consecutive failures on live traffic (connect errors, resets, timeouts, 5xx)
// take a server out of rotation for a cooldown that doubles on each repeat (at most 32×).
struct Passive {
  uint32_t failures = 5;
  Duration cooldown{10000};
  uint32_t max_ejected_percent = 50;  // never eject more than this share of a backend
};

// `request_buffering:` on a route or backend: up to `max` bytes of a request body are read
// before a server is picked (NGINX's proxy_request_buffering), so a slow client holds no server
// connection while it sends them. A larger body is then streamed on.
struct RequestBuffering {
  uint64_t max = 64 * 1024;
};

// Retries that may have reached a server (the request was sent) are limited per worker and
// backend: each request earns `percent`/100 of a retry, a retry spends one, and `min_retries`
// are there to start with and always kept in reserve, so that retries cannot multiply the load
// on a backend that is already failing. Connect-level retries (refused, connect timeout, a
// reused connection closed before any response byte) are bounded by `retries` alone.
struct RetryBudget {
  uint32_t percent = 20;
  uint32_t min_retries = 10;
};

enum class ProxyProtocolVersion : uint8_t { Off, V1, V2 };
// How weir speaks to a backend's servers (upstream.md): HTTP/1.1; HTTP/2 over TLS (ALPN h2);
// HTTP/2 in clear text with prior knowledge (h2c); or TLS letting ALPN choose h2 or http/1.1.
enum class UpstreamProtocol : uint8_t { Http1, H2, H2c, Auto };
constexpr const char* to_string(UpstreamProtocol p) {
  return p == UpstreamProtocol::H2     ? "h2"
         : p == UpstreamProtocol::H2c  ? "h2c"
         : p == UpstreamProtocol::Auto ? "auto"
                                       : "http1";
}

struct Backend {
  std::string name;
  // `send_proxy_protocol`: each new upstream connection starts with a PROXY header naming the
  // client; such a connection serves only the client connection it was opened for.
  ProxyProtocolVersion send_proxy_protocol = ProxyProtocolVersion::Off;
  UpstreamProtocol protocol = UpstreamProtocol::Http1;
  Balance balance = Balance::RoundRobin;
  std::string hash_key = "client_ip";
  std::optional<Sticky> sticky;
  std::optional<HealthCheck> health_check;
  BackendLimits limits;
  BackendTimeouts timeouts;
  uint32_t retries = 2;
  RetryBudget retry_budget;
  std::optional<RequestBuffering> request_buffering;
  std::optional<Passive> passive;
  Duration slow_start{0};          // a server coming back ramps its weight up over this
  double hash_balance_factor = 0;  // bounded-load consistent hashing (0 = off, else >= 1)
  std::vector<Server> servers;
  std::optional<Discovery> discovery;
  SourcePos pos;
};

// A condition on a header, a cookie or a query parameter: the exact value (case-sensitive), or
// any value when `any` ("*": present).
struct FieldMatch {
  std::string name;  // headers: compared case-insensitively; cookies, query: exactly
  std::string value;
  bool any = false;
};

// `access:` of a listener or a route. Sets are built by the loader (deny_file read then, and
// again on every reload) and shared, immutable, by every worker.
struct AccessList {
  std::shared_ptr<const net::CidrSet> allow;  // null: everyone may connect
  std::shared_ptr<const net::CidrSet> deny;   // `deny` and `deny_file` together; null: none
  std::string deny_file;                      // resolved path ("" = none)
  SourcePos pos;
};

// Every condition given must hold.
struct RouteMatch {
  std::string host;                       // lower-cased; "" = any; "*.example.com" = wildcard
  std::string path;                       // the whole path without the query; "" = any
  std::string path_prefix;                // "" = any
  std::string path_regex;                 // RE2 syntax, as written ("" = any)
  std::shared_ptr<const re2::RE2> regex;  // compiled once per config (linear-time matching)
  std::vector<std::string> methods;       // upper-case tokens; empty = any
  std::vector<FieldMatch> headers;
  std::vector<FieldMatch> cookies;
  std::vector<FieldMatch> query;  // on decoded parameters
  std::string sni;                // tcp listeners: the ClientHello's server name (lower-cased)
  bool matches_everything() const {
    return host.empty() && path.empty() && path_prefix.empty() && path_regex.empty() &&
           methods.empty() && headers.empty() && cookies.empty() && query.empty() && sni.empty();
  }
};

// `redirect:` — Location is `to`, plus the request's path and query with keep_path.
struct RouteRedirect {
  std::string to;
  uint16_t status = 302;
  bool keep_path = false;
};

// `respond:` — weir answers itself.
struct RouteRespond {
  uint16_t status = 200;
  std::string body;
  std::string content_type = "text/plain";
};

// `static:` — files served from a directory (edge.md "Static files").
struct RouteStatic {
  std::string root;          // absolute (resolved against the config file's folder), a directory
  std::string strip_prefix;  // removed from the request path first ("" = none)
  std::string index = "index.html";  // served for a directory ("" = none: 404)
  bool precompressed = false;        // FILE.zst / .br / .gz served when the client accepts them
  SourcePos pos;
};

// `rewrite:` — of the forwarded path: strip_prefix, then add_prefix ("" → "/").
struct RouteRewrite {
  std::string strip_prefix;
  std::string add_prefix;
};

// One `request_headers:` or `response_headers:` block of a route, applied in the order remove,
// set, add. Names keep the spelling written in the file (sent as written) and are compared
// case-insensitively; every name is an RFC 9110 token and every value is free of control
// characters other than HTAB and of leading or trailing whitespace (checked by the loader).
struct HeaderRules {
  std::vector<std::string> remove;                       // names: every field of each is removed
  std::vector<std::pair<std::string, std::string>> set;  // name, value: replaces every field
  std::vector<std::pair<std::string, std::string>> add;  // name, value: appended, in file order
  bool empty() const { return remove.empty() && set.empty() && add.empty(); }
};

// `compression:` of a listener or a route (edge.md "Compression"); a route's replaces its
// listener's. `compression: true` is every default; on a route, `false` turns it off.
struct Compression {
  bool enabled = true;
  // In the server's order of preference: "zstd", "br", "gzip".
  std::vector<std::string> algorithms{"zstd", "br", "gzip"};
  uint64_t min_size = 1024;  // a body of known length below this is sent as it is
  // Media types, lower case; "text/*" matches a whole top-level type.
  std::vector<std::string> types{
      "text/html",        "text/css",     "text/plain", "text/javascript", "application/javascript",
      "application/json", "image/svg+xml"};
  int gzip_level = 5;  // 1-9
  int br_level = 4;    // 0-6 (7 and above take 9-33 MiB per response)
  int zstd_level = 3;  // 1-19
  SourcePos pos;
};

// One of `caches:` (edge.md "Cache"): a response store shared by every worker.
struct Cache {
  std::string name;
  uint64_t memory = 256ull << 20;    // stored heads + bodies + index, exactly
  uint64_t max_object = 8ull << 20;  // larger responses pass through, not stored
  SourcePos pos;
};

struct Route {
  RouteMatch match;
  std::string backend;       // name
  size_t backend_index = 0;  // resolved index into Config::backends
  SourcePos pos;
  HeaderRules request_headers;                        // on the request forwarded to the backend
  HeaderRules response_headers;                       // on the response sent back to the client
  std::optional<RequestBuffering> request_buffering;  // else the backend's
  // Exactly one action: `backend` (above), `redirect`, `respond` or `static`.
  std::optional<RouteRedirect> redirect;
  std::optional<RouteRespond> respond;
  std::optional<RouteStatic> static_files;  // `static:`
  std::optional<RouteRewrite> rewrite;
  std::optional<AccessList> access;        // refused → 403
  std::optional<Compression> compression;  // else the listener's
  std::string cache;                       // `cache:` name ("" = none)
  size_t cache_index = 0;                  // resolved index into Config::caches
  bool forwards() const { return !redirect && !respond && !static_files; }
};

struct ListenerTimeouts {
  Duration header{10000};
  Duration idle{60000};
  Duration body{30000};  // inactivity between request body bytes: 408
};

// OCSP stapling of a listener certificate (`ocsp:`): a response read from a file (re-read on
// reload) or fetched by weir from the certificate's responder (Authority Information Access).
struct TlsOcsp {
  std::string file;    // DER OCSP response ("" = none); resolved against the config file's folder
  bool fetch = false;  // fetch (and refresh) the response from the certificate's responder
  SourcePos pos;       // the `ocsp:` key: where OCSP errors point
};

// One certificate of a TLS listener. Paths are resolved against the config file's folder.
struct TlsCertificate {
  std::string cert;  // PEM chain, leaf first
  std::string key;   // PEM private key (RSA or EC)
  SourcePos pos;     // the `cert:` key: where certificate errors point
  // Its own `ocsp:`, else the listener's (fetch only); unset or neither file nor fetch: none.
  std::optional<TlsOcsp> ocsp;
};

// `tls:` of a listener: TLS is terminated on the worker's reactor.
struct ListenerTls {
  std::vector<TlsCertificate> certificates;         // the first is the default (unknown or no SNI)
  int min_version = 12;                             // 12 = TLS 1.2, 13 = TLS 1.3
  std::vector<std::string> alpn{"h2", "http/1.1"};  // protocols offered, in preference order
  std::optional<Duration> hsts;                     // Strict-Transport-Security max-age, if set
  std::optional<TlsOcsp> ocsp;  // `ocsp: { fetch: true }` for every certificate without its own
  SourcePos pos;
};

// `client_limits:` of a listener.
struct ClientLimits {
  enum class Key : uint8_t { ClientIp, Header, Cookie };
  Key key = Key::ClientIp;
  std::string key_name;          // header or cookie name (header: lower-cased)
  uint32_t max_connections = 0;  // per client address; 0 = no limit
  double rate = 0;               // requests per second refilled; 0 = no rate limit
  double burst = 0;              // bucket size (default: the rate's N)
  // Keys tracked at once (the table is allocated whole, 32 bytes a key); beyond it, see
  // model/client_table.hpp.
  uint32_t table_size = 65536;
  // `shared: true`: the rate and max_connections count across every instance of the fleet
  // (`cluster:`), merged every cluster.sync_interval (src/cluster/). A reload that turns it on
  // or off starts a new table.
  bool shared = false;
  SourcePos pos;
};

enum class AccessLogFormat : uint8_t { Json, Combined };

// `access_log:` (top level, or a listener's own).
struct AccessLog {
  std::string path;  // a file (appended) or "stdout"
  AccessLogFormat format = AccessLogFormat::Json;
  SourcePos pos;
};

// One of `error_pages:`: the body weir sends with its own answer of this status.
struct ErrorPage {
  std::string body;
  std::string content_type;
};

struct Listener {
  std::string name;
  std::vector<std::string> listen;  // each "host:port" or "[v6]:port"
  ListenerMode mode = ListenerMode::Http;
  std::vector<Route> routes;  // `backend:` shorthand becomes one catch-all route
  uint32_t max_connections = 10000;
  ListenerTimeouts timeouts;
  // Clients (addresses or CIDR ranges) whose X-Forwarded-* are kept and extended; null = none.
  std::shared_ptr<const net::CidrSet> trusted_proxies;
  bool proxy_protocol = false;  // every connection starts with a PROXY v1/v2 header
  std::optional<AccessList> access;
  std::optional<ClientLimits> client_limits;
  std::string request_id;                     // header name ("" = off)
  std::map<uint16_t, ErrorPage> error_pages;  // status → page
  std::optional<AccessLog> access_log;        // else the top-level one
  std::optional<Compression> compression;     // routes without their own
  std::optional<ListenerTls> tls;
  bool h2c = false;  // plain listener: also HTTP/2 with prior knowledge
  // TLS listener: also HTTP/3 over QUIC on the same port number (UDP), advertised by Alt-Svc on
  // the TCP responses (src/quic/).
  bool http3 = false;
  // IP_FREEBIND: bind the address even while it is not on this host (a VRRP backup waiting for
  // its virtual address).
  bool freebind = false;
  // Removes Server, X-Powered-By, X-AspNet-Version and X-AspNetMvc-Version from servers'
  // responses (weir sends no Server of its own).
  bool hide_server_headers = true;
  uint16_t redirect_https = 0;  // plain listener: answer 308 to https://HOST:PORT/PATH (0 = off)
  SourcePos pos;
};

struct Admin {
  std::string listen;  // empty = no admin listener
  // Runtime API writes need `Authorization: Bearer <token>`; no token_file = writes off (404).
  std::string token_file;
  std::string token;  // read at load time
  // A slow or hostile client cannot starve the admin listener: a head must arrive within
  // header_timeout, an idle connection closes after idle_timeout, at most max_connections open.
  Duration header_timeout{5000};
  Duration idle_timeout{30000};
  uint32_t max_connections = 64;
};

// Sizes that bound per-connection memory (extension keys under `limits:` at top level).
struct GlobalLimits {
  uint64_t buffer_size = 16 * 1024;  // per direction per connection
  uint64_t max_request_line = 8 * 1024;
  uint64_t max_header_bytes = 16 * 1024;  // whole head (connection buffers are at least this)
  uint32_t max_headers = 100;
  uint32_t max_idle_upstream_per_server = 64;  // per worker keep-alive pool size
  Duration upstream_idle_timeout{30000};
  Duration drain_timeout{30000};  // SIGTERM: how long in-flight requests may finish
  // A binary upgrade (SIGUSR2): how long the old process keeps tunnels (tcp mode, WebSockets)
  // open after it stopped accepting (they close earlier when their peers end them).
  Duration tunnel_drain_timeout{3600 * 1000};
  // SIGTERM: how long the listeners keep accepting and serving after /healthz turned 503 (and
  // `announce` withdrew), so that a fleet's checker moves the address away first.
  Duration drain_grace{0};
  // HTTP/2 (per client connection)
  uint32_t h2_max_concurrent_streams = 100;
  uint64_t h2_stream_window = 256 * 1024;  // receive window per stream (bytes buffered per upload)
  uint64_t h2_connection_window = 1024 * 1024;  // receive window of the whole connection
  // HTTP/3 (per QUIC connection): the same meaning as the HTTP/2 ones
  uint32_t h3_max_concurrent_streams = 100;
  uint64_t h3_stream_window = 256 * 1024;
  uint64_t h3_connection_window = 1024 * 1024;
  Duration quic_idle_timeout{30000};
  // Per worker: with this many handshakes in progress, a new client must first prove its address
  // (a Retry round trip) before weir keeps any state for it; 0 = always.
  uint32_t quic_retry_threshold = 100;
  // TLS session tickets: keys shared by all workers, replaced every interval (the previous key
  // still decrypts for one more interval).
  Duration tls_ticket_rotation{3600 * 1000};
};

// `announce:` (fleet.md): while every backend of `backends` has at least `min_healthy` servers
// taking new clients, weir enables `protocols` in the local BIRD (its control socket), else
// disables them; BIRD does the BGP. src/fleet/announce.cpp.
struct Announce {
  std::string bird_socket = "/run/bird/bird.ctl";
  std::vector<std::string> protocols;  // BIRD protocol names ([A-Za-z_][A-Za-z0-9_]*)
  std::vector<std::string> backends;   // when.backends: names of config backends
  uint32_t min_healthy = 1;            // when.min_healthy
  bool withdraw_on_drain = true;       // SIGTERM: disable first, then drain_grace and the drain
  SourcePos pos;
};

// `cluster:` (fleet.md): the fleet's shared store, a Redis that every instance syncs its
// `shared: true` client_limits with (src/cluster/redis_sync.cpp).
struct Cluster {
  std::string redis;      // as written: "HOST:PORT", "[V6]:PORT" or "unix:/path"
  std::string host;       // HOST (no brackets), or empty for a unix socket
  uint16_t port = 0;      //
  std::string unix_path;  // unix: the socket path (relative to the config file's folder)
  std::string prefix = "weir:";
  Duration sync_interval{100};
  SourcePos pos;
};

struct Config {
  std::string source_file;
  uint32_t workers = 0;  // 0 = auto (one per core)
  Admin admin;
  GlobalLimits limits;
  std::vector<Listener> listeners;
  std::vector<Backend> backends;
  std::optional<AccessLog> access_log;  // listeners without their own
  std::vector<Cache> caches;
  // `resolvers:` the DNS servers of `resolve:` and `discovery:` ("IP:PORT", IPv6 in brackets);
  // empty = the nameservers of /etc/resolv.conf.
  std::vector<std::string> resolvers;
  std::optional<Cluster> cluster;    // `cluster:` (client limits shared through Redis)
  std::optional<Announce> announce;  // `announce:` (BGP through a local BIRD), if configured
};

using ConfigPtr = std::shared_ptr<const Config>;

}  // namespace weir::config
