#pragma once
// Conditional and range requests (RFC 9110 13 and 14) as a server evaluates them, or a cache
// answering from a stored response: pure functions over header values and the representation's
// validators. No allocation except the formatting helpers appending to the caller's string.
//
// Header values are passed as received (OWS around the value trimmed, see parser.hpp); nullopt
// means the field is absent. A list field (If-Match, If-None-Match) sent in several field lines
// is passed joined with ", " (RFC 9110 5.3). A singleton field (dates, If-Range, Range) sent more
// than once should be passed joined too: the join is then not a valid value and is ignored.
//
// Entity-tags (8.8.3): `[W/] DQUOTE *etagc DQUOTE`, etagc = %x21 / %x23-7E / obs-text (so an
// opaque-tag may contain a comma; lists are scanned tag by tag, not split at commas). In an
// If-Match / If-None-Match list an element that is not an entity-tag ends the scan: it and
// everything after it match nothing (so a garbled If-Match fails → 412, a garbled
// If-None-Match matches nothing → the full response; both safe).
//
// Dates: any HTTP-date form (http/date.hpp); an invalid date, or a list of dates, is ignored.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "http/parser.hpp"

namespace weir::http {

struct EntityTag {
  bool weak = false;
  std::string_view opaque;  // with its double quotes, e.g. "\"abc\""
};
// One whole entity-tag, or nullopt.
std::optional<EntityTag> parse_entity_tag(std::string_view s);

// RFC 9110 8.8.3.2. Strong: neither weak and the opaque-tags equal; weak: opaque-tags equal.
bool strong_match(const EntityTag& a, const EntityTag& b);
bool weak_match(const EntityTag& a, const EntityTag& b);

// True if `list` ("*" or #entity-tag) matches `etag` (the representation's, as sent; empty if it
// has none): "*" matches any existing representation, even one without an ETag.
bool etag_list_matches(std::string_view list, std::string_view etag, bool weak_comparison);

// The selected representation's validators.
struct Validators {
  std::string_view etag;                 // as sent ("\"x\"" or "W/\"x\""); empty if none
  std::optional<int64_t> last_modified;  // unix seconds; nullopt if none
};

struct ConditionalHeaders {
  std::optional<std::string_view> if_match;
  std::optional<std::string_view> if_none_match;
  std::optional<std::string_view> if_modified_since;
  std::optional<std::string_view> if_unmodified_since;
  std::optional<std::string_view> if_range;
  std::optional<std::string_view> range;
};

// The conditional fields and Range of a request (the first field of each name; views into
// `fields`).
ConditionalHeaders conditional_headers(std::span<const Header> fields);

enum class Precondition : uint8_t {
  Proceed,             // evaluate Range next, then answer normally
  NotModified,         // 304 (GET/HEAD only)
  PreconditionFailed,  // 412
};

// RFC 9110 13.2.2, steps 1-4, for an existing representation:
//  1. If-Match present: strong comparison; false → 412.
//  2. else If-Unmodified-Since (a valid date, the representation has Last-Modified):
//     Last-Modified later than the date → 412.
//  3. If-None-Match present: weak comparison; a match → 304 for GET/HEAD, 412 otherwise.
//  4. else, GET/HEAD only, If-Modified-Since (a valid date, the representation has
//     Last-Modified): Last-Modified not later than the date → 304.
// The 13.2.1 exception "the state-changing request already succeeded" is the caller's business.
Precondition evaluate_preconditions(const ConditionalHeaders& h, const Validators& v,
                                    Method method);

// RFC 9110 13.1.5. True if the If-Range value lets the Range apply:
//  - an entity-tag: it strongly matches the representation's ETag (a weak tag never does);
//  - an HTTP-date: it equals Last-Modified exactly AND that Last-Modified is a strong validator,
//    decided by the rule of 8.8.2.2 that an origin can apply: Last-Modified is at least one
//    second before `now` (the Date of the response being generated), i.e. last_modified < now.
//    A date within the current second is weak: the file could change again within that second.
//  - anything else: false.
bool if_range_matches(std::string_view if_range, const Validators& v, int64_t now);

enum class RangeKind : uint8_t {
  Ignore,         // no usable Range: send the whole representation (200)
  Satisfiable,    // 206 with [offset, offset + length)
  Unsatisfiable,  // 416 with "Content-Range: bytes */<representation length>"
};

struct ByteRange {
  RangeKind kind = RangeKind::Ignore;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const ByteRange&) const = default;
};

// Longest Range value looked at; a longer one is ignored.
inline constexpr size_t kMaxRangeHeader = 1024;

// RFC 9110 14.1.1/14.1.2, bytes only. `value` is a Range field value; `size` the selected
// representation's length. Grammar: "bytes" (case-insensitive) "=" range-set, where a range is
// first "-" [last] or "-" suffix; numbers 1*DIGIT up to 2^63 - 1 (leading zeros allowed).
//  - Ignore: longer than kMaxRangeHeader, another unit, a syntax error, last < first, a number
//    above 2^63 - 1, more than one range (edge.md: several ranges → the whole file), or a
//    zero-length representation (no byte range can describe it; the empty body is sent, 200).
//  - Unsatisfiable: first >= size, or a suffix of length 0.
//  - Satisfiable: last clamped to size - 1; a suffix longer than the representation is all of it.
// Empty list elements ("bytes=0-1,") are skipped as 5.6.1 asks of recipients.
ByteRange parse_range(std::string_view value, uint64_t size);

// Steps 5 of 13.2.2 and 14.2 together, after evaluate_preconditions gave Proceed: Range applies
// to GET only (ignored for HEAD and others), If-Range is ignored without Range, and a false
// If-Range means the whole representation.
ByteRange evaluate_range(const ConditionalHeaders& h, const Validators& v, Method method,
                         uint64_t size, int64_t now);

// Appends a Content-Range value (14.4): "bytes <first>-<last>/<size>" for a satisfiable range
// (length > 0), and "bytes */<size>" for a 416.
void format_content_range(uint64_t offset, uint64_t length, uint64_t size, std::string& out);
void format_unsatisfied_range(uint64_t size, std::string& out);

}  // namespace weir::http
