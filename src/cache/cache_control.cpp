#include "cache/cache_control.hpp"

#include <array>

#include "http/chars.hpp"
#include "http/fields.hpp"

namespace weir::cache {

namespace {

namespace chars = http::chars;

// A directive's argument, from either grammar.
struct Arg {
  enum class Kind : uint8_t {
    None,     // no argument (Cache-Control) or Boolean true (Dictionary)
    Text,     // Cache-Control token, or quoted-string without escapes (its inside)
    String,   // Dictionary sf-string (never a number)
    Integer,  // Dictionary sf-integer
    False,    // Dictionary ?0
    Invalid,  // malformed, or a type the directive cannot have
  };
  Kind kind = Kind::None;
  std::string_view text;
  int64_t integer = 0;
};

enum class Name : uint8_t {
  Unknown,
  MaxAge,
  SMaxage,
  StaleWhileRevalidate,
  StaleIfError,
  NoCache,
  NoStore,
  Private,
  Public,
  MustRevalidate,
  ProxyRevalidate,
  MustUnderstand,
  NoTransform,
  Immutable,
  MaxStale,
  MinFresh,
  OnlyIfCached,
};

Name name_of(std::string_view s) {
  struct Known {
    std::string_view text;
    Name name;
  };
  static constexpr Known kKnown[] = {
      {"max-age", Name::MaxAge},
      {"s-maxage", Name::SMaxage},
      {"stale-while-revalidate", Name::StaleWhileRevalidate},
      {"stale-if-error", Name::StaleIfError},
      {"no-cache", Name::NoCache},
      {"no-store", Name::NoStore},
      {"private", Name::Private},
      {"public", Name::Public},
      {"must-revalidate", Name::MustRevalidate},
      {"proxy-revalidate", Name::ProxyRevalidate},
      {"must-understand", Name::MustUnderstand},
      {"no-transform", Name::NoTransform},
      {"immutable", Name::Immutable},
      {"max-stale", Name::MaxStale},
      {"min-fresh", Name::MinFresh},
      {"only-if-cached", Name::OnlyIfCached},
  };
  for (const Known& k : kKnown)
    if (http::detail::ascii_iequals(s, k.text)) return k.name;
  return Name::Unknown;
}

Seconds to_seconds(const Arg& a) {
  switch (a.kind) {
    case Arg::Kind::Text:
      return parse_delta_seconds(a.text);
    case Arg::Kind::Integer:
      if (a.integer < 0) return Seconds::invalid();
      return Seconds::of(a.integer >= int64_t{kMaxDeltaSeconds} ? kMaxDeltaSeconds
                                                                : uint32_t(a.integer));
    default:
      return Seconds::invalid();
  }
}

void first(Seconds& slot, const Arg& a) {
  if (!slot.present()) slot = to_seconds(a);
}

// A field list (or anything but "none" / "false") qualifies no-cache and private.
bool qualified(const Arg& a) {
  return a.kind != Arg::Kind::None && a.kind != Arg::Kind::False;
}

void apply(ResponseDirectives& d, std::string_view name, const Arg& a) {
  switch (name_of(name)) {
    case Name::MaxAge:
      first(d.max_age, a);
      break;
    case Name::SMaxage:
      first(d.s_maxage, a);
      break;
    case Name::StaleWhileRevalidate:
      first(d.stale_while_revalidate, a);
      break;
    case Name::StaleIfError:
      first(d.stale_if_error, a);
      break;
    case Name::NoCache:
      d.no_cache = true;
      d.no_cache_fields |= qualified(a);
      break;
    case Name::Private:
      d.private_ = true;
      d.private_fields |= qualified(a);
      break;
    case Name::NoStore:
      d.no_store = true;
      break;
    case Name::MustRevalidate:
      d.must_revalidate = true;
      break;
    case Name::ProxyRevalidate:
      d.proxy_revalidate = true;
      break;
    case Name::MustUnderstand:
      d.must_understand = true;
      break;
    case Name::NoTransform:
      d.no_transform = true;
      break;
    case Name::Public:
      d.public_ |= a.kind == Arg::Kind::None;
      break;
    case Name::Immutable:
      d.immutable |= a.kind == Arg::Kind::None;
      break;
    default:
      break;  // request-only or unknown
  }
}

void apply(RequestDirectives& d, std::string_view name, const Arg& a) {
  switch (name_of(name)) {
    case Name::MaxAge:
      first(d.max_age, a);
      break;
    case Name::MinFresh:
      first(d.min_fresh, a);
      break;
    case Name::StaleIfError:
      first(d.stale_if_error, a);
      break;
    case Name::MaxStale:
      if (a.kind == Arg::Kind::None)
        d.max_stale_any = true;
      else
        first(d.max_stale, a);
      break;
    case Name::NoCache:
      d.no_cache = true;
      break;
    case Name::NoStore:
      d.no_store = true;
      break;
    case Name::NoTransform:
      d.no_transform = true;
      break;
    case Name::OnlyIfCached:
      d.only_if_cached = true;
      break;
    default:
      break;
  }
}

bool is_qdtext(char c) {
  const auto u = static_cast<unsigned char>(c);
  return c == '\t' || c == ' ' || u == 0x21 || (u >= 0x23 && u <= 0x5B) ||
         (u >= 0x5D && u <= 0x7E) || u >= 0x80;
}

bool is_quoted_pair_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return c == '\t' || c == ' ' || (u >= 0x21 && u <= 0x7E) || u >= 0x80;
}

// Cache-Control list (RFC 9111 5.2): calls f(name, arg) for each non-empty element, the
// elements of all lines in order. Returns false if stopped at kMaxDirectives.
template <typename F>
bool for_each_cc_directive(std::span<const std::string_view> values, uint8_t& count, F&& f) {
  for (std::string_view v : values) {
    size_t i = 0;
    while (i < v.size()) {
      while (i < v.size() && (chars::is_ows(v[i]) || v[i] == ','))
        ++i;
      if (i == v.size()) break;
      if (count == kMaxDirectives) return false;
      ++count;
      const size_t start = i;
      while (i < v.size() && chars::is_token(v[i]))
        ++i;
      const std::string_view name = v.substr(start, i - start);
      Arg arg;
      bool ok = !name.empty();
      if (ok && i < v.size() && v[i] == '=') {
        ++i;
        if (i < v.size() && v[i] == '"') {
          size_t q = i + 1;
          bool escaped = false;
          bool closed = false;
          while (q < v.size() && ok) {
            if (v[q] == '"') {
              closed = true;
              break;
            }
            if (v[q] == '\\') {
              escaped = true;
              ok = q + 1 < v.size() && is_quoted_pair_char(v[q + 1]);
              q += 2;
            } else {
              ok = is_qdtext(v[q]);
              ++q;
            }
          }
          ok = ok && closed;
          if (ok) {
            // An escape in a number or a field name is nonsense; keep the directive, not the
            // value (still a qualified no-cache / private).
            arg.kind = escaped ? Arg::Kind::Invalid : Arg::Kind::Text;
            arg.text = v.substr(i + 1, q - i - 1);
            i = q + 1;
          }
        } else {
          const size_t arg_start = i;
          while (i < v.size() && chars::is_token(v[i]))
            ++i;
          ok = i > arg_start;
          arg.kind = Arg::Kind::Text;
          arg.text = v.substr(arg_start, i - arg_start);
        }
      }
      if (ok) {
        while (i < v.size() && chars::is_ows(v[i]))
          ++i;
        ok = i == v.size() || v[i] == ',';
      }
      if (!ok) {
        // Skip to the next comma, quotes or not: a broken element must not hide the ones
        // after it inside a never-closed quoted string.
        arg = Arg{Arg::Kind::Invalid, {}, 0};
        while (i < v.size() && v[i] != ',')
          ++i;
      }
      if (!name.empty()) f(name, arg);
    }
  }
  return true;
}

// RFC 8941 Dictionary members, for CDN-Cache-Control.
struct Member {
  std::string_view key;
  Arg arg;
};

class SfParser {
 public:
  explicit SfParser(std::string_view s) : s_(s) {}

