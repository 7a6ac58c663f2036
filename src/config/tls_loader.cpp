// `tls:` of listeners and servers.
#include "config/tls_loader.hpp"

#include <algorithm>
#include <cctype>
#include <string_view>

#include "config/address.hpp"

namespace weir::config {
namespace {

constexpr Duration kMinHsts{1000};  // max-age is in whole seconds

bool is_plain(const YAML::Node& node) {
  return node.Tag() == "?";
}

std::optional<bool> parse_bool(const YAML::Node& node) {
  if (!node.IsScalar() || !is_plain(node)) return std::nullopt;
  const std::string& s = node.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

// What a wrong scalar is, for messages: "yes", or the string "true" when it was quoted.
std::string describe_value(const YAML::Node& node) {
  if (node.IsScalar() && !is_plain(node)) return "the string " + quote(node.Scalar());
  return describe(node);
}

// A file name that must not be empty, resolved against the config file's folder.
bool read_path(LoadState& s, const Field& f, std::string& out) {
  std::string path;
  if (!read_string(s.diag, f, path)) return false;
  if (path.empty()) {
    s.diag.error(f.mark, quote(f.label) + " must not be empty");
    return false;
  }
  out = resolve_path(s, path);
  return true;
}

// `ocsp:` of a certificate (`file` or `fetch`), or of the listener (`fetch` only: a response
// file is for one certificate). Sets `out` unless the value is not a map at all.
void load_ocsp(LoadState& s, const Field& f, bool listener, std::optional<TlsOcsp>& out) {
  MapReader m(s.diag, f, listener ? "listener ocsp" : "certificate ocsp", {"file", "fetch"});
  if (!m.ok()) return;
  TlsOcsp ocsp;
  ocsp.pos = s.diag.pos(f.key_mark);
  const Field* file = m.find("file");
  const Field* fetch = m.find("fetch");
  if (!file && !fetch) {
    s.diag.error(f.mark, "\"ocsp\" needs \"file\" (a DER OCSP response) or \"fetch: true\"");
  }
  if (file) {
    if (listener) {
      s.diag.error(file->key_mark,
                   "an OCSP response file is for one certificate: set \"ocsp: { file: ... }\" "
                   "on that certificate (the listener's \"ocsp\" takes only \"fetch\")");
    } else {
      read_path(s, *file, ocsp.file);
    }
  }
  if (fetch) read_bool(s.diag, *fetch, ocsp.fetch);
  if (!ocsp.file.empty() && ocsp.fetch) {
    s.diag.error(f.mark, "\"ocsp\" takes either \"file\" or \"fetch: true\", not both");
  }
  out = std::move(ocsp);
}

void load_certificates(LoadState& s, const Field& f, ListenerTls& tls) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  if (items.empty()) s.diag.error(f.mark, "\"certificates\" needs at least one certificate");
  for (const Field& item : items) {
    MapReader m(s.diag, item, "certificate", {"cert", "key", "ocsp"});
    if (!m.ok()) continue;
    TlsCertificate c;
    c.pos = s.diag.pos(m.mark());
    if (const Field* cert = m.require("cert")) {
      c.pos = s.diag.pos(cert->key_mark);
      read_path(s, *cert, c.cert);
    }
    if (const Field* key = m.require("key")) read_path(s, *key, c.key);
    if (const Field* ocsp = m.find("ocsp")) load_ocsp(s, *ocsp, false, c.ocsp);
    tls.certificates.push_back(std::move(c));
  }
}

// YAML reads an unquoted 1.2 as a number, so the scalar's text is what counts.
void load_min_version(LoadState& s, const Field& f, ListenerTls& tls) {
  if (f.value.IsScalar() && f.value.Scalar() == "1.2") {
    tls.min_version = 12;
  } else if (f.value.IsScalar() && f.value.Scalar() == "1.3") {
    tls.min_version = 13;
  } else {
    s.diag.error(f.mark, "\"min_version\" must be \"1.2\" or \"1.3\", got " + describe(f.value));
  }
}

void load_alpn(LoadState& s, const Field& f, ListenerTls& tls) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  if (items.empty()) s.diag.error(f.mark, "\"alpn\" needs at least one protocol");
  std::vector<std::string> protocols;
  for (const Field& item : items) {
    std::string name;
    if (!read_string(s.diag, item, name)) continue;
    if (name != "h2" && name != "http/1.1") {
      s.diag.error(item.mark,
                   "unknown ALPN protocol " + quote(name) + " (expected h2 or http/1.1)");
    } else if (std::find(protocols.begin(), protocols.end(), name) != protocols.end()) {
      s.diag.error(item.mark, quote(name) + " is listed twice in \"alpn\"");
    } else {
      protocols.push_back(std::move(name));
    }
  }
  if (!protocols.empty()) tls.alpn = std::move(protocols);
}

void load_sni(LoadState& s, const Field& f, ServerTls& tls) {
  std::string sni;
  if (!read_string(s.diag, f, sni)) return;
  std::transform(sni.begin(), sni.end(), sni.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (is_ipv4(sni) || is_ipv6(sni)) {
    s.diag.error(f.mark, "\"sni\" must be a host name, not an IP address, got " + quote(sni));
  } else if (!is_hostname(sni)) {
    s.diag.error(f.mark,
                 "invalid sni " + quote(sni) + ": expected a host name such as app.internal");
  } else {
    tls.sni = std::move(sni);
  }
}

}  // namespace

std::string resolve_path(const LoadState& s, const std::string& path) {
  if (path.starts_with("/") || s.base_dir.empty()) return path;
  return s.base_dir.ends_with('/') ? s.base_dir + path : s.base_dir + "/" + path;
}

bool read_bool(Diagnostics& d, const Field& f, bool& out) {
  std::optional<bool> value = parse_bool(f.value);
  if (!value) {
    d.error(f.mark, quote(f.label) + " must be true or false, got " + describe_value(f.value));
    return false;
  }
  out = *value;
  return true;
}

void load_listener_tls(LoadState& s, const Field& f, std::optional<ListenerTls>& out) {
  MapReader m(s.diag, f, "listener tls", {"certificates", "min_version", "alpn", "hsts", "ocsp"});
  if (!m.ok()) return;
  ListenerTls tls;
  tls.pos = s.diag.pos(f.key_mark);
  if (const Field* certs = m.require("certificates")) load_certificates(s, *certs, tls);
  if (const Field* ocsp = m.find("ocsp")) {
    load_ocsp(s, *ocsp, true, tls.ocsp);
    // The listener's is the default of every certificate without an `ocsp:` of its own.
    if (tls.ocsp) {
      for (TlsCertificate& c : tls.certificates)
        if (!c.ocsp) c.ocsp = tls.ocsp;
    }
  }
  if (const Field* version = m.find("min_version")) load_min_version(s, *version, tls);
  if (const Field* alpn = m.find("alpn")) load_alpn(s, *alpn, tls);
  Duration hsts{0};
  if (m.get_duration("hsts", false, hsts)) {
    if (hsts < kMinHsts) {
      s.diag.error(m.find("hsts")->mark, "\"hsts\" must be at least 1s (max-age is in seconds)");
    } else {
      tls.hsts = hsts;
    }
  }
  out = std::move(tls);
}

void load_server_tls(LoadState& s, const Field& f, std::optional<ServerTls>& out) {
  ServerTls tls;
  tls.pos = s.diag.pos(f.key_mark);
  if (!f.value.IsNull() && !f.value.IsMap()) {
    if (std::optional<bool> on = parse_bool(f.value)) {
      if (*on) {
        out = std::move(tls);
      } else {
        out.reset();
      }
      return;
    }
    s.diag.error(f.mark, "\"tls\" must be true, false or a map of ca, sni and verify, got " +
                             describe_value(f.value));
    return;
  }
  MapReader m(s.diag, f, "server tls", {"ca", "sni", "verify"});
  if (!m.ok()) return;
  if (const Field* ca = m.find("ca")) read_path(s, *ca, tls.ca);
  if (const Field* sni = m.find("sni")) load_sni(s, *sni, tls);
  if (const Field* verify = m.find("verify")) read_bool(s.diag, *verify, tls.verify);
  out = std::move(tls);
}

}  // namespace weir::config
