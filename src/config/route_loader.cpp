// What a route matches beyond host and path prefix (path, path_regex, methods, headers, cookies,
// query) and what it does instead of forwarding (redirect, respond) or to the forwarded path
// (rewrite). Everything a client could not have sent itself is refused here, at FILE:LINE:COL.
#include <re2/re2.h>

#include <algorithm>
#include <map>

#include "config/loader_parts.hpp"
#include "config/tls_loader.hpp"

namespace weir::config {
namespace {

constexpr std::string_view kTokenPunctuation = "!#$%&'*+-.^_`|~";

bool is_tchar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         kTokenPunctuation.find(c) != std::string_view::npos;
}

// No control characters (HTAB aside) and no DEL: nothing that could split or end a field.
bool clean_text(std::string_view s) {
  return std::none_of(s.begin(), s.end(),
                      [](unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; });
}

// `headers:`, `cookies:`, `query:` — a map of names to exact values, "*" = present.
void read_field_matches(Diagnostics& d, const Field& f, bool header_names,
                        std::vector<FieldMatch>& out) {
  if (f.value.IsNull()) return;
  if (!f.value.IsMap()) {
    d.error(f.mark, quote(f.label) + " must be a map of names to values (\"*\" = present), got " +
                        describe(f.value));
    return;
  }
  std::map<std::string, YAML::Mark, std::less<>> seen;
  for (auto it = f.value.begin(); it != f.value.end(); ++it) {
    YAML::Node key = it->first;
    YAML::Node value = it->second;
    if (!key.IsScalar() || key.Scalar().empty()) {
      d.error(key.Mark(), quote(f.label) + ": names must be non-empty strings");
      continue;
    }
    std::string name = key.Scalar();
    std::string folded = name;
    if (header_names) {
      if (!is_token(name)) {
        d.error(key.Mark(), quote(f.label) + ": invalid header name " + quote(name) +
                                ": only letters, digits and " + std::string(kTokenPunctuation) +
                                " are allowed");
        continue;
      }
      for (char& c : folded)
        c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    } else if (!clean_text(name) || name.find_first_of(" ;=") != std::string::npos) {
      d.error(key.Mark(), quote(f.label) + ": invalid name " + quote(name));
      continue;
    }
    if (auto [first, inserted] = seen.emplace(folded, key.Mark()); !inserted) {
      d.error(key.Mark(), quote(f.label) + ": duplicate name " + quote(name) + " (first at line " +
                              line_of(d, first->second) + ")");
      continue;
    }
    const YAML::Mark mark = value.IsNull() || value.Mark().is_null() ? key.Mark() : value.Mark();
    if (!value.IsScalar()) {
      d.error(mark, quote(f.label) + ": the value for " + quote(name) +
                        " must be a string (\"*\" = present), got " + describe(value));
      continue;
    }
    const std::string& v = value.Scalar();
    if (!clean_text(v) || v.find('\0') != std::string::npos) {
      d.error(mark, quote(f.label) + ": the value for " + quote(name) +
                        " must not contain control characters (CR, LF, NUL...)");
      continue;
    }
    FieldMatch m;
    m.name = std::move(name);
    m.any = v == "*";
    if (!m.any) m.value = v;
    out.push_back(std::move(m));
  }
}

void read_methods(Diagnostics& d, const Field& f, std::vector<std::string>& out) {
  std::vector<Field> items;
  if (!read_list(d, f, items)) return;
  if (items.empty()) d.error(f.mark, "\"methods\" needs at least one method");
  for (const Field& item : items) {
    std::string m;
    if (!read_string(d, item, m)) continue;
    if (!is_token(m)) {
      d.error(item.mark, "invalid method " + quote(m) + " (a token such as GET or POST)");
      continue;
    }
    if (std::find(out.begin(), out.end(), m) != out.end()) {
      d.error(item.mark, "method " + quote(m) + " is listed twice");
      continue;
    }
    out.push_back(std::move(m));
  }
}

}  // namespace

bool read_route_path(Diagnostics& d, const Field& f, std::string_view key, std::string& out) {
  std::string path;
  if (!read_string(d, f, path)) return false;
  if (path.empty() || path.front() != '/') {
    d.error(f.mark, quote(key) + " must start with \"/\", got " + quote(path));
    return false;
  }
  bool bad = std::any_of(path.begin(), path.end(), [](unsigned char c) {
    return c <= 0x20 || c == 0x7f || c == '?' || c == '#';
  });
  if (bad) {
    d.error(f.mark, quote(key) + " " + quote(path) +
                        " must not contain spaces, control characters, \"?\" or \"#\"");
    return false;
  }
  out = std::move(path);
  return true;
}

