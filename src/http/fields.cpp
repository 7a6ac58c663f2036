// The public field helpers of the codec: case-insensitive names, list values, which fields
// are hop-by-hop (RFC 9110 §7.6.1), and which may travel in a trailer section.
#include "http/fields.hpp"

#include <initializer_list>

#include "http/parser.hpp"

namespace weir::http {

bool list_contains(std::string_view list_value, std::string_view token) {
  return !detail::for_each_element(list_value,
                                   [&](std::string_view e) { return !iequals(e, token); });
}

// The fixed set, by length first: one comparison at most for most names.
static bool fixed_hop_by_hop(std::string_view n) {
  switch (n.size()) {
    case 2:
      return iequals(n, "te");
    case 7:
      return iequals(n, "trailer") || iequals(n, "upgrade");
    case 10:
      return iequals(n, "connection") || iequals(n, "keep-alive");
    case 16:
      return iequals(n, "proxy-connection");
    case 17:
      return iequals(n, "transfer-encoding");
    case 18:
      return iequals(n, "proxy-authenticate");
    case 19:
      return iequals(n, "proxy-authorization");
    default:
      return false;
  }
}

HopByHop::HopByHop(std::span<const Header> headers) {
  for (const Header& h : headers) {
    if (h.name.size() != 10 || !iequals(h.name, "connection")) continue;
    detail::for_each_element(h.value, [&](std::string_view token) {
      if (token.empty() || fixed_hop_by_hop(token) || iequals(token, "close")) return true;
      if (count_ == named_.size()) {
        overflow_ = headers;  // very many: look them up in the fields themselves
        return false;
      }
      named_[count_++] = token;
      return true;
    });
  }
}

bool HopByHop::operator()(std::string_view name) const {
  if (fixed_hop_by_hop(name)) return true;
  for (size_t i = 0; i < count_; ++i)
    if (named_[i].size() == name.size() && iequals(named_[i], name)) return true;
  for (const Header& h : overflow_) {
    if (h.name.size() == 10 && iequals(h.name, "connection") && list_contains(h.value, name))
      return true;
  }
  return false;
}

bool is_hop_by_hop(std::string_view name, std::span<const Header> headers) {
  return HopByHop(headers)(name);
}

// The list of fields.hpp, by length first like fixed_hop_by_hop.
bool trailer_field_allowed(std::string_view n) {
  if (n.empty() || n.front() == ':') return false;
  auto any = [n](std::initializer_list<std::string_view> names) {
    for (std::string_view x : names)
      if (iequals(n, x)) return true;
    return false;
  };
  switch (n.size()) {
    case 2:
      return !iequals(n, "te");
    case 3:
      return !iequals(n, "age");
    case 4:
      return !any({"host", "date", "vary"});
    case 5:
      return !iequals(n, "range");
    case 6:
      return !any({"expect", "cookie", "pragma"});
    case 7:
      return !any({"trailer", "upgrade", "expires", "warning"});
    case 8:
      return !any({"if-match", "if-range", "location"});
    case 10:
      return !any({"connection", "keep-alive", "set-cookie"});
    case 11:
      return !iequals(n, "retry-after");
    case 12:
      return !any({"content-type", "max-forwards"});
    case 13:
      return !any({"authorization", "cache-control", "content-range", "if-none-match"});
    case 14:
      return !iequals(n, "content-length");
    case 16:
      return !any({"proxy-connection", "content-encoding", "www-authenticate"});
    case 17:
      return !any({"transfer-encoding", "if-modified-since"});
    case 18:
      return !iequals(n, "proxy-authenticate");
    case 19:
      return !any({"proxy-authorization", "if-unmodified-since"});
    default:
      return true;
  }
}

}  // namespace weir::http
