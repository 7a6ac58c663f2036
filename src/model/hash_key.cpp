#include "model/hash_key.hpp"

#include "http/fields.hpp"

namespace weir::model {

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
        if (http::iequals(h.name, "cookie") && http::find_pair(h.value, ';', spec.name, out))
          return true;
      }
      return false;
    case KeySpec::Kind::Query:
      return http::find_pair(req.query, '&', spec.name, out);
  }
  return false;
}

}  // namespace weir::model