bool load_route_match_extra(LoadState& s, const MapReader& m, RouteMatch& match) {
  bool ok = true;
  if (const Field* f = m.find("path")) ok &= read_route_path(s.diag, *f, "path", match.path);
  if (const Field* f = m.find("path_regex")) {
    std::string rx;
    if (!read_string(s.diag, *f, rx)) {
      ok = false;
    } else if (rx.empty()) {
      s.diag.error(f->mark, "\"path_regex\" must not be empty");
      ok = false;
    } else {
      RE2::Options opt;
      opt.set_log_errors(false);
      opt.set_max_mem(8 << 20);  // bounded: a pathological pattern fails to compile
      auto re = std::make_shared<const RE2>(rx, opt);
      if (!re->ok()) {
        s.diag.error(f->mark, "\"path_regex\" " + quote(rx) + " does not compile: " + re->error());
        ok = false;
      } else {
        match.path_regex = std::move(rx);
        match.regex = std::move(re);
      }
    }
  }
  if (const Field* f = m.find("methods")) read_methods(s.diag, *f, match.methods);
  if (const Field* f = m.find("headers")) read_field_matches(s.diag, *f, true, match.headers);
  if (const Field* f = m.find("cookies")) read_field_matches(s.diag, *f, false, match.cookies);
  if (const Field* f = m.find("query")) read_field_matches(s.diag, *f, false, match.query);
  return ok;
}

void load_route_redirect(LoadState& s, const Field& f, Route& route) {
  MapReader m(s.diag, f, "redirect", {"to", "status", "keep_path"});
  if (!m.ok()) return;
  RouteRedirect r;
  if (const Field* to = m.require("to"); to && read_string(s.diag, *to, r.to)) {
    bool bad = r.to.empty() || std::any_of(r.to.begin(), r.to.end(),
                                           [](unsigned char c) { return c <= 0x20 || c == 0x7f; });
    if (bad) {
      s.diag.error(to->mark,
                   "\"to\" must be a URL or path without spaces or control characters, "
                   "got " +
                       quote(r.to));
    }
  }
  if (const Field* st = m.find("status")) {
    uint32_t status = 0;
    if (read_uint32(s.diag, *st, 300, 399, status)) {
      if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308) {
        s.diag.error(st->mark, "redirect \"status\" must be 301, 302, 303, 307 or 308, got " +
                                   std::to_string(status));
      }
      r.status = static_cast<uint16_t>(status);
    }
  }
  if (const Field* kp = m.find("keep_path")) read_bool(s.diag, *kp, r.keep_path);
  route.redirect = std::move(r);
}

void load_route_respond(LoadState& s, const Field& f, Route& route) {
  MapReader m(s.diag, f, "respond", {"status", "body", "content_type"});
  if (!m.ok()) return;
  RouteRespond r;
  uint32_t status = 200;
  if (m.get_uint32("status", 200, 599, status)) r.status = static_cast<uint16_t>(status);
  if (const Field* b = m.find("body"); b && read_string(s.diag, *b, r.body)) {
    if (r.body.size() > 64 * 1024) s.diag.error(b->mark, "\"body\" is longer than 64 KiB");
    if ((r.status == 204 || r.status == 304) && !r.body.empty())
      s.diag.error(b->mark, "a " + std::to_string(r.status) + " answer has no body");
  }
  if (const Field* ct = m.find("content_type"); ct && read_string(s.diag, *ct, r.content_type)) {
    if (r.content_type.empty() || !clean_text(r.content_type))
      s.diag.error(ct->mark, "\"content_type\" must be a media type such as text/plain");
  }
  route.respond = std::move(r);
}

void load_route_rewrite(LoadState& s, const Field& f, Route& route) {
  MapReader m(s.diag, f, "rewrite", {"strip_prefix", "add_prefix"});
  if (!m.ok()) return;
  RouteRewrite r;
  if (const Field* sp = m.find("strip_prefix")) {
    read_route_path(s.diag, *sp, "strip_prefix", r.strip_prefix);
    if (r.strip_prefix == "/") s.diag.error(sp->mark, "\"strip_prefix: /\" strips nothing");
  }
  if (const Field* ap = m.find("add_prefix"))
    read_route_path(s.diag, *ap, "add_prefix", r.add_prefix);
  if (r.strip_prefix.empty() && r.add_prefix.empty())
    s.diag.error(f.mark, "\"rewrite\" needs strip_prefix or add_prefix");
  route.rewrite = std::move(r);
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

}  // namespace weir::config
