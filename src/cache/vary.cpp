#include "cache/vary.hpp"

#include <algorithm>
#include <array>

#include "http/chars.hpp"

namespace weir::cache {

namespace chars = http::chars;

VaryKind parse_vary(std::span<const http::Header> response_fields, std::string& names) {
  names.clear();
  std::array<std::string_view, kMaxVaryNames> found{};
  size_t n = 0;
  for (const http::Header& h : response_fields) {
    if (!http::iequals(h.name, "vary")) continue;
    std::string_view v = h.value;
    while (true) {
      const size_t comma = v.find(',');
      const std::string_view elem = chars::trim_ows(v.substr(0, comma));
      if (elem == "*") return VaryKind::Star;
      if (!elem.empty()) {
        if (!std::all_of(elem.begin(), elem.end(), chars::is_token)) return VaryKind::Invalid;
        const bool dup = std::any_of(found.begin(), found.begin() + n,
                                     [&](std::string_view f) { return http::iequals(f, elem); });
        if (!dup) {
          if (n == found.size()) return VaryKind::TooMany;
          found[n++] = elem;
        }
      }
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  if (n == 0) return VaryKind::None;
  std::array<std::string, kMaxVaryNames> lower;
  for (size_t i = 0; i < n; ++i) {
    lower[i].assign(found[i]);
    for (char& c : lower[i])
      c = chars::lower(c);
  }
  std::sort(lower.begin(), lower.begin() + n);
  for (size_t i = 0; i < n; ++i) {
    if (i) names.push_back(',');
    names.append(lower[i]);
  }
  return VaryKind::Names;
}

bool secondary_key(std::string_view names, std::span<const http::Header> request_fields,
                   std::string& out) {
  out.clear();
  while (!names.empty()) {
    const size_t comma = names.find(',');
    const std::string_view name = names.substr(0, comma);
    names.remove_prefix(comma == std::string_view::npos ? names.size() : comma + 1);
    out.append(name).push_back(':');
    bool present = false;
    for (const http::Header& h : request_fields) {
      if (!http::iequals(h.name, name)) continue;
      out.append(present ? ", " : "=");
      present = true;
      std::string_view v = h.value;
      while (true) {
        const size_t c = v.find(',');
        out.append(chars::trim_ows(v.substr(0, c)));
        if (c == std::string_view::npos) break;
        out.append(", ");
        v.remove_prefix(c + 1);
      }
      if (out.size() > kMaxSecondaryKey) return false;
    }
    if (!present) out.push_back('!');
    out.push_back('\n');
    if (out.size() > kMaxSecondaryKey) return false;
  }
  return true;
}

}  // namespace weir::cache
