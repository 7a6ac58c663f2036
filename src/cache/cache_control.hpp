#pragma once
// Cache-Control (RFC 9111 5.2) and CDN-Cache-Control (RFC 9213) as the cache reads them: the
// directives of a response or a request, parsed from all the field lines of one message into a
// small flat struct. Strict grammar, lenient meaning; no allocation, no exception, bounded work.
//
// Cache-Control grammar: `#( token [ "=" ( token / quoted-string ) ] )`, names compared case-
// insensitively, several field lines are one list (RFC 9110 5.3), empty elements skipped.
//   - Arguments: both forms are accepted for every directive, whatever form senders must use
//     (RFC 9111 5.2: "recipients ought to accept both forms"): max-age="5" is max-age=5 and
//     private=set-cookie is private="set-cookie". No whitespace around "=" (it is not in the
//     grammar).
//   - delta-seconds (1.2.2) is 1*DIGIT; larger than 2^31 → 2^31. Anything else ("", "-1", "5x",
//     a quoted string with a backslash) makes the directive present but Invalid; what an
//     invalid value means is decided where it is used (freshness.hpp): an invalid max-age or
//     s-maxage makes the response stale (4.2.1 encourages it), an invalid stale-* grants
//     nothing.
//   - A directive given twice: the first occurrence counts (4.2.1 "either the first occurrence
//     should be used or the response should be considered stale"). Flags are simply set.
//   - An element that is not valid syntax but starts with a known directive name ("max-age 5",
//     "no-store=\"x") counts as that directive with an Invalid argument, which for every
//     directive is the more restrictive reading (no-store stays no-store, max-age makes it
//     stale). An element that does not start with a token is skipped.
//   - Restrictive flags (no-store, no-cache, private, must-revalidate, proxy-revalidate,
//     no-transform, must-understand, only-if-cached) count whatever their argument; permissive
//     ones (public, immutable) are ignored when given an argument.
//   - Unknown directives (extensions) are ignored.
//
// CDN-Cache-Control is a Structured Fields Dictionary (RFC 9213 2.1, RFC 8941 3.2): lower-case
// keys only, integers as sf-integer (a string "5", a decimal, a negative number → Invalid),
// booleans bare (`no-store`), field lists as sf-string. Duplicate keys: the last wins (the
// Dictionary rule). Parameters are ignored. A field that fails to parse as a Dictionary, or is
// empty, is ignored as a whole (RFC 9213 2.2): `valid` is false and the caller falls back to
// Cache-Control.
//
// Bounds: at most kMaxDirectives non-empty elements (Dictionary members) over all lines are
// looked at; more sets `truncated`, and freshness.hpp then refuses to store the response
// (a no-store could hide after the limit). Work is linear in the bytes of the fields.
//
// Qualified no-cache / private (with a field list) are recorded as flags only: the cache treats
// them as the unqualified forms (revalidate every time / do not store), which RFC 9111 5.2.2.4
// and 5.2.2.7 allow ("MAY use ... if" / "MAY store ... the remainder") and which is the safe
// reading; the field names are not kept.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace weir::cache {

inline constexpr size_t kMaxDirectives = 64;
// delta-seconds above this are clamped to it (RFC 9111 1.2.2).
inline constexpr uint32_t kMaxDeltaSeconds = 2147483648u;

// A delta-seconds argument as received.
struct Seconds {
  enum class State : uint8_t { Absent, Valid, Invalid };
  State state = State::Absent;
  uint32_t value = 0;  // Valid only; at most kMaxDeltaSeconds

  bool present() const { return state != State::Absent; }
  bool valid() const { return state == State::Valid; }
  static Seconds of(uint32_t v) { return {State::Valid, v}; }
  static Seconds invalid() { return {State::Invalid, 0}; }
};

struct ResponseDirectives {
  Seconds max_age;                 // 5.2.2.1
  Seconds s_maxage;                // 5.2.2.10
  Seconds stale_while_revalidate;  // RFC 5861 3
  Seconds stale_if_error;          // RFC 5861 4
  bool no_cache = false;           // 5.2.2.4, either form
  bool no_cache_fields = false;    //   ... with a field list (qualified)
  bool no_store = false;           // 5.2.2.5
  bool private_ = false;           // 5.2.2.7, either form
  bool private_fields = false;     //   ... with a field list (qualified)
  bool public_ = false;            // 5.2.2.9
  bool must_revalidate = false;    // 5.2.2.2
  bool proxy_revalidate = false;   // 5.2.2.8
  bool must_understand = false;    // 5.2.2.3
  bool no_transform = false;       // 5.2.2.6
  bool immutable = false;          // RFC 8246
  bool truncated = false;          // more than kMaxDirectives elements
  uint8_t count = 0;               // elements looked at (≤ kMaxDirectives)
};

struct RequestDirectives {
  Seconds max_age;              // 5.2.1.1
  Seconds max_stale;            // 5.2.1.2 with a value (Invalid: accept no staleness)
  bool max_stale_any = false;   //   ... without a value: any staleness
  Seconds min_fresh;            // 5.2.1.3
  Seconds stale_if_error;       // RFC 5861 4 (request form)
  bool no_cache = false;        // 5.2.1.4
  bool no_store = false;        // 5.2.1.5
  bool no_transform = false;    // 5.2.1.6
  bool only_if_cached = false;  // 5.2.1.7
  bool truncated = false;
  uint8_t count = 0;
};

// Parses delta-seconds (1*DIGIT, clamped to 2^31); Invalid for anything else.
Seconds parse_delta_seconds(std::string_view s);

// `values`: every Cache-Control field value of the message, in order (OWS-trimmed or not).
ResponseDirectives parse_response_cache_control(std::span<const std::string_view> values);
RequestDirectives parse_request_cache_control(std::span<const std::string_view> values);

// `values`: every CDN-Cache-Control field value. `valid` is false when there is none, all are
// empty, or any fails to parse (the whole field is then ignored, RFC 9213 2.2).
struct TargetedDirectives {
  bool valid = false;
  ResponseDirectives directives;
};
TargetedDirectives parse_cdn_cache_control(std::span<const std::string_view> values);

}  // namespace weir::cache
