// The public field helpers of the codec: case-insensitive names, list values, and which fields
// are hop-by-hop (RFC 9110 §7.6.1).
#include "http/fields.hpp"
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

}  // namespace weir::http
