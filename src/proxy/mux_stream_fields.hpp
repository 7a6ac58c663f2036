#pragma once
// Templates of mux_stream.hpp (response fields for HTTP/2 and HTTP/3 heads and trailers).
#include <charconv>

#include "http/chars.hpp"
#include "http/fields.hpp"

namespace weir::proxy {

template <class F>
void for_each_mux_field(const ResponseOut& head, std::string& names, char (&length)[24], F&& f) {
  size_t total = 0;
  head.for_each_field([&](std::string_view name, std::string_view) { total += name.size(); });
  names.resize(total);
  size_t at = 0;
  const bool own_length = head.local || head.body == http::BodyKind::ContentLength;
  head.for_each_field([&](std::string_view name, std::string_view value) {
    char* lower = names.data() + at;
    for (size_t i = 0; i < name.size(); ++i)
      lower[i] = http::chars::lower(name[i]);
    at += name.size();
    std::string_view l(lower, name.size());
    if (connection_specific(l)) return;
    if (own_length && l == "content-length") return;
    f(l, value);
  });
  if (own_length) {
    auto [end, ec] = std::to_chars(length, length + sizeof length, head.content_length);
    (void)ec;
    f(std::string_view("content-length"), std::string_view(length, end));
  }
}

template <class F>
void for_each_mux_trailer(std::string_view lines, std::string& names, F&& f) {
  names.resize(lines.size());  // every name fits: the lines hold them
  size_t at = 0;
  http::for_each_field_line(lines, [&](std::string_view name, std::string_view value) {
    if (!http::trailer_field_allowed(name)) return;
    char* lower = names.data() + at;
    for (size_t i = 0; i < name.size(); ++i)
      lower[i] = http::chars::lower(name[i]);
    at += name.size();
    f(std::string_view(lower, name.size()), value);
  });
}

}  // namespace weir::proxy
