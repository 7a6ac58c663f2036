#pragma once
// HTTP-date (RFC 9110 5.6.7): parse the three formats a recipient must accept, format the one a
// sender must generate. No locale, no strptime, no allocation when parsing.
//
// parse_http_date accepts exactly (no surrounding whitespace; the caller trims the field's OWS):
//   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
//   rfc850-date  "Sunday, 06-Nov-94 08:49:37 GMT"
//   asctime-date "Sun Nov  6 08:49:37 1994"        (the day as "SP DIGIT" or "2DIGIT")
// Names are case-sensitive, as the grammar says (%s"Nov", %s"GMT"). The day name must be one of
// the seven but is not checked against the date (as most recipients do). Fields are range-
// checked: day 1..days-in-month (leap years honoured), hour 0..23, minute 0..59, second 0..60
// (a leap second counts as the next minute's 00). Any other byte, a missing or extra character,
// or an impossible date → nullopt.
// Two-digit years (rfc850-date): the year whose last two digits match that lies in
// (now - 50 years, now + 50 years], i.e. a date that would be more than 50 years in the future
// is the most recent such year in the past (RFC 9110 5.6.7). `now` is the clock by default.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weir::http {

// Unix seconds (may be negative before 1970), or nullopt if `s` is not an HTTP-date.
std::optional<int64_t> parse_http_date(std::string_view s);
// The same with the current time given (unix seconds), for the two-digit year rule.
std::optional<int64_t> parse_http_date(std::string_view s, int64_t now_unix_seconds);

// Appends the 29-character IMF-fixdate for `unix_seconds` ("Sun, 06 Nov 1994 08:49:37 GMT").
// Values before year 0000 or after 9999 are clamped to 0000-01-01T00:00:00 / 9999-12-31T23:59:59
// so the output always has a 4-digit year and exactly 29 characters.
void format_http_date(int64_t unix_seconds, std::string& out);

}  // namespace weir::http
