#include "http/date.hpp"

#include <array>
#include <ctime>

namespace weir::http {
namespace {

constexpr std::array<std::string_view, 7> kDayShort = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kDayLong = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                      "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> kMonth = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
constexpr int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t y;
  unsigned m, d;
};

constexpr Civil civil_from_days(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0), m, d};
}

constexpr bool is_leap(int64_t y) {
  return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

constexpr unsigned days_in_month(int64_t y, unsigned m) {
  constexpr std::array<unsigned, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

// A cursor over the input; every reader fails (returns false) without consuming on mismatch.
struct Cursor {
  std::string_view s;
  size_t i = 0;

  bool lit(std::string_view t) {
    if (s.substr(i, t.size()) != t) return false;
    i += t.size();
    return true;
  }
  bool digits(size_t n, int& out) {
    if (s.size() - i < n) return false;
    int v = 0;
    for (size_t k = 0; k < n; ++k) {
      const char c = s[i + k];
      if (c < '0' || c > '9') return false;
      v = v * 10 + (c - '0');
    }
    i += n;
    out = v;
    return true;
  }
  template <size_t N>
  bool name(const std::array<std::string_view, N>& names, int& out) {
    for (size_t k = 0; k < N; ++k) {
      if (lit(names[k])) {
        out = static_cast<int>(k);
        return true;
      }
    }
    return false;
  }
  bool done() const { return i == s.size(); }
};

// time-of-day = hour ":" minute ":" second
bool time_of_day(Cursor& c, int& h, int& mi, int& sec) {
  return c.digits(2, h) && c.lit(":") && c.digits(2, mi) && c.lit(":") && c.digits(2, sec) &&
         h <= 23 && mi <= 59 && sec <= 60;
}

std::optional<int64_t> assemble(int64_t y, int mon0, int d, int h, int mi, int sec) {
  const auto m = static_cast<unsigned>(mon0 + 1);
  if (d < 1 || static_cast<unsigned>(d) > days_in_month(y, m)) return std::nullopt;
  return days_from_civil(y, m, static_cast<unsigned>(d)) * 86400 + h * 3600 + mi * 60 + sec;
}

std::optional<int64_t> parse_imf(std::string_view s) {
  // "Sun, 06 Nov 1994 08:49:37 GMT"
  Cursor c{s};
  int wd, d, mon, y, h, mi, sec;
  if (!(c.name(kDayShort, wd) && c.lit(", ") && c.digits(2, d) && c.lit(" ") &&
        c.name(kMonth, mon) && c.lit(" ") && c.digits(4, y) && c.lit(" ") &&
        time_of_day(c, h, mi, sec) && c.lit(" GMT") && c.done())) {
    return std::nullopt;
  }
  return assemble(y, mon, d, h, mi, sec);
}

std::optional<int64_t> parse_rfc850(std::string_view s, int64_t now) {
  // "Sunday, 06-Nov-94 08:49:37 GMT"
  Cursor c{s};
  int wd, d, mon, yy, h, mi, sec;
  if (!(c.name(kDayLong, wd) && c.lit(", ") && c.digits(2, d) && c.lit("-") &&
        c.name(kMonth, mon) && c.lit("-") && c.digits(2, yy) && c.lit(" ") &&
        time_of_day(c, h, mi, sec) && c.lit(" GMT") && c.done())) {
    return std::nullopt;
  }
  const int64_t now_year = civil_from_days(now >= 0 ? now / 86400 : (now - 86399) / 86400).y;
  const int64_t century = now_year >= 0 ? now_year / 100 * 100 : (now_year - 99) / 100 * 100;
  int64_t y = century + yy;
  if (y > now_year + 50) y -= 100;
  if (y <= now_year - 50) y += 100;
  return assemble(y, mon, d, h, mi, sec);
}

std::optional<int64_t> parse_asctime(std::string_view s) {
  // "Sun Nov  6 08:49:37 1994" (day as SP DIGIT or 2DIGIT)
  Cursor c{s};
  int wd, d, mon, y, h, mi, sec;
  if (!(c.name(kDayShort, wd) && c.lit(" ") && c.name(kMonth, mon) && c.lit(" "))) {
    return std::nullopt;
  }
  if (!(c.lit(" ") ? c.digits(1, d) : c.digits(2, d))) return std::nullopt;
  if (!(c.lit(" ") && time_of_day(c, h, mi, sec) && c.lit(" ") && c.digits(4, y) && c.done())) {
    return std::nullopt;
  }
  return assemble(y, mon, d, h, mi, sec);
}

void put2(std::string& out, unsigned v) {
  out.push_back(static_cast<char>('0' + v / 10));
  out.push_back(static_cast<char>('0' + v % 10));
}

}  // namespace

std::optional<int64_t> parse_http_date(std::string_view s, int64_t now_unix_seconds) {
  // The formats differ by the 4th character: ',' IMF-fixdate, ' ' asctime, a letter rfc850.
  if (s.size() < 4) return std::nullopt;
  if (s[3] == ',') return parse_imf(s);
  if (s[3] == ' ') return parse_asctime(s);
  return parse_rfc850(s, now_unix_seconds);
}

std::optional<int64_t> parse_http_date(std::string_view s) {
  return parse_http_date(s, static_cast<int64_t>(std::time(nullptr)));
}

void format_http_date(int64_t unix_seconds, std::string& out) {
  constexpr int64_t kMin = days_from_civil(0, 1, 1) * 86400;
  constexpr int64_t kMax = days_from_civil(9999, 12, 31) * 86400 + 86399;
  if (unix_seconds < kMin) unix_seconds = kMin;
  if (unix_seconds > kMax) unix_seconds = kMax;
  int64_t days = unix_seconds / 86400;
  int64_t secs = unix_seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    days -= 1;
  }
  const Civil c = civil_from_days(days);
  // 1970-01-01 was a Thursday (index 4).
  const int64_t wd = ((days % 7) + 7 + 4) % 7;
  out.append(kDayShort[static_cast<size_t>(wd)]);
  out.append(", ");
  put2(out, c.d);
  out.push_back(' ');
  out.append(kMonth[c.m - 1]);
  out.push_back(' ');
  const auto y = static_cast<unsigned>(c.y);
  put2(out, y / 100);
  put2(out, y % 100);
  out.push_back(' ');
  put2(out, static_cast<unsigned>(secs / 3600));
  out.push_back(':');
  put2(out, static_cast<unsigned>(secs / 60 % 60));
  out.push_back(':');
  put2(out, static_cast<unsigned>(secs % 60));
  out.append(" GMT");
}

}  // namespace weir::http