  // Appends the members of this line to `out` (at most `cap`); false on a parse error.
  bool dictionary(std::array<Member, kMaxDirectives>& out, size_t& n, bool& truncated) {
    skip_sp();
    while (true) {
      std::string_view key;
      if (!parse_key(key)) return false;
      Arg arg;  // bare key: Boolean true
      if (peek('=')) {
        ++i_;
        if (peek('(')) {
          if (!inner_list()) return false;
          arg.kind = Arg::Kind::Invalid;
        } else if (!bare_item(arg)) {
          return false;
        }
      }
      if (!parameters()) return false;
      if (n < out.size())
        out[n++] = Member{key, arg};
      else
        truncated = true;
      skip_ows();
      if (i_ == s_.size()) return true;
      if (s_[i_] != ',') return false;
      ++i_;
      skip_ows();
      if (i_ == s_.size()) return false;  // trailing comma
    }
  }

 private:
  bool peek(char c) const { return i_ < s_.size() && s_[i_] == c; }
  void skip_sp() {
    while (peek(' '))
      ++i_;
  }
  void skip_ows() {
    while (i_ < s_.size() && chars::is_ows(s_[i_]))
      ++i_;
  }
  static bool lcalpha(char c) { return c >= 'a' && c <= 'z'; }
  static bool digit(char c) { return c >= '0' && c <= '9'; }

