#pragma once
// Standard reason phrases (IANA HTTP Status Code Registry), for the responses weir writes itself.
#include <cstdint>
#include <string_view>

namespace weir::http {

// The registered reason phrase of `status`, or "Unknown".
std::string_view reason_phrase(uint16_t status);

}  // namespace weir::http
