#include "config/loader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include "config/address.hpp"
#include "config/loader_parts.hpp"
#include "config/tls_loader.hpp"

namespace weir::config {
namespace {

constexpr uint32_t kMaxWorkers = 256;
constexpr uint64_t kKiB = 1024;
constexpr uint64_t kGiB = 1024ULL * 1024 * 1024;
constexpr uint64_t kMaxH2Window = 2147483647;  // 2^31 - 1, the largest window HTTP/2 allows
constexpr Duration kMinTicketRotation{1000};

void load_workers(LoadState& s, const Field& f) {
  if (f.value.IsScalar() && f.value.Scalar() == "auto") {
    s.config.workers = 0;
    return;
  }
  if (f.value.IsScalar() && f.value.Tag() == "?") {
    const std::string& v = f.value.Scalar();
    if (!v.empty() && v.size() <= 3 &&
        std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      uint32_t n = static_cast<uint32_t>(std::stoul(v));
      if (n >= 1 && n <= kMaxWorkers) {
        s.config.workers = n;
        return;
      }
    }
  }
  s.diag.error(f.mark, "\"workers\" must be auto or an integer from 1 to " +
                           std::to_string(kMaxWorkers) + ", got " + describe(f.value));
}

}  // namespace

// Secrets (sticky keys, the admin token) are read at load time, so that a snapshot carries
// everything it needs and `weir check` catches a missing or weak file.
bool read_secret_file(LoadState& s, const Field& f, std::string_view key, const std::string& path,
                      std::string& out) {
  constexpr size_t kMinSecretBytes = 16;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    s.diag.error(f.mark, "cannot open " + std::string(key) + " " + quote(path) + ": " +
                             std::strerror(errno));
    return false;
  }
  std::string data;
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) data.append(buf, static_cast<size_t>(n));
    if (data.size() > 1024 * 1024) break;
  }
  int err = errno;
  ::close(fd);
  if (n < 0) {
    s.diag.error(f.mark,
                 "cannot read " + std::string(key) + " " + quote(path) + ": " + std::strerror(err));
    return false;
  }
  while (!data.empty() && std::isspace(static_cast<unsigned char>(data.back())))
    data.pop_back();
  if (data.size() < kMinSecretBytes) {
    s.diag.error(f.mark, std::string(key) + " " + quote(path) + " must hold at least " +
                             std::to_string(kMinSecretBytes) + " bytes");
    return false;
  }
  out = std::move(data);
  return true;
}

