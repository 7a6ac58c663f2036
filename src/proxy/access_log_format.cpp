// Access-log lines: JSON and NGINX combined, appended to the caller's string.
#include <fmt/format.h>

#include <cassert>
#include <cmath>
#include <cstring>

#include "proxy/access_log.hpp"

namespace weir::proxy {

std::string_view to_string(Termination t) {
  switch (t) {
    case Termination::Ok:
      return "ok";
    case Termination::ClientClosed:
      return "client_closed";
    case Termination::ClientTimeout:
      return "client_timeout";
    case Termination::UpstreamRefused:
      return "upstream_refused";
    case Termination::UpstreamTimeout:
      return "upstream_timeout";
    case Termination::UpstreamReset:
      return "upstream_reset";
    case Termination::NoServer:
      return "no_server";
    case Termination::QueueFull:
      return "queue_full";
    case Termination::QueueTimeout:
      return "queue_timeout";
    case Termination::Denied:
      return "denied";
    case Termination::RateLimited:
      return "rate_limited";
    case Termination::BadRequest:
      return "bad_request";
    case Termination::Local:
      return "local";
  }
  return "ok";
}

namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr char kHexUpper[] = "0123456789ABCDEF";

// A line is written through a raw pointer into room reserved up front for its worst case (every
// byte of every string escaped), then the string is cut to what was written: one size check a
// line instead of one an append.
struct Out {
  char* p;

