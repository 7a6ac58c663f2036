#pragma once
// Durations ("250ms", "2s", "1m", "1h", "1d"; a bare integer is rejected) and sizes
// ("512", "16KiB", "1MiB", "1GiB", "16KB" = 16000) as written in the config file.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace weir::config {

std::optional<Duration> parse_duration(std::string_view text);
std::optional<uint64_t> parse_size(std::string_view text);

// Why `text` is not a valid duration / size, as a message for the user ("" when it is valid).
// Also meant for command-line flags such as `whoami --delay`.
std::string duration_error(std::string_view text);
std::string size_error(std::string_view text);

// The longest duration accepted (3650d): far below anything that could overflow a clock.
inline constexpr Duration kMaxDuration{3650LL * 24 * 60 * 60 * 1000};

}  // namespace weir::config