namespace {

void load_admin(LoadState& s, const Field& f) {
  MapReader m(s.diag, f, "admin",
              {"listen", "token_file", "header_timeout", "idle_timeout", "max_connections"});
  if (!m.ok()) return;
  Admin& a = s.config.admin;
  if (const Field* listen = m.require("listen")) {
    read_listen_address(s, *listen, "admin", a.listen);
  }
  if (const Field* file = m.find("token_file")) {
    std::string path;
    if (read_string(s.diag, *file, path)) {
      if (path.empty()) {
        s.diag.error(file->mark, "\"token_file\" must not be empty");
      } else {
        a.token_file = resolve_path(s, path);
        read_secret_file(s, *file, "token_file", a.token_file, a.token);
      }
    }
  }
  m.get_duration("header_timeout", false, a.header_timeout);
  m.get_duration("idle_timeout", false, a.idle_timeout);
  m.get_uint32("max_connections", 1, 100000, a.max_connections);
}

// HTTP/2 flow-control windows: a stream's window cannot be larger than its connection's.
void load_h2_windows(LoadState& s, MapReader& m, GlobalLimits& l) {
  bool stream_ok = m.get_size("h2_stream_window", 16 * kKiB, kGiB, l.h2_stream_window);
  bool conn_ok =
      m.get_size("h2_connection_window", 16 * kKiB, kMaxH2Window, l.h2_connection_window);
  const Field* stream = m.find("h2_stream_window");
  const Field* conn = m.find("h2_connection_window");
  if ((stream != nullptr && !stream_ok) || (conn != nullptr && !conn_ok)) return;
  if (l.h2_connection_window >= l.h2_stream_window) return;
  if (conn != nullptr) {
    s.diag.error(conn->mark, "\"h2_connection_window\" must be at least \"h2_stream_window\" (" +
                                 std::to_string(l.h2_stream_window) + " bytes)");
  } else {
    s.diag.error(stream->mark, "\"h2_stream_window\" must be at most \"h2_connection_window\" (" +
                                   std::to_string(l.h2_connection_window) + " bytes)");
  }
}

void load_limits(LoadState& s, const Field& f) {
  MapReader m(s.diag, f, "limits",
              {"buffer_size", "max_request_line", "max_header_bytes", "max_headers",
               "max_idle_upstream_per_server", "upstream_idle_timeout", "drain_timeout",
               "h2_max_concurrent_streams", "h2_stream_window", "h2_connection_window",
               "tls_ticket_rotation", "tunnel_drain_timeout", "drain_grace",
               "h3_max_concurrent_streams", "h3_stream_window", "h3_connection_window",
               "quic_idle_timeout", "quic_retry_threshold"});
  if (!m.ok()) return;
  GlobalLimits& l = s.config.limits;
  m.get_size("buffer_size", 1024, kGiB, l.buffer_size);
  m.get_size("max_request_line", 64, kGiB, l.max_request_line);
  m.get_size("max_header_bytes", 64, kGiB, l.max_header_bytes);
  m.get_uint32("max_headers", 1, 10000, l.max_headers);
  m.get_uint32("max_idle_upstream_per_server", 0, 100000, l.max_idle_upstream_per_server);
  m.get_duration("upstream_idle_timeout", false, l.upstream_idle_timeout);
  m.get_duration("drain_timeout", true, l.drain_timeout);
  m.get_duration("tunnel_drain_timeout", true, l.tunnel_drain_timeout);
  m.get_duration("drain_grace", true, l.drain_grace);
  m.get_uint32("h2_max_concurrent_streams", 1, 10000, l.h2_max_concurrent_streams);
  load_h2_windows(s, m, l);
  m.get_uint32("h3_max_concurrent_streams", 1, 10000, l.h3_max_concurrent_streams);
  m.get_size("h3_stream_window", 16 * kKiB, kGiB, l.h3_stream_window);
  m.get_size("h3_connection_window", 16 * kKiB, 4 * kGiB, l.h3_connection_window);
  if (l.h3_connection_window < l.h3_stream_window) {
    const Field* f = m.find("h3_connection_window");
    if (f == nullptr) f = m.find("h3_stream_window");
    s.diag.error(f->mark, "\"h3_connection_window\" must be at least \"h3_stream_window\" (" +
                              std::to_string(l.h3_stream_window) + " bytes)");
  }
  m.get_duration("quic_idle_timeout", false, l.quic_idle_timeout);
  m.get_uint32("quic_retry_threshold", 0, 1000000, l.quic_retry_threshold);
  Duration rotation{0};
  if (m.get_duration("tls_ticket_rotation", false, rotation)) {
    if (rotation < kMinTicketRotation) {
      s.diag.error(m.find("tls_ticket_rotation")->mark,
                   "\"tls_ticket_rotation\" must be at least 1s");
    } else {
      l.tls_ticket_rotation = rotation;
    }
  }
}

// `resolvers: [IP:PORT, ...]`: IP addresses (a resolver cannot be looked up by name); the port
// defaults to 53. Kept as "IP:PORT" / "[V6]:PORT", the form c-ares takes.
void load_resolvers(LoadState& s, const Field& f) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  if (items.empty()) s.diag.error(f.mark, "\"resolvers\" needs at least one address");
  for (const Field& item : items) {
    std::string text;
    if (!read_string(s.diag, item, text)) continue;
    if (is_ipv4(text)) {
      s.config.resolvers.push_back(text + ":53");
      continue;
    }
    if (is_ipv6(text)) {
      s.config.resolvers.push_back("[" + text + "]:53");
      continue;
    }
    HostPort hp;
    if (std::string why = parse_host_port(text, hp); !why.empty()) {
      s.diag.error(item.mark, "resolver: " + why);
    } else if (!is_ipv4(hp.host) && !is_ipv6(hp.host)) {
      s.diag.error(item.mark,
                   "a resolver must be an IP address (with an optional port), got " + quote(text));
    } else {
      s.config.resolvers.push_back(text);
    }
  }
  bool used = std::any_of(s.config.backends.begin(), s.config.backends.end(), [](const Backend& b) {
    return b.discovery || std::any_of(b.servers.begin(), b.servers.end(),
                                      [](const Server& sv) { return sv.resolve.has_value(); });
  });
  if (!used) {
    s.diag.warning(f.key_mark,
                   "\"resolvers\" has no effect: no server has \"resolve\" and no backend has "
                   "\"discovery\"");
  }
}

