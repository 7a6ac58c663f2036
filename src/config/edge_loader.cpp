// The edge keys (edge.md): `compression` of listeners and routes, `static` routes.
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "config/loader_parts.hpp"
#include "config/tls_loader.hpp"

namespace weir::config {

namespace {

// "type/subtype", "type/*" or "*/*", both parts tokens.
bool is_media_range(std::string_view t) {
  size_t slash = t.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view type = t.substr(0, slash), sub = t.substr(slash + 1);
  if (type == "*") return sub == "*";
  return is_token(type) && (sub == "*" || is_token(sub));
}

void load_algorithms(LoadState& s, const Field& f, Compression& c) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  if (items.empty()) {
    s.diag.error(f.mark, "\"algorithms\" needs at least one of zstd, br, gzip");
    return;
  }
  c.algorithms.clear();
  for (const Field& item : items) {
    std::string name;
    if (!read_string(s.diag, item, name)) continue;
    name = lower(name);
    if (name != "zstd" && name != "br" && name != "gzip") {
      s.diag.error(item.mark,
                   "unknown compression algorithm " + quote(name) + " (known: zstd, br, gzip)");
      continue;
    }
    if (std::find(c.algorithms.begin(), c.algorithms.end(), name) != c.algorithms.end()) {
      s.diag.error(item.mark, "compression algorithm " + quote(name) + " listed twice");
      continue;
    }
    c.algorithms.push_back(std::move(name));
  }
}

void load_types(LoadState& s, const Field& f, Compression& c) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  c.types.clear();
  for (const Field& item : items) {
    std::string type;
    if (!read_string(s.diag, item, type)) continue;
    type = lower(type);
    if (!is_media_range(type)) {
      s.diag.error(item.mark,
                   "\"types\" entries are media types such as text/html or text/*, "
                   "without parameters, got " +
                       quote(type));
      continue;
    }
    c.types.push_back(std::move(type));
  }
}

void load_levels(LoadState& s, const Field& f, Compression& c) {
  MapReader m(s.diag, f, "compression levels", {"gzip", "br", "zstd"});
  if (!m.ok()) return;
  uint32_t v = 0;
  if (m.get_uint32("gzip", 1, 9, v)) c.gzip_level = static_cast<int>(v);
  if (const Field* br = m.find("br"); br && read_uint32(s.diag, *br, 0, 11, v)) {
    if (v > 6) {
      s.diag.error(br->mark,
                   "br level " + std::to_string(v) +
                       " takes 9 to 33 MiB of memory per response being compressed (level 4 "
                       "takes 1.3 MiB): use 0 to 6");
    } else {
      c.br_level = static_cast<int>(v);
    }
  }
  if (m.get_uint32("zstd", 1, 19, v)) c.zstd_level = static_cast<int>(v);
}

}  // namespace

void load_compression(LoadState& s, const Field& f, bool on_route,
                      std::optional<Compression>& out) {
  Compression c;
  c.pos = s.diag.pos(f.key_mark);
  if (f.value.IsScalar()) {
    bool on = false;
    if (!read_bool(s.diag, f, on)) return;
    if (!on && !on_route) return;  // a listener without compression: nothing to keep
    c.enabled = on;
    out = std::move(c);
    return;
  }
  MapReader m(s.diag, f, "compression", {"algorithms", "min_size", "types", "levels"});
  if (!m.ok()) return;
  if (const Field* a = m.find("algorithms")) load_algorithms(s, *a, c);
  m.get_size("min_size", 0, uint64_t{1} << 40, c.min_size);
  if (const Field* t = m.find("types")) load_types(s, *t, c);
  if (const Field* l = m.find("levels")) load_levels(s, *l, c);
  out = std::move(c);
}

void load_route_static(LoadState& s, const Field& f, Route& route) {
  MapReader m(s.diag, f, "static", {"root", "strip_prefix", "index", "precompressed"});
  if (!m.ok()) return;
  RouteStatic st;
  st.pos = s.diag.pos(f.key_mark);
  if (const Field* root = m.require("root"); root && read_string(s.diag, *root, st.root)) {
    st.root = resolve_path(s, st.root);
    struct stat sb {};
    if (::stat(st.root.c_str(), &sb) != 0) {
      s.diag.error(root->mark, "\"root\" " + quote(st.root) + ": " + std::strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
      s.diag.error(root->mark, "\"root\" " + quote(st.root) + " is not a directory");
    }
  }
  if (const Field* sp = m.find("strip_prefix")) {
    read_route_path(s.diag, *sp, "strip_prefix", st.strip_prefix);
    if (st.strip_prefix == "/") st.strip_prefix.clear();
    while (st.strip_prefix.size() > 1 && st.strip_prefix.back() == '/')
      st.strip_prefix.pop_back();
  }
  if (const Field* index = m.find("index"); index && read_string(s.diag, *index, st.index)) {
    if (st.index.find('/') != std::string::npos || st.index.starts_with('.') ||
        st.index.find('\0') != std::string::npos) {
      s.diag.error(index->mark,
                   "\"index\" is a file name such as index.html (no \"/\", not "
                   "hidden), got " +
                       quote(st.index));
    }
  }
  if (const Field* p = m.find("precompressed")) read_bool(s.diag, *p, st.precompressed);
  route.static_files = std::move(st);
}

void load_caches(LoadState& s, const Field& f) {
  std::vector<Field> items;
  if (!read_list(s.diag, f, items)) return;
  for (const Field& item : items) {
    MapReader m(s.diag, item, "cache", {"name", "memory", "max_object"});
    if (!m.ok()) continue;
    Cache c;
    c.pos = s.diag.pos(item.mark);
    if (const Field* name = m.require("name"); name && read_name(s.diag, *name, c.name)) {
      for (const Cache& other : s.config.caches) {
        if (other.name == c.name) {
          s.diag.error(name->mark, "duplicate cache name " + quote(c.name) + " (first at line " +
                                       std::to_string(other.pos.line) + ")");
        }
      }
    }
    m.get_size("memory", 64 * 1024, uint64_t{1} << 40, c.memory);
    const Field* max_object = m.find("max_object");
    m.get_size("max_object", 1, uint64_t{1} << 32, c.max_object);
    if (max_object && c.max_object > c.memory) {
      s.diag.error(max_object->mark, "\"max_object\" is larger than the cache's \"memory\"");
    }
    s.config.caches.push_back(std::move(c));
  }
}

void load_route_cache(LoadState& s, const Field& f, Route& route) {
  std::string name;
  if (!read_string(s.diag, f, name)) return;
  for (size_t i = 0; i < s.config.caches.size(); ++i) {
    if (s.config.caches[i].name == name) {
      route.cache = name;
      route.cache_index = i;
      return;
    }
  }
  std::vector<std::string_view> names;
  for (const Cache& c : s.config.caches)
    names.push_back(c.name);
  std::string hint = closest(name, names);
  s.diag.error(f.mark, "unknown cache " + quote(name) +
                           (hint.empty() ? " (define it under \"caches\")"
                                         : "; did you mean " + quote(hint) + "?"));
}

}  // namespace weir::config
