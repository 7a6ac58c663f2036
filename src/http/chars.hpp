#pragma once
// Byte classes of RFC 9110/9112/3986 as one 256-entry table, shared by the head parser and the
// body decoder, so every hot loop is a load and a mask.
#include <array>
#include <cstdint>
#include <string_view>

namespace weir::http::chars {

enum : uint8_t {
  kToken = 1 << 0,       // tchar (RFC 9110 5.6.2)
  kFieldValue = 1 << 1,  // field-vchar / obs-text / SP / HTAB
  kTarget = 1 << 2,      // request-target byte other than '%' (VCHAR minus '#')
  kRegName = 1 << 3,     // unreserved / sub-delims / '%' (RFC 3986 reg-name)
  kHex = 1 << 4,
  kDigit = 1 << 5,
};

constexpr std::array<uint8_t, 256> make_table() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint8_t v = 0;
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    if (alpha || digit ||
        std::string_view("!#$%&'*+-.^_`|~").find(char(c)) != std::string_view::npos)
      v |= kToken;
    if ((c >= 0x21 && c <= 0x7E) || c >= 0x80 || c == ' ' || c == '\t') v |= kFieldValue;
    if (c >= 0x21 && c <= 0x7E && c != '#' && c != '%') v |= kTarget;
    if (alpha || digit ||
        std::string_view("-._~!$&'()*+,;=%").find(char(c)) != std::string_view::npos)
      v |= kRegName;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= kHex;
    if (digit) v |= kDigit;
    t[c] = v;
  }
  return t;
}

inline constexpr std::array<uint8_t, 256> kTable = make_table();

constexpr bool is(char c, uint8_t cls) {
  return (kTable[static_cast<uint8_t>(c)] & cls) != 0;
}
constexpr bool is_token(char c) {
  return is(c, kToken);
}
constexpr bool is_field_value(char c) {
  return is(c, kFieldValue);
}
constexpr bool is_hex(char c) {
  return is(c, kHex);
}
constexpr bool is_digit(char c) {
  return is(c, kDigit);
}
constexpr bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

constexpr int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// The value of a hex digit, -1 if `c` is not one (percent-escapes).
constexpr int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? char(c + ('a' - 'A')) : c;
}

constexpr std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back()))
    s.remove_suffix(1);
  return s;
}

}  // namespace weir::http::chars