// Every route names an existing backend; a backend no route uses is only a warning.
void resolve_backends(LoadState& s) {
  std::vector<bool> used(s.config.backends.size(), false);
  for (const BackendRef& ref : s.backend_refs) {
    Route& route = s.config.listeners[ref.listener].routes[ref.route];
    auto it = std::find_if(s.config.backends.begin(), s.config.backends.end(),
                           [&](const Backend& b) { return b.name == route.backend; });
    if (it == s.config.backends.end()) {
      s.diag.error(ref.mark, "unknown backend " + quote(route.backend));
      continue;
    }
    route.backend_index = static_cast<size_t>(it - s.config.backends.begin());
    used[route.backend_index] = true;
  }
  for (size_t i = 0; i < used.size(); ++i) {
    if (!used[i] && !s.config.backends[i].name.empty()) {
      s.diag.warning(s.backend_marks[i], "backend " + quote(s.config.backends[i].name) +
                                             " is not used by any listener");
    }
  }
}

void load_root(LoadState& s, const YAML::Node& root) {
  Field top{"configuration", root, root.Mark(), root.Mark()};
  if (!root.IsMap()) {
    s.diag.error(root.Mark(),
                 "the configuration must be a map with \"listeners\" and "
                 "\"backends\", got " +
                     describe(root));
    return;
  }
  MapReader m(s.diag, top, "the configuration",
              {"workers", "admin", "listeners", "backends", "limits", "access_log", "caches",
               "resolvers", "cluster", "announce"});
  if (const Field* f = m.find("workers")) load_workers(s, *f);
  // Before the listeners: `client_limits.shared` needs it.
  if (const Field* f = m.find("cluster")) load_cluster(s, *f);
  if (const Field* f = m.find("limits")) load_limits(s, *f);
  if (const Field* f = m.find("access_log")) load_access_log(s, *f, s.config.access_log);
  // Before the listeners: routes name them.
  if (const Field* f = m.find("caches")) load_caches(s, *f);
  if (const Field* f = m.require("listeners")) load_listeners(s, *f);
  // After the listeners, so that an address both use is reported at the admin's.
  if (const Field* f = m.find("admin")) load_admin(s, *f);
  if (const Field* f = m.find("backends")) load_backends(s, *f);
  if (const Field* f = m.find("resolvers")) load_resolvers(s, *f);  // after: who uses them
  if (const Field* f = m.find("announce")) load_announce(s, *f);    // after: `when` names backends
  resolve_backends(s);
}

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// `listen: [::1]:8080` is a YAML flow list followed by garbage: say what to write instead.
std::string ipv6_hint(std::string_view yaml, const YAML::Mark& mark) {
  if (mark.is_null()) return "";
  size_t start = 0;
  for (int line = 0; line < mark.line && start != std::string_view::npos; ++line) {
    start = yaml.find('\n', start);
    if (start != std::string_view::npos) ++start;
  }
  if (start == std::string_view::npos) return "";
  std::string_view text = yaml.substr(start, yaml.find('\n', start) - start);
  size_t open = text.find('[');
  if (open == std::string_view::npos || text.find("]:", open) == std::string_view::npos) return "";
  return " (quote bracketed IPv6 addresses: \"[::1]:8080\")";
}

// A first pass over the YAML events, before any node graph is built: anchors and aliases are
// refused, because an alias can make the graph cyclic (yaml-cpp then leaks it) or exponential
// ("billion laughs"), and weir's config never needs them. It also notes where documents start.
class AliasFinder final : public YAML::EventHandler {
 public:
  struct Found {
    YAML::Mark mark;
  };
  void OnDocumentStart(const YAML::Mark& m) override { starts.push_back(m); }
  std::vector<YAML::Mark> starts;
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t a) override { check(m, a); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { throw Found{m}; }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                const std::string&) override {
    check(m, a);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                       YAML::EmitterStyle::value) override {
    check(m, a);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                  YAML::EmitterStyle::value) override {
    check(m, a);
  }
  void OnMapEnd() override {}

 private:
  static void check(const YAML::Mark& m, YAML::anchor_t a) {
    if (a != YAML::NullAnchor) throw Found{m};
  }
};

