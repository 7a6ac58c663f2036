#include "model/hash_key.hpp"

namespace weir::model {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Finds `name` in "a=1; b=2" (cookies, separator ';') or "a=1&b=2" (query, separator '&').
bool find_pair(std::string_view list, char sep, std::string_view name, std::string_view& out) {
  while (!list.empty()) {
    size_t end = list.find(sep);
    std::string_view item = trim(list.substr(0, end));
    size_t eq = item.find('=');
    if (eq != std::string_view::npos && trim(item.substr(0, eq)) == name) {
      out = trim(item.substr(eq + 1));
      return true;
    }
    if (end == std::string_view::npos) break;
    list.remove_prefix(end + 1);
  }
  return false;
}

}  // namespace

KeySpec KeySpec::parse(std::string_view text) {
  KeySpec k;
  auto colon = text.find(':');
  std::string_view kind = text.substr(0, colon);
  if (colon != std::string_view::npos) k.name = std::string(text.substr(colon + 1));
  if (kind == "path")
    k.kind = Kind::Path;
  else if (kind == "header")
    k.kind = Kind::Header;
  else if (kind == "cookie")
    k.kind = Kind::Cookie;
  else if (kind == "query")
    k.kind = Kind::Query;
  else
    k.kind = Kind::ClientIp;
  return k;
}

bool extract_key(const KeySpec& spec, const http::RequestHead& req, std::string_view client_ip,
                 std::string_view& out) {
  switch (spec.kind) {
    case KeySpec::Kind::ClientIp:
      out = client_ip;
      return true;
    case KeySpec::Kind::Path:
      out = req.path;
      return true;
    case KeySpec::Kind::Header:
      for (const auto& h : req.headers) {
        if (http::iequals(h.name, spec.name)) {
          out = h.value;
          return true;
        }
      }
      return false;
    case KeySpec::Kind::Cookie:
      for (const auto& h : req.headers) {
        if (http::iequals(h.name, "cookie") && find_pair(h.value, ';', spec.name, out)) return true;
      }
      return false;
    case KeySpec::Kind::Query:
      return find_pair(req.query, '&', spec.name, out);
  }
  return false;
}

}  // namespace weir::model
