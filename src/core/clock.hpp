#pragma once
#include <chrono>
#include <cstdint>

namespace weir {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Millis = std::chrono::milliseconds;

}  // namespace weir
