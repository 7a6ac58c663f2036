#pragma once
// The secondary cache key (RFC 9111 4.1): a stored response with Vary may answer only requests
// whose fields named by Vary match those of the request it was stored for.
//
// Two steps: parse_vary() turns the response's Vary fields into a normalized name list (lower-
// case, sorted, without duplicates, joined with ","), kept by the store per URI; secondary_key()
// turns that list and a request's fields into the key its variant is filed under. Sorting makes
// "Vary: a, b" and "Vary: B, a" one spec, so their keys agree.
//
// Key format, per name of the list in order: `name ":" ("=" value / "!") "\n"`; "!" when the
// request has no such field, else the values of all its lines joined with ", ", each comma-
// separated element trimmed of OWS (RFC 9111 4.1 allows normalizing whitespace and combining
// lines). Nothing else is normalized (no case folding of values, empty elements kept): two
// requests that differ otherwise are different variants, which costs a miss, never a wrong hit.
// No Vary: the key is "".
//
// Bounds: at most kMaxVaryNames distinct names (more → TooMany, not stored); a key longer than
// kMaxSecondaryKey bytes → secondary_key() returns false (the request bypasses the cache).
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "http/parser.hpp"

namespace weir::cache {

inline constexpr size_t kMaxVaryNames = 16;
inline constexpr size_t kMaxSecondaryKey = 8 * 1024;

enum class VaryKind : uint8_t {
  None,     // no Vary, or only empty elements: key ""
  Names,    // a list of field names
  Star,     // "*" among the elements: matches no request (4.1), not stored
  TooMany,  // more than kMaxVaryNames distinct names: not stored
  Invalid,  // an element that is not a token: not stored
};

// Reads every Vary field of `response_fields`; `names` gets the normalized list (cleared first;
// empty unless Names).
VaryKind parse_vary(std::span<const http::Header> response_fields, std::string& names);

// True for the kinds the store keeps (None, Names).
inline bool vary_storable(VaryKind k) {
  return k == VaryKind::None || k == VaryKind::Names;
}

// The request's secondary key under the list `names` (from parse_vary), into `out` (cleared
// first). False when it would exceed kMaxSecondaryKey.
bool secondary_key(std::string_view names, std::span<const http::Header> request_fields,
                   std::string& out);

}  // namespace weir::cache