// The first pass: false (with a diagnostic) if the text uses anchors or aliases, holds more
// than one document, or trips yaml-cpp 0.7's endless loop: a stray "," where a document's node
// should start is never consumed, and every further call "finds" another empty document at the
// same place (yaml-cpp issue 1040, fixed upstream after the version Debian 12 ships). Two
// documents are enough to tell either way, so the loop is bounded.
bool first_pass(const std::string& text, Diagnostics& diag) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  AliasFinder finder;
  try {
    for (int docs = 0; docs < 2 && parser.HandleNextDocument(finder); ++docs) {
    }
  } catch (const AliasFinder::Found& f) {
    diag.error(f.mark, "YAML anchors and aliases (&name, *name) are not supported");
    return false;
  }
  if (finder.starts.size() > 1) {
    const YAML::Mark& a = finder.starts[0];
    const YAML::Mark& b = finder.starts[1];
    bool stray = a.pos == b.pos || (b.pos >= 0 && static_cast<size_t>(b.pos) < text.size() &&
                                    text[static_cast<size_t>(b.pos)] == ',');
    if (stray) {
      diag.error(b, "YAML syntax error: unexpected \",\" (quote a value that starts with it)");
    } else {
      diag.error(b, "only one YAML document is allowed in a configuration file");
    }
    return false;
  }
  return true;
}

LoadResult load(std::string_view yaml, const std::string& name) {
  Diagnostics diag(name);
  auto config = std::make_shared<Config>();
  config->source_file = name;
  try {
    std::string text(yaml);
    YAML::Node doc;
    if (first_pass(text, diag)) doc = YAML::Load(text);  // one document: no loop inside
    if (diag.has_errors()) {
      // reported by first_pass
    } else if (!doc || doc.IsNull()) {
      diag.error_file("the configuration is empty");
    } else {
      LoadState state{diag, *config, dir_of(name), {}, {}, {}};
      load_root(state, doc);
    }
  } catch (const YAML::Exception& e) {
    diag.error(e.mark, "YAML syntax error: " + e.msg + ipv6_hint(yaml, e.mark));
  } catch (const std::exception& e) {
    diag.error_file(std::string("cannot load: ") + e.what());
  }
  LoadResult result;
  if (!diag.has_errors()) result.config = std::move(config);
  result.diagnostics = diag.take_sorted();
  return result;
}

}  // namespace

std::string Diagnostic::format() const {
  std::string out = pos.file;
  if (pos.line > 0) out += ":" + std::to_string(pos.line) + ":" + std::to_string(pos.col);
  out += ": ";
  if (warning) out += "warning: ";
  return out + message;
}

bool read_name(Diagnostics& d, const Field& f, std::string& out) {
  std::string name;
  if (!read_string(d, f, name)) return false;
  bool valid = !name.empty() && name.size() <= 100 &&
               std::all_of(name.begin(), name.end(), [](unsigned char c) {
                 return std::isalnum(c) || c == '.' || c == '_' || c == '-';
               });
  if (!valid) {
    d.error(f.mark,
            "invalid name " + quote(name) + " (use 1-100 letters, digits, \".\", \"_\" or \"-\")");
    return false;
  }
  out = std::move(name);
  return true;
}

bool read_listen_address(LoadState& s, const Field& f, const std::string& owner, std::string& out) {
  std::string text;
  if (!read_string(s.diag, f, text)) return false;
  HostPort hp;
  if (std::string why = parse_host_port(text, hp); !why.empty()) {
    s.diag.error(f.mark, why);
    return false;
  }
  // Two sockets on one address would both bind (SO_REUSEPORT) and split the traffic silently.
  std::string key = lower(hp.host) + " " + std::to_string(hp.port);
  std::string where = owner + " (line " + std::to_string(s.diag.pos(f.mark).line) + ")";
  auto [it, inserted] = s.addresses.emplace(key, where);
  if (!inserted) {
    s.diag.error(f.mark, "address " + quote(text) + " is already used by " + it->second);
    return false;
  }
  out = std::move(text);
  return true;
}

namespace {

LoadResult load_file(const std::string& path) {
  auto fail = [&](const char* what, int err) {
    LoadResult result;
    result.diagnostics.push_back(
        Diagnostic{SourcePos{path, 0, 0}, std::string(what) + ": " + std::strerror(err)});
    return result;
  };
  struct Fd {
    int fd;
    ~Fd() {
      if (fd >= 0) ::close(fd);
    }
  } file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) return fail("cannot open", errno);
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(file.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot read", errno);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return load_config_string(text, path);
}

}  // namespace

LoadResult load_config_string(std::string_view yaml, const std::string& name) {
  try {
    return load(yaml, name);
  } catch (...) {
    // Only allocation failures can get here.
    LoadResult result;
    result.diagnostics.push_back(Diagnostic{SourcePos{name, 0, 0}, "cannot load: out of memory"});
    return result;
  }
}

LoadResult load_config_file(const std::string& path) {
  try {
    return load_file(path);
  } catch (...) {
    LoadResult result;
    result.diagnostics.push_back(Diagnostic{SourcePos{path, 0, 0}, "cannot load: out of memory"});
    return result;
  }
}

}  // namespace weir::config
