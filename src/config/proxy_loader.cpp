// The reverse-proxy keys of a listener (proxy.md): `access`, `trusted_proxies`,
// `client_limits`, `request_id`, `error_pages`, `access_log`, the routes' `access`, and the
// top-level `cluster` that `client_limits.shared` needs. Address
// lists are built into net::CidrSet here, so a bad entry (or a bad line of a deny_file) is an
// error at its place in the file and every worker later shares one immutable set.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "config/address.hpp"
#include "config/loader_parts.hpp"
#include "config/tls_loader.hpp"
#include "net/cidr_set.hpp"

namespace weir::config {
namespace {

constexpr uint64_t kMaxErrorPageBytes = 1024 * 1024;

// A list of addresses/ranges (or one written alone) added to `b`; false if any is invalid.
bool add_entries(Diagnostics& d, const Field& f, std::string_view key, net::CidrSetBuilder& b) {
  std::vector<Field> items;
  if (f.value.IsScalar()) {
    items.push_back(f);
  } else if (!read_list(d, f, items)) {
    return false;
  }
  bool ok = true;
  for (const Field& item : items) {
    std::string text;
    if (!read_string(d, item, text)) {
      ok = false;
      continue;
    }
    std::string error;
    if (!b.add(text, error)) {
      d.error(item.mark, quote(key) + ": " + error);
      ok = false;
    }
  }
  return ok;
}

std::shared_ptr<const net::CidrSet> share(net::CidrSetBuilder& b) {
  return std::make_shared<const net::CidrSet>(b.build());
}

// "20/s", "600/m": tokens per second.
bool read_rate(Diagnostics& d, const Field& f, double& per_second, double& n) {
  std::string text;
  if (!read_string(d, f, text)) return false;
  size_t slash = text.find('/');
  uint64_t count = 0;
  bool ok = slash != std::string::npos && slash > 0 && slash <= 9;
  for (size_t i = 0; ok && i < slash; ++i) {
    ok = text[i] >= '0' && text[i] <= '9';
    count = count * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  std::string unit = ok ? text.substr(slash + 1) : "";
  if (!ok || count == 0 || (unit != "s" && unit != "m")) {
    d.error(f.mark,
            "\"rate\" must be a number of requests per second or minute, such as 20/s "
            "or 600/m, got " +
                quote(text));
    return false;
  }
  n = static_cast<double>(count);
  per_second = unit == "s" ? n : n / 60.0;
  return true;
}

std::string content_type_for(std::string_view path) {
  size_t dot = path.rfind('.');
  std::string ext = dot == std::string_view::npos ? "" : lower(path.substr(dot + 1));
  if (ext == "html" || ext == "htm") return "text/html; charset=utf-8";
  if (ext == "json") return "application/json";
  if (ext == "xml") return "application/xml";
  if (ext == "txt") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

bool read_small_file(const std::string& path, uint64_t max, std::string& out, std::string& error) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    error = "cannot read " + quote(path) + ": not a readable file";
    return false;
  }
  if (static_cast<uint64_t>(st.st_size) > max) {
    error = quote(path) + " is larger than 1 MiB";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot open " + quote(path);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

}  // namespace

void load_access(LoadState& s, const Field& f, std::optional<AccessList>& out) {
  MapReader m(s.diag, f, "access", {"allow", "deny", "deny_file"});
  if (!m.ok()) return;
  AccessList a;
  a.pos = s.diag.pos(f.key_mark);
  if (const Field* allow = m.find("allow")) {
    net::CidrSetBuilder b;
    if (add_entries(s.diag, *allow, "allow", b)) a.allow = share(b);
  }
  net::CidrSetBuilder deny;
  bool any_deny = false;
  if (const Field* d = m.find("deny")) any_deny |= add_entries(s.diag, *d, "deny", deny);
  if (const Field* file = m.find("deny_file")) {
    std::string path;
    if (read_string(s.diag, *file, path)) {
      a.deny_file = resolve_path(s, path);
      std::string error;
      if (!deny.add_file(a.deny_file, error)) {
        s.diag.error(file->mark, "\"deny_file\": " + error);
      } else {
        any_deny = true;
      }
    }
  }
  if (any_deny && deny.size() > 0) a.deny = share(deny);
  if (!m.has("allow") && !m.has("deny") && !m.has("deny_file")) {
    s.diag.error(f.mark, "\"access\" needs \"allow\", \"deny\" or \"deny_file\"");
  }
  out = std::move(a);
}

void load_trusted_proxies(LoadState& s, const Field& f, Listener& l) {
  net::CidrSetBuilder b;
  if (add_entries(s.diag, f, "trusted_proxies", b)) l.trusted_proxies = share(b);
}

void load_client_limits(LoadState& s, const Field& f, Listener& l) {
  MapReader m(s.diag, f, "client_limits",
              {"key", "max_connections", "rate", "burst", "table_size", "shared"});
  if (!m.ok()) return;
  ClientLimits c;
  c.pos = s.diag.pos(f.key_mark);
  if (const Field* key = m.find("key")) {
    std::string text;
    if (read_string(s.diag, *key, text)) {
      size_t colon = text.find(':');
      std::string kind = text.substr(0, colon);
      std::string name = colon == std::string::npos ? "" : text.substr(colon + 1);
      if (text == "client_ip") {
        c.key = ClientLimits::Key::ClientIp;
      } else if ((kind == "header" || kind == "cookie") && is_token(name)) {
        c.key = kind == "header" ? ClientLimits::Key::Header : ClientLimits::Key::Cookie;
        c.key_name = kind == "header" ? lower(name) : name;
      } else {
        s.diag.error(key->mark,
                     "\"key\" must be client_ip, header:NAME or cookie:NAME, got " + quote(text));
      }
    }
  }
  m.get_uint32("max_connections", 1, 10'000'000, c.max_connections);
  m.get_uint32("table_size", 1024, 100'000'000, c.table_size);
  double n = 0;
  if (const Field* rate = m.find("rate")) {
    if (read_rate(s.diag, *rate, c.rate, n)) c.burst = n;
  }
  if (const Field* burst = m.find("burst")) {
    uint32_t b = 0;
    if (!m.has("rate")) {
      s.diag.error(burst->key_mark, "\"burst\" is the size of the \"rate\" bucket: give \"rate\"");
    } else if (read_uint32(s.diag, *burst, 1, 10'000'000, b)) {
      c.burst = b;
    }
  }
  if (c.max_connections == 0 && c.rate == 0) {
    s.diag.error(f.mark, "\"client_limits\" needs \"max_connections\" or \"rate\"");
  }
  if (c.key != ClientLimits::Key::ClientIp && c.rate == 0 && m.has("key")) {
    s.diag.error(m.find("key")->mark,
                 "a header or cookie key is for \"rate\" (max_connections counts per address)");
  }
  if (l.mode == ListenerMode::Tcp && c.rate > 0) {
    s.diag.error(m.find("rate")->key_mark,
                 "\"rate\" counts HTTP requests: a tcp listener has \"max_connections\" only");
  }
  if (const Field* shared = m.find("shared"); shared && read_bool(s.diag, *shared, c.shared)) {
    if (c.shared && !s.config.cluster) {
      s.diag.error(shared->mark,
                   "\"shared: true\" counts across the fleet through its Redis: give a top-level "
                   "\"cluster\" with \"redis\"");
    }  // shares the rate and max_connections, whichever are given (one is, checked above)
  }
  l.client_limits = std::move(c);
}

// `cluster: { redis, prefix, sync_interval }`. Nothing connects here (weir check never touches
// the network): the address is only checked for its form.
void load_cluster(LoadState& s, const Field& f) {
  constexpr size_t kMaxPrefix = 64;
  constexpr size_t kMaxUnixPath = 107;  // sockaddr_un.sun_path less its NUL
  MapReader m(s.diag, f, "cluster", {"redis", "prefix", "sync_interval"});
  Cluster c;
  c.pos = s.diag.pos(f.key_mark);
  // Set even when something in it is wrong (the config is refused anyway), so that listeners'
  // `shared: true` are not also reported as lacking a cluster.
  if (!m.ok()) {
    s.config.cluster = std::move(c);
    return;
  }
  if (const Field* redis = m.require("redis")) {
    std::string text;
    if (read_string(s.diag, *redis, text)) {
      if (text.starts_with("unix:")) {
        std::string path = text.substr(5);
        if (path.empty()) {
          s.diag.error(redis->mark,
                       "\"redis\": unix: needs a socket path, such as "
                       "unix:/run/redis/redis.sock");
        } else {
          path = resolve_path(s, path);
          if (path.size() > kMaxUnixPath) {
            s.diag.error(redis->mark, "\"redis\": the socket path is longer than " +
                                          std::to_string(kMaxUnixPath) + " bytes");
          }
          c.unix_path = path;
          c.redis = text;
        }
      } else {
        HostPort hp;
        if (std::string why = parse_host_port(text, hp); !why.empty()) {
          s.diag.error(redis->mark, "\"redis\" must be HOST:PORT or unix:/path: " + why);
        } else {
          c.redis = text;
          c.host = hp.host;
          c.port = hp.port;
        }
      }
    }
  }
  if (const Field* prefix = m.find("prefix")) {
    std::string text;
    if (read_string(s.diag, *prefix, text)) {
      bool printable = std::all_of(text.begin(), text.end(),
                                   [](unsigned char ch) { return ch > 0x20 && ch < 0x7f; });
      if (text.size() > kMaxPrefix || !printable) {
        s.diag.error(prefix->mark, "\"prefix\" must be at most " + std::to_string(kMaxPrefix) +
                                       " printable characters without spaces, got " + quote(text));
      } else {
        c.prefix = std::move(text);
      }
    }
  }
  Duration interval{0};
  if (m.get_duration("sync_interval", false, interval)) {
    if (interval < Duration{10} || interval > Duration{60'000}) {
      s.diag.error(m.find("sync_interval")->mark, "\"sync_interval\" must be from 10ms to 60s");
    } else {
      c.sync_interval = interval;
    }
  }
  s.config.cluster = std::move(c);
}

void load_request_id(LoadState& s, const Field& f, Listener& l) {
  std::string name;
  if (!read_string(s.diag, f, name)) return;
  if (!is_token(name)) {
    s.diag.error(f.mark,
                 "\"request_id\" must be a header name such as X-Request-ID, got " + quote(name));
    return;
  }
  l.request_id = std::move(name);
}

void load_error_pages(LoadState& s, const Field& f, Listener& l) {
  if (!f.value.IsMap()) {
    s.diag.error(
        f.mark, "\"error_pages\" must be a map of status codes to files, got " + describe(f.value));
    return;
  }
  for (auto it = f.value.begin(); it != f.value.end(); ++it) {
    Field key{"error_pages", it->first, it->first.Mark(), it->first.Mark()};
    Field value{"error_pages", it->second,
                it->second.Mark().is_null() ? it->first.Mark() : it->second.Mark(),
                it->first.Mark()};
    uint32_t status = 0;
    if (!read_uint32(s.diag, key, 400, 599, status)) continue;
    std::string path;
    if (!read_string(s.diag, value, path)) continue;
    path = resolve_path(s, path);
    ErrorPage page;
    std::string error;
    if (!read_small_file(path, kMaxErrorPageBytes, page.body, error)) {
      s.diag.error(value.mark, "\"error_pages\": " + error);
      continue;
    }
    page.content_type = content_type_for(path);
    if (!l.error_pages.emplace(static_cast<uint16_t>(status), std::move(page)).second) {
      s.diag.error(key.mark, "\"error_pages\": status " + std::to_string(status) + " twice");
    }
  }
}

void load_access_log(LoadState& s, const Field& f, std::optional<AccessLog>& out) {
  MapReader m(s.diag, f, "access_log", {"path", "format"});
  if (!m.ok()) return;
  AccessLog a;
  a.pos = s.diag.pos(f.key_mark);
  if (const Field* path = m.require("path")) {
    if (read_string(s.diag, *path, a.path)) {
      if (a.path.empty()) {
        s.diag.error(path->mark, "\"path\" must be a file name or \"stdout\"");
      } else if (a.path != "stdout") {
        a.path = resolve_path(s, a.path);
      }
    }
  }
  if (const Field* format = m.find("format")) {
    std::string text;
    if (read_string(s.diag, *format, text)) {
      if (text == "json") {
        a.format = AccessLogFormat::Json;
      } else if (text == "combined") {
        a.format = AccessLogFormat::Combined;
      } else {
        s.diag.error(format->mark, "\"format\" must be json or combined, got " + quote(text));
      }
    }
  }
  out = std::move(a);
}

}  // namespace weir::config