  bool parse_key(std::string_view& key) {
    const size_t start = i_;
    if (i_ == s_.size() || !(lcalpha(s_[i_]) || s_[i_] == '*')) return false;
    ++i_;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (!(lcalpha(c) || digit(c) || c == '_' || c == '-' || c == '.' || c == '*')) break;
      ++i_;
    }
    key = s_.substr(start, i_ - start);
    return true;
  }

  bool parameters() {
    while (peek(';')) {
      ++i_;
      skip_sp();
      std::string_view key;
      if (!parse_key(key)) return false;
      if (peek('=')) {
        ++i_;
        Arg ignored;
        if (!bare_item(ignored)) return false;
      }
    }
    return true;
  }

  bool inner_list() {
    ++i_;  // '('
    while (true) {
      skip_sp();
      if (peek(')')) {
        ++i_;
        return parameters();
      }
      Arg ignored;
      if (!bare_item(ignored) || !parameters()) return false;
      if (!peek(' ') && !peek(')')) return false;
    }
  }

  bool number(Arg& arg) {
    bool negative = false;
    if (peek('-')) {
      negative = true;
      ++i_;
    }
    const size_t start = i_;
    int64_t v = 0;
    while (i_ < s_.size() && digit(s_[i_]) && i_ - start < 16)
      v = v * 10 + (s_[i_++] - '0');
    const size_t int_digits = i_ - start;
    if (int_digits == 0) return false;
    if (!peek('.')) {
      if (int_digits > 15) return false;
      arg.kind = Arg::Kind::Integer;
      arg.integer = negative ? -v : v;
      return true;
    }
    if (int_digits > 12) return false;
    ++i_;
    const size_t frac = i_;
    while (i_ < s_.size() && digit(s_[i_]) && i_ - frac < 4)
      ++i_;
    if (i_ == frac || i_ - frac > 3) return false;
    arg.kind = Arg::Kind::Invalid;  // a decimal is no delta-seconds
    return true;
  }

