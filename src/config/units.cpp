#include "config/units.hpp"

#include <algorithm>
#include <array>

namespace weir::config {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

struct Unit {
  std::string_view name;
  uint64_t factor;
};

// Longest names first so that "ms" is not read as "m".
constexpr std::array kDurationUnits{
    Unit{"ms", 1},
    Unit{"s", 1000},
    Unit{"m", 60 * 1000},
    Unit{"h", 60 * 60 * 1000},
    Unit{"d", 24 * 60 * 60 * 1000},
};

constexpr uint64_t kKi = 1024;
constexpr std::array kSizeUnits{
    Unit{"", 1},
    Unit{"B", 1},
    Unit{"KB", 1000},
    Unit{"MB", 1000 * 1000},
    Unit{"GB", 1000 * 1000 * 1000},
    Unit{"KiB", kKi},
    Unit{"MiB", kKi* kKi},
    Unit{"GiB", kKi* kKi* kKi},
    // Single letters mean binary multiples, as in NGINX and HAProxy.
    Unit{"K", kKi},
    Unit{"M", kKi* kKi},
    Unit{"G", kKi* kKi* kKi},
};

struct DurationResult {
  Duration value{0};
  std::string error;
};

// "<digits>[.<digits>]<unit>" repeated, units in decreasing order ("1h30m", "1.5s").
DurationResult parse_duration_impl(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  if (text.empty()) return {Duration{0}, "empty duration (expected e.g. 250ms, 2s, 1m, 1h, 1d)"};
  if (text.front() == '-') return {Duration{0}, "duration " + quoted + " must not be negative"};
  using u128 = unsigned __int128;
  const u128 max = static_cast<u128>(kMaxDuration.count());
  u128 total = 0;
  uint64_t last_factor = UINT64_MAX;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    u128 whole = 0;  // clamped to max + 1 so that any number of digits fits
    while (i < text.size() && is_digit(text[i])) {
      whole = std::min(whole * 10 + static_cast<unsigned>(text[i] - '0'), max + 1);
      ++i;
    }
    if (i == start) {
      return {Duration{0}, "invalid duration " + quoted + " (expected e.g. 250ms, 2s, 1m, 1h, 1d)"};
    }
    std::string_view frac;
    if (i < text.size() && text[i] == '.') {
      size_t fstart = ++i;
      while (i < text.size() && is_digit(text[i]))
        ++i;
      frac = text.substr(fstart, i - fstart);
      if (frac.empty()) {
        return {Duration{0}, "invalid duration " + quoted + " (expected e.g. 250ms, 1.5s, 2s)"};
      }
    }
    size_t ustart = i;
    while (i < text.size() && !is_digit(text[i]) && text[i] != '.')
      ++i;
    std::string_view unit = text.substr(ustart, i - ustart);
    if (unit.empty()) {
      if (i == text.size() && start == 0) {
        return {Duration{0}, "duration needs a unit, e.g. 2s"};
      }
      return {Duration{0}, "invalid duration " + quoted + " (expected e.g. 250ms, 2s, 1m, 1h, 1d)"};
    }
    const Unit* found = nullptr;
    for (const Unit& u : kDurationUnits) {
      if (u.name == unit) found = &u;
    }
    if (found == nullptr) {
      return {Duration{0}, "unknown duration unit \"" + std::string(unit) + "\" in " + quoted +
                               " (use ms, s, m, h or d)"};
    }
    if (found->factor >= last_factor) {
      return {Duration{0},
              "invalid duration " + quoted + " (write units largest first, e.g. 1m30s)"};
    }
    last_factor = found->factor;
    if (whole > max) return {Duration{0}, "duration " + quoted + " is too large (at most 3650d)"};
    u128 ms = whole * found->factor;
    // The fraction must come out as a whole number of milliseconds.
    while (!frac.empty() && frac.back() == '0')
      frac.remove_suffix(1);
    if (!frac.empty()) {
      if (frac.size() > 18) {
        return {Duration{0}, "duration " + quoted + " is not a whole number of milliseconds"};
      }
      u128 num = 0;
      u128 den = 1;
      for (char c : frac) {
        num = num * 10 + static_cast<unsigned>(c - '0');
        den *= 10;
      }
      u128 scaled = num * found->factor;
      if (scaled % den != 0) {
        return {Duration{0}, "duration " + quoted + " is not a whole number of milliseconds"};
      }
      ms += scaled / den;
    }
    total += ms;
    if (total > max) return {Duration{0}, "duration " + quoted + " is too large (at most 3650d)"};
  }
  return {Duration{static_cast<int64_t>(total)}, ""};
}

struct SizeResult {
  uint64_t value = 0;
  std::string error;
};

SizeResult parse_size_impl(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  const std::string expected = " (expected e.g. 512, 16KiB, 1MiB)";
  if (text.empty()) return {0, "empty size" + expected};
  if (text.front() == '-') return {0, "size " + quoted + " must not be negative"};
  size_t i = 0;
  while (i < text.size() && is_digit(text[i]))
    ++i;
  if (i == 0) return {0, "invalid size " + quoted + expected};
  std::string_view digits = text.substr(0, i);
  if (i < text.size() && text[i] == '.') {
    return {0, "size " + quoted + " must be a whole number (e.g. 1536 rather than 1.5KiB)"};
  }
  std::string_view unit = text.substr(i);
  const Unit* found = nullptr;
  for (const Unit& u : kSizeUnits) {
    if (u.name == unit) found = &u;
  }
  if (found == nullptr) {
    return {0, "unknown size unit \"" + std::string(unit) + "\" in " + quoted +
                   " (use B, KB, MB, GB, KiB, MiB or GiB)"};
  }
  uint64_t value = 0;
  for (char c : digits) {
    const auto d = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - d) / 10) return {0, "size " + quoted + " is too large"};
    value = value * 10 + d;
  }
  if (value != 0 && found->factor > UINT64_MAX / value) {
    return {0, "size " + quoted + " is too large"};
  }
  return {value * found->factor, ""};
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  DurationResult r = parse_duration_impl(text);
  if (!r.error.empty()) return std::nullopt;
  return r.value;
}

std::optional<uint64_t> parse_size(std::string_view text) {
  SizeResult r = parse_size_impl(text);
  if (!r.error.empty()) return std::nullopt;
  return r.value;
}

std::string duration_error(std::string_view text) {
  return parse_duration_impl(text).error;
}

std::string size_error(std::string_view text) {
  return parse_size_impl(text).error;
}

}  // namespace weir::config