  template <size_t N>
  void lit(const char (&s)[N]) {  // a literal: its size is known, memcpy becomes a few moves
    std::memcpy(p, s, N - 1);
    p += N - 1;
  }
  void raw(std::string_view s) {
    if (s.empty()) return;  // an empty view may have no data pointer (memcpy's null rule)
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void ch(char c) { *p++ = c; }
  template <typename T>
  void integer(T v) {
    fmt::format_int f(v);
    raw({f.data(), f.size()});
  }
};

// Room for the parts of a line that are not strings (names, numbers, time); a string of n bytes
// takes at most kEscapeFactor * n.
constexpr size_t kFixedRoom = 512;
constexpr size_t kEscapeFactor = 6;  // "\u00XX"

// Eight bytes at a time: true when none needs escaping, i.e. all are printable ASCII other than
// '"' and '\' (the set both formats leave alone).
constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHigh = 0x8080808080808080ull;

bool has_zero_byte(uint64_t x) {
  return ((x - kOnes) & ~x & kHigh) != 0;
}

bool plain8(uint64_t v) {
  uint64_t below_space = (v - kOnes * 0x20) & ~v & kHigh;       // some byte < 0x20
  uint64_t del_or_high = (((v & ~kHigh) + kOnes) | v) & kHigh;  // some byte >= 0x7f
  return (below_space | del_or_high) == 0 && !has_zero_byte(v ^ (kOnes * '"')) &&
         !has_zero_byte(v ^ (kOnes * '\\'));
}

bool plain(unsigned char c) {
  return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

// Copies the leading bytes of s[i..] that need no escaping; returns where it stopped. Works on
// locals: a store through a char* may alias anything, so members would be reloaded each byte.
size_t copy_plain(std::string_view s, size_t i, Out& o) {
  const char* src = s.data();
  const size_t n = s.size();
  char* dst = o.p;
  while (i + 8 <= n) {
    uint64_t v;
    std::memcpy(&v, src + i, 8);
    if (!plain8(v)) break;
    std::memcpy(dst, &v, 8);
    dst += 8;
    i += 8;
  }
  // Fewer than 8 left, or a byte to escape among the next 8: when the string's last 8 bytes are
  // all plain, copy them (overlapping what is already out) and be done.
  if (n >= 8 && i < n && i + 8 > n) {
    uint64_t v;
    std::memcpy(&v, src + n - 8, 8);
    if (plain8(v)) {
      std::memcpy(dst - (i + 8 - n), &v, 8);
      o.p = dst + (n - i);
      return n;
    }
  }
  while (i < n && plain(static_cast<unsigned char>(src[i])))
    *dst++ = src[i++];
  o.p = dst;
  return i;
}

// The length of the valid UTF-8 sequence (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF) at s[i] (a byte >= 0x80), or 0 when it is not one.
size_t utf8_length(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xbf) {
    return k < s.size() && at(k) >= lo && at(k) <= hi;
  };
  unsigned c = at(i);
  if (c >= 0xc2 && c <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (c == 0xe0) return cont(i + 1, 0xa0) && cont(i + 2) ? 3 : 0;
  if (c == 0xed) return cont(i + 1, 0x80, 0x9f) && cont(i + 2) ? 3 : 0;
  if (c >= 0xe1 && c <= 0xef) return cont(i + 1) && cont(i + 2) ? 3 : 0;
  if (c == 0xf0) return cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (c == 0xf4) return cont(i + 1, 0x80, 0x8f) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  return 0;
}

void json_escaped(std::string_view s, Out& o) {
  size_t i = 0;
  for (;;) {
    i = copy_plain(s, i, o);
    if (i == s.size()) return;
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (size_t n = utf8_length(s, i)) {
        o.raw(s.substr(i, n));
        i += n;
        continue;
      }
    }
    ++i;
    switch (c) {
      case '"':
        o.lit("\\\"");
        continue;
      case '\\':
        o.lit("\\\\");
        continue;
      case '\n':
        o.lit("\\n");
        continue;
      case '\r':
        o.lit("\\r");
        continue;
      case '\t':
        o.lit("\\t");
        continue;
      case '\b':
        o.lit("\\b");
        continue;
      case '\f':
        o.lit("\\f");
        continue;
      default:  // other control bytes, DEL and bytes of invalid UTF-8
        o.lit("\\u00");
        o.ch(kHex[c >> 4]);
        o.ch(kHex[c & 15]);
    }
  }
}

// `name` is the member's key and punctuation up to the opening quote, e.g. `,"host":"`.
template <size_t N>
void json_member(const char (&name)[N], std::string_view value, Out& o) {
  o.lit(name);
  json_escaped(value, o);
  o.ch('"');
}

// A value weir itself made from a restricted alphabet (config names: letters, digits, '.', '_',
// '-'; addresses; its own protocol and TLS version strings): written as it is, not scanned.
template <size_t N>
void json_member_plain(const char (&name)[N], std::string_view value, Out& o) {
  o.lit(name);
  o.raw(value);
  o.ch('"');
}

template <size_t N>
void json_plain_or_null(const char (&name)[N], std::string_view value, Out& o) {
  if (value.empty()) {
    o.raw(std::string_view(name, N - 2));  // without the opening quote
    o.lit("null");
  } else {
    json_member_plain(name, value, o);
  }
}

template <size_t N>
void json_member_or_null(const char (&name)[N], std::string_view value, Out& o) {
  if (value.empty()) {
    o.raw(std::string_view(name, N - 2));  // without the opening quote
    o.lit("null");
  } else {
    json_member(name, value, o);
  }
}

// NGINX's escaping of logged variables: '"', '\' and bytes outside 0x20-0x7e as \xHH.
void combined_field(std::string_view s, Out& o) {
  if (s.empty()) {
    o.ch('-');
    return;
  }
  size_t i = 0;
  for (;;) {
    i = copy_plain(s, i, o);
    if (i == s.size()) return;
    auto c = static_cast<unsigned char>(s[i++]);
    o.lit("\\x");
    o.ch(kHexUpper[c >> 4]);
    o.ch(kHexUpper[c & 15]);
  }
}

// Milliseconds with at most 3 decimals, trailing zeros dropped ("12.5", "3", "0.004"). Negative
// or non-finite: 0; beyond 9e12 (285 years, past exact microseconds in an int64): 9e12.
void put_ms(double ms, Out& o) {
  if (!(ms >= 0) || !std::isfinite(ms)) ms = 0;
  if (ms > 9e12) ms = 9e12;
  auto us = static_cast<int64_t>(std::llround(ms * 1000));
  o.integer(us / 1000);
  int frac = static_cast<int>(us % 1000);
  if (frac == 0) return;
  char d[4] = {'.', static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
               static_cast<char>('0' + frac % 10)};
  size_t n = 4;
  while (d[n - 1] == '0')
    --n;
  o.raw({d, n});
}

// Reserves the worst case for `strings` after out's end; `fill` writes through an Out; the
// string is then cut to what was written.
template <typename Fill>
void write_line(std::string& out, size_t string_bytes, size_t factor, Fill&& fill) {
  size_t base = out.size();
  out.resize(base + kFixedRoom + factor * string_bytes);
  Out o{out.data() + base};
  fill(o);
  assert(o.p <= out.data() + out.size());
  out.resize(static_cast<size_t>(o.p - out.data()));
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return a % b < 0 ? q - 1 : q;
}

struct Civil {
  int64_t year;
  unsigned month, day, hour, minute, second;
};

// Howard Hinnant's civil_from_days: no libc, no locale, any year.
Civil civil(int64_t unix_seconds) {
  int64_t days = floor_div(unix_seconds, 86400);
  auto sod = static_cast<unsigned>(unix_seconds - days * 86400);
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  auto doe = static_cast<unsigned>(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  unsigned d = doy - (153 * mp + 2) / 5 + 1;
  unsigned m = mp < 10 ? mp + 3 : mp - 9;
  int64_t y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
  return {y, m, d, sod / 3600, sod / 60 % 60, sod % 60};
}

// The formatted second, redone only when the second changes (per thread: workers log their own
// requests, mostly within the same second).
struct SecondCache {
  int64_t second = INT64_MIN;
  char text[40];
  size_t size = 0;
};

// "2026-11-30T16:04:43" for the JSON time.
std::string_view rfc3339_second(int64_t second) {
  thread_local SecondCache cache;
  if (cache.second != second) {
    Civil c = civil(second);
    auto end =
        fmt::format_to_n(cache.text, sizeof cache.text - 1, "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                         c.year, c.month, c.day, c.hour, c.minute, c.second);
    cache.size = end.size < sizeof cache.text ? end.size : sizeof cache.text - 1;
    cache.second = second;
  }
  return {cache.text, cache.size};
}

// "30/Nov/2026:16:04:43 +0000" for the combined $time_local.
std::string_view clf_second(int64_t second) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  thread_local SecondCache cache;
  if (cache.second != second) {
    Civil c = civil(second);
    auto end = fmt::format_to_n(cache.text, sizeof cache.text - 1,
                                "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000", c.day,
                                kMonths[c.month - 1], c.year, c.hour, c.minute, c.second);
    cache.size = end.size < sizeof cache.text ? end.size : sizeof cache.text - 1;
    cache.second = second;
  }
  return {cache.text, cache.size};
}

// The address part of "1.2.3.4:80" or "[::1]:80".
std::string_view without_port(std::string_view client) {
  if (!client.empty() && client.front() == '[') {
    size_t close = client.find(']');
    if (close != std::string_view::npos) return client.substr(1, close - 1);
    return client;
  }
  size_t colon = client.rfind(':');
  if (colon != std::string_view::npos && client.find(':') == colon) return client.substr(0, colon);
  return client;
}

}  // namespace

void format_json(const AccessRecord& r, std::string& out) {
  size_t strings = r.listener.size() + r.client.size() + r.method.size() + r.host.size() +
                   r.path.size() + r.proto.size() + r.backend.size() + r.server.size() +
                   r.request_id.size() + r.tls.size();
  write_line(out, strings, kEscapeFactor, [&](Out& o) {
    int64_t second = floor_div(r.time_unix_ms, 1000);
    auto milli = static_cast<unsigned>(r.time_unix_ms - second * 1000);
    o.lit("{\"time\":\"");
    o.raw(rfc3339_second(second));
    o.ch('.');
    o.ch(static_cast<char>('0' + milli / 100));
    o.ch(static_cast<char>('0' + milli / 10 % 10));
    o.ch(static_cast<char>('0' + milli % 10));
    o.lit("Z\"");
    json_member_plain(",\"listener\":\"", r.listener, o);
    json_member_plain(",\"client\":\"", r.client, o);
    json_member(",\"method\":\"", r.method, o);
    json_member(",\"host\":\"", r.host, o);
    json_member(",\"path\":\"", r.path, o);
    json_member_plain(",\"proto\":\"", r.proto, o);
    o.lit(",\"status\":");
    o.integer(r.status);
    o.lit(",\"bytes_in\":");
    o.integer(r.bytes_in);
    o.lit(",\"bytes_out\":");
    o.integer(r.bytes_out);
    o.lit(",\"duration_ms\":");
    put_ms(r.duration_ms, o);
    json_plain_or_null(",\"backend\":\"", r.backend, o);
    json_plain_or_null(",\"server\":\"", r.server, o);
    o.lit(",\"upstream_ms\":");
    if (r.upstream_ms >= 0 && std::isfinite(r.upstream_ms)) {
      put_ms(r.upstream_ms, o);
    } else {
      o.lit("null");
    }
    o.lit(",\"retries\":");
    o.integer(r.retries);
    json_member_or_null(",\"request_id\":\"", r.request_id, o);
    json_plain_or_null(",\"tls\":\"", r.tls, o);
    o.lit(",\"termination\":\"");
    o.raw(to_string(r.termination));
    o.lit("\"}\n");
  });
}

void format_combined(const AccessRecord& r, std::string& out) {
  std::string_view addr = without_port(r.client);
  size_t strings = addr.size() + r.user.size() + r.method.size() + r.path.size() + r.proto.size() +
                   r.referer.size() + r.user_agent.size();
  write_line(out, strings, 4, [&](Out& o) {  // "\xHH"
    combined_field(addr, o);
    o.lit(" - ");
    combined_field(r.user, o);
    o.lit(" [");
    o.raw(clf_second(floor_div(r.time_unix_ms, 1000)));
    o.lit("] \"");
    combined_field(r.method, o);
    o.ch(' ');
    combined_field(r.path, o);
    o.ch(' ');
    combined_field(r.proto, o);
    o.lit("\" ");
    o.integer(r.status);
    o.ch(' ');
    o.integer(r.bytes_out);
    o.lit(" \"");
    combined_field(r.referer, o);
    o.lit("\" \"");
    combined_field(r.user_agent, o);
    o.lit("\"\n");
  });
}

void format_line(LogFormat format, const AccessRecord& r, std::string& out) {
  if (format == LogFormat::Combined) {
    format_combined(r, out);
  } else {
    format_json(r, out);
  }
}

}  // namespace weir::proxy