  bool string(Arg& arg) {
    ++i_;  // '"'
    const size_t start = i_;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '"') {
        arg.kind = Arg::Kind::String;
        arg.text = s_.substr(start, i_ - start);
        ++i_;
        return true;
      }
      if (c == '\\') {
        if (i_ + 1 == s_.size() || (s_[i_ + 1] != '"' && s_[i_ + 1] != '\\')) return false;
        i_ += 2;
        continue;
      }
      if (c < 0x20 || c > 0x7E) return false;
      ++i_;
    }
    return false;
  }

  bool bare_item(Arg& arg) {
    if (i_ == s_.size()) return false;
    const char c = s_[i_];
    if (c == '-' || digit(c)) return number(arg);
    if (c == '"') return string(arg);
    if (c == '?') {
      if (i_ + 1 == s_.size() || (s_[i_ + 1] != '0' && s_[i_ + 1] != '1')) return false;
      arg.kind = s_[i_ + 1] == '1' ? Arg::Kind::None : Arg::Kind::False;
      i_ += 2;
      return true;
    }
    arg.kind = Arg::Kind::Invalid;  // a token, byte sequence, date or display string
    if (c == '@') {                 // Date (RFC 9651)
      ++i_;
      Arg n;
      return number(n) && n.kind == Arg::Kind::Integer;
    }
    if (c == ':') {  // Byte Sequence
      ++i_;
      while (i_ < s_.size() && s_[i_] != ':') {
        const char b = s_[i_];
        if (!(chars::is(b, chars::kHex) || (b >= 'g' && b <= 'z') || (b >= 'G' && b <= 'Z') ||
              b == '+' || b == '/' || b == '='))
          return false;
        ++i_;
      }
      if (!peek(':')) return false;
      ++i_;
      return true;
    }
    if (c == '%') {  // Display String (RFC 9651)
      if (i_ + 1 == s_.size() || s_[i_ + 1] != '"') return false;
      i_ += 2;
      while (i_ < s_.size() && s_[i_] != '"') {
        const char d = s_[i_];
        if (d < 0x20 || d > 0x7E) return false;
        if (d == '%') {
          if (i_ + 2 >= s_.size()) return false;
          for (size_t k = 1; k <= 2; ++k) {
            const char h = s_[i_ + k];
            if (!(digit(h) || (h >= 'a' && h <= 'f'))) return false;
          }
          i_ += 2;
        }
        ++i_;
      }
      if (!peek('"')) return false;
      ++i_;
      return true;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '*') {  // Token
      ++i_;
      while (i_ < s_.size() && (chars::is_token(s_[i_]) || s_[i_] == ':' || s_[i_] == '/'))
        ++i_;
      return true;
    }
    return false;
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

Seconds parse_delta_seconds(std::string_view s) {
  if (s.empty()) return Seconds::invalid();
  uint64_t v = 0;
  for (char c : s) {
    if (!chars::is_digit(c)) return Seconds::invalid();
    v = v * 10 + uint64_t(c - '0');
    if (v > kMaxDeltaSeconds) v = kMaxDeltaSeconds;  // keeps going: the rest must be digits
  }
  return Seconds::of(uint32_t(v));
}

ResponseDirectives parse_response_cache_control(std::span<const std::string_view> values) {
  ResponseDirectives d;
  d.truncated = !for_each_cc_directive(
      values, d.count, [&](std::string_view name, const Arg& a) { apply(d, name, a); });
  return d;
}

RequestDirectives parse_request_cache_control(std::span<const std::string_view> values) {
  RequestDirectives d;
  d.truncated = !for_each_cc_directive(
      values, d.count, [&](std::string_view name, const Arg& a) { apply(d, name, a); });
  return d;
}

TargetedDirectives parse_cdn_cache_control(std::span<const std::string_view> values) {
  TargetedDirectives t;
  std::array<Member, kMaxDirectives> members;
  size_t n = 0;
  bool truncated = false;
  bool any = false;
  for (std::string_view v : values) {
    v = chars::trim_ows(v);
    if (v.empty()) continue;  // an empty line adds nothing (RFC 9213 2.2: ignored)
    any = true;
    SfParser p(v);
    if (!p.dictionary(members, n, truncated)) return t;  // the whole field is ignored
  }
  if (!any) return t;
  t.valid = true;
  // A Dictionary's later duplicate replaces the earlier one: only the last of each key counts.
  for (size_t k = 0; k < n; ++k) {
    bool replaced = false;
    for (size_t j = k + 1; j < n && !replaced; ++j)
      replaced = members[j].key == members[k].key;
    if (!replaced) apply(t.directives, members[k].key, members[k].arg);
  }
  t.directives.count = uint8_t(n);
  t.directives.truncated = truncated;
  return t;
}

}  // namespace weir::cache
