#pragma once
// The decisions of a shared HTTP cache (RFC 9111, RFC 5861, RFC 9213) as pure functions over
// small structs of facts: may a response be stored, how long is it fresh, how old is it, may a
// stored response answer this request now, which URIs an unsafe request invalidates, and which
// stored fields a 304 replaces. No I/O, no clock (every time is a parameter, unix seconds), no
// allocation except where a function fills a caller's vector or string.
//
// Directives in effect (RFC 9213 2.2): when the response has a valid, non-empty
// CDN-Cache-Control, its directives are used and Cache-Control *and Expires* are ignored for
// weir's decisions; otherwise Cache-Control and Expires. (Removing CDN-Cache-Control before the
// response goes to a client is the wiring's job; it is stored, so a 304 can update it.)
//
// Times are whole seconds. Every duration is clamped to [0, 2^31] so no sum overflows and the
// Age a client sees is at most 2147483648 (RFC 9111 1.2.2, 5.1).
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cache_control.hpp"
#include "http/parser.hpp"

namespace weir::cache {

using Field = http::Header;

// The heuristic freshness (RFC 9111 4.2.2): this share of (Date - Last-Modified) ...
inline constexpr int64_t kHeuristicPercent = 10;
// ... and at most this long, unless the caller passes another cap.
inline constexpr int64_t kDefaultHeuristicCap = 24 * 3600;
// Cache-Control / CDN-Cache-Control field lines looked at per message; more → `truncated`.
inline constexpr size_t kMaxDirectiveLines = 16;

// RFC 9110 15.1: 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501.
bool heuristically_cacheable(uint16_t status);
// A status code RFC 9110 defines (for must-understand, RFC 9111 5.2.2.3).
bool status_understood(uint16_t status);

// What the cache knows of a response (stored or just received).
struct ResponseFacts {
  uint16_t status = 0;
  ResponseDirectives cc;           // the directives in effect (see above)
  bool targeted = false;           // cc came from CDN-Cache-Control; Expires is then ignored
  std::optional<int64_t> date;     // Date; nullopt if absent or invalid
  bool has_expires = false;        // an Expires field is in effect (valid or not)
  std::optional<int64_t> expires;  // nullopt: absent or invalid; invalid means "already
                                   // expired" (RFC 9111 5.3)
  std::optional<int64_t> last_modified;
  uint32_t age = 0;            // Age (5.1): the first field, delta-seconds; 0 if absent/invalid
  bool has_validator = false;  // ETag or Last-Modified: a stale copy can be revalidated
  int64_t request_time = 0;    // when the request that got it was sent (4.2.3)
  int64_t response_time = 0;   // when it was received (4.2.3)
};

// Reads Cache-Control, CDN-Cache-Control, Date, Expires, Last-Modified, Age and ETag from the
// response's fields (names case-insensitive, values OWS-trimmed as the parser gives them).
// Dates of any HTTP-date form (http/date.hpp); a field given twice is invalid unless it is a
// list (Cache-Control) or Age (the first counts).
ResponseFacts response_facts(uint16_t status, std::span<const Field> fields, int64_t request_time,
                             int64_t response_time);

// What the cache knows of a request.
struct RequestFacts {
  http::Method method = http::Method::Get;
  RequestDirectives cc;
  bool authorization = false;  // an Authorization field (3.5)
};
RequestFacts request_facts(http::Method method, std::span<const Field> fields);

enum class Storable : uint8_t {
  Yes,
  NotGet,             // only GET responses are stored (HEAD is answered from a stored GET)
  Status,             // 1xx, 206 (partial content is not stored here), 304, or an unknown status
                      // with must-understand (3, 5.2.2.3)
  NoStore,            // response no-store (5.2.2.5) without must-understand of a known status,
                      // or request no-store (5.2.1.5)
  Private,            // private, either form (5.2.2.7; the qualified form is read as unqualified)
  Authorization,      // the request had Authorization and the response lacks public,
                      // must-revalidate and s-maxage (3.5)
  NotCacheable,       // none of public, s-maxage, max-age, Expires, or a heuristically cacheable
                      // status (3)
  TooManyDirectives,  // more directives than the parser looks at: something may be missed
};
// RFC 9111 3 for a shared cache. A response with no-cache is storable (and is then revalidated
// on every use). Vary is checked where the variant is keyed (vary.hpp: "*" and too many names
// are not stored). Whether the body arrived complete is the caller's to check.
Storable storable(const RequestFacts& req, const ResponseFacts& res);
std::string_view to_string(Storable s);

// Whether a storable response can ever be reused: it has some freshness, a validator, or a
// stale-while-revalidate / stale-if-error window. A storable response failing this would only
// take memory; the wiring may skip storing it.
bool worth_storing(const ResponseFacts& res, int64_t heuristic_cap = kDefaultHeuristicCap);

struct Lifetime {
  int64_t seconds = 0;
  bool heuristic = false;  // from 4.2.2, no explicit freshness
};
// RFC 9111 4.2.1 for a shared cache: s-maxage, else max-age, else Expires - Date (Date absent:
// the response time, RFC 9110 6.6.1), else the heuristic: 10 % of (Date - Last-Modified), at most
// `heuristic_cap`, for heuristically cacheable statuses or public responses (5.2.2.9), 0 without
// Last-Modified. An invalid s-maxage / max-age / Expires gives 0 (stale); the first present one
// in that order decides, a later valid one does not rescue it.
Lifetime freshness_lifetime(const ResponseFacts& res, int64_t heuristic_cap = kDefaultHeuristicCap);

// RFC 9111 4.2.3, exactly:
//   apparent_age = max(0, response_time - date_value)
//   corrected_age_value = age_value + (response_time - request_time)
//   corrected_initial_age = max(apparent_age, corrected_age_value)
//   current_age = corrected_initial_age + (now - response_time)
// with date_value = response_time when there is no valid Date; each term clamped to [0, 2^31].
int64_t current_age(const ResponseFacts& res, int64_t now);

enum class Serve : uint8_t {
  Fresh,                 // answer from the store
  Stale,                 // answer stale: the request's max-stale allows it (4.2.4, 5.2.1.2)
  StaleWhileRevalidate,  // answer stale now, revalidate in the background (RFC 5861 3)
  Revalidate,            // ask the origin first (conditional request, 4.3.1)
  GatewayTimeout,        // only-if-cached and the stored response is not usable: 504 (5.2.1.7)
};
std::string_view to_string(Serve s);

struct ServeDecision {
  Serve serve = Serve::Revalidate;
  int64_t age = 0;        // current_age, for the Age field of the answer
  int64_t lifetime = 0;   // freshness_lifetime
  int64_t staleness = 0;  // age - lifetime when positive, else 0
  // If revalidating fails (is_stale_if_error_status, or the server cannot be reached), the
  // stored response may be answered instead (RFC 5861 4): its stale-if-error or the request's
  // covers `staleness`, and nothing forbids serving stale.
  bool stale_if_error = false;
};

// May the stored response `res` answer a request with directives `req` at `now`?
//  - Response no-cache (either form, 5.2.2.4), request no-cache (5.2.1.4) → Revalidate.
//  - Fresh: age < lifetime, age + min-fresh < lifetime (5.2.1.3), age ≤ request max-age
//    (5.2.1.1; an Invalid one counts as 0). A response that is fresh but fails min-fresh or
//    max-age → Revalidate.
//  - Stale (age ≥ lifetime): must-revalidate, proxy-revalidate or s-maxage (4.2.4, 5.2.2.2,
//    5.2.2.8, 5.2.2.10) forbid any stale answer, max-stale and stale-* included → Revalidate.
//    Otherwise, when the request's max-age allows the age: max-stale without a value, or with a
//    value ≥ staleness → Stale; else stale-while-revalidate ≥ staleness (and no request
//    min-fresh / no-cache) → StaleWhileRevalidate; else Revalidate.
//  - only-if-cached (5.2.1.7): Revalidate becomes GatewayTimeout.
// immutable (RFC 8246) changes nothing here: it lets clients skip reloads, and a reload's
// no-cache / max-age=0 reaching the cache is still honoured.
ServeDecision decide(const RequestDirectives& req, const ResponseFacts& res, int64_t now,
                     int64_t heuristic_cap = kDefaultHeuristicCap);

// RFC 5861 4: the answers that let stale-if-error serve the stored response (500, 502, 503,
// 504). A connection error or timeout counts too; the wiring passes those as it likes.
bool is_stale_if_error_status(uint16_t status);

// RFC 9111 4.4: an unsafe method (anything but GET, HEAD, OPTIONS, TRACE, unknown ones
// included) answered with a non-error status (2xx, 3xx) invalidates stored responses.
bool invalidates(http::Method method, uint16_t status);

// The primary keys to invalidate after such an answer: the request's own URI, and the
// Location and Content-Location URIs when they have the same origin (4.4: a cache MUST NOT
// invalidate other origins' URIs, it could be used for denial of service).
//   origin: "scheme://authority" exactly as the wiring writes its keys (lower-case).
//   target: the request's path and query ("/a/b?q"), as in the key.
//   location / content_location: the field values, absolute or relative references (RFC 3986
//   5.2: resolved against origin + target, dot segments removed, fragment dropped); empty =
//   absent. Origins compare scheme and host case-insensitively, a default port (80 for http,
//   443 for https) equal to no port. A reference that is not a URI, or another origin, is left
//   out. Keys returned are origin + the resolved path and query, so they match the wiring's.
struct InvalidationTargets {
  std::array<std::string, 3> uris;
  uint8_t count = 0;
};
InvalidationTargets invalidation_targets(std::string_view origin, std::string_view target,
                                         std::string_view location,
                                         std::string_view content_location);

// RFC 9111 3.1: whether a received field is kept when storing: not hop-by-hop (Connection,
// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, the names Connection
// lists) and not proxy-specific (Proxy-Authenticate, Proxy-Authentication-Info,
// Proxy-Authorization). `hop` is built over the same message's fields.
bool keep_when_storing(std::string_view name, const http::HopByHop& hop);
// The fields to store from a response, in order (views into `fields`).
void fields_to_store(std::span<const Field> fields, std::vector<Field>& out);

// RFC 9111 3.2: whether a field of a 304 (or a HEAD response, 4.3.5) replaces the stored ones
// of that name. Not replaced: what 3.1 does not store (above); Content-Length (3.2); the fields
// the stored body depends on (3.2): Content-Encoding (the stored bytes are in the old coding),
// Content-Range (processed with the body), Vary (the variant's key was computed with it).
bool updated_by_304(std::string_view name, const http::HopByHop& update_hop);
// The stored fields after a 304 (4.3.4): every field of `stored` whose name the 304 does not
// update (by the rule above) or does not carry, in order, then every updating field of the 304
// in its order; so each name the 304 carries replaces all stored lines of that name. Views into
// `stored` and `update`.
void merge_304_fields(std::span<const Field> stored, std::span<const Field> update,
                      std::vector<Field>& out);

}  // namespace weir::cache
