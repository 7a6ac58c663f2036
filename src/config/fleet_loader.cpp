// `announce:` (fleet.md): route announcement through a local BIRD. Only read and checked here;
// `weir check` never connects to BIRD (src/fleet/announce.cpp does, at run time).
#include <sys/un.h>

#include <algorithm>
#include <cctype>

#include "config/loader_parts.hpp"
#include "config/tls_loader.hpp"

namespace weir::config {
namespace {

constexpr size_t kMaxProtocolName = 64;

// A BIRD symbol as the CLI takes it unquoted: a letter or "_", then letters, digits or "_" (a
// quoted name would be a pattern, and anything else could smuggle a second command).
bool is_bird_symbol(std::string_view name) {
  if (name.empty() || name.size() > kMaxProtocolName) return false;
  if (std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(),
                     [](unsigned char c) { return (c < 0x80 && std::isalnum(c)) || c == '_'; });
}

void load_protocols(LoadState& s, const Field& f, Announce& a) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  if (items.empty()) s.diag.error(f.mark, "\"protocols\" needs at least one BIRD protocol name");
  for (const Field& item : items) {
    std::string name;
    if (!read_string(s.diag, item, name)) continue;
    if (!is_bird_symbol(name)) {
      s.diag.error(item.mark, "invalid BIRD protocol name " + quote(name) +
                                  " (a letter or \"_\", then letters, digits or \"_\"; at most " +
                                  std::to_string(kMaxProtocolName) + ")");
    } else if (std::find(a.protocols.begin(), a.protocols.end(), name) != a.protocols.end()) {
      s.diag.error(item.mark, "protocol " + quote(name) + " is listed twice");
    } else {
      a.protocols.push_back(std::move(name));
    }
  }
}

// `when: { backends: [NAME, ...], min_healthy: N }`; the backends are loaded before.
void load_when(LoadState& s, const Field& f, Announce& a) {
  MapReader m(s.diag, f, "announce when", {"backends", "min_healthy"});
  if (!m.ok()) return;
  m.get_uint32("min_healthy", 1, 100000, a.min_healthy);
  const Field* list = m.require("backends");
  if (list == nullptr) return;
  std::vector<Field> items;
  if (!read_list(s.diag, *list, items)) return;
  if (items.empty()) s.diag.error(list->mark, "\"backends\" needs at least one backend name");
  for (const Field& item : items) {
    std::string name;
    if (!read_string(s.diag, item, name)) continue;
    bool known = std::any_of(s.config.backends.begin(), s.config.backends.end(),
                             [&](const Backend& b) { return b.name == name; });
    if (!known) {
      s.diag.error(item.mark, "unknown backend " + quote(name));
    } else if (std::find(a.backends.begin(), a.backends.end(), name) != a.backends.end()) {
      s.diag.error(item.mark, "backend " + quote(name) + " is listed twice");
    } else {
      a.backends.push_back(std::move(name));
    }
  }
}

}  // namespace

void load_announce(LoadState& s, const Field& f) {
  MapReader m(s.diag, f, "announce", {"bird_socket", "protocols", "when", "withdraw_on_drain"});
  if (!m.ok()) return;
  Announce a;
  a.pos = s.diag.pos(f.key_mark);
  if (const Field* sock = m.find("bird_socket")) {
    std::string path;
    if (read_string(s.diag, *sock, path)) {
      if (path.empty()) {
        s.diag.error(sock->mark, "\"bird_socket\" must not be empty");
      } else {
        path = resolve_path(s, path);
        if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
          s.diag.error(sock->mark, "\"bird_socket\" " + quote(path) +
                                       " is too long for a Unix socket (at most " +
                                       std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                                       " bytes)");
        } else {
          a.bird_socket = std::move(path);
        }
      }
    }
  }
  if (const Field* p = m.require("protocols")) load_protocols(s, *p, a);
  if (const Field* w = m.require("when")) load_when(s, *w, a);
  if (const Field* w = m.find("withdraw_on_drain")) read_bool(s.diag, *w, a.withdraw_on_drain);
  s.config.announce = std::move(a);
}

}  // namespace weir::config
