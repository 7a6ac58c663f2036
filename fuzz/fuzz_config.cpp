// The config loader must turn any bytes into either a valid Config or diagnostics, never a
// crash or an escaped exception; a loaded Config must be internally consistent.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/loader.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto res = weir::config::load_config_string(text, "fuzz.yaml");
  if (!res.ok()) {
    bool has_error = false;
    for (const auto& d : res.diagnostics)
      has_error |= !d.warning;
    FUZZ_CHECK(has_error);
    return 0;
  }
  const auto& c = *res.config;
  FUZZ_CHECK(!c.listeners.empty());
  for (const auto& l : c.listeners) {
    FUZZ_CHECK(!l.listen.empty());
    FUZZ_CHECK(!l.routes.empty());
    for (const auto& r : l.routes)
      FUZZ_CHECK(r.backend_index < c.backends.size());
  }
  for (const auto& b : c.backends) {
    FUZZ_CHECK(!b.servers.empty());
    for (const auto& s : b.servers)
      FUZZ_CHECK(s.port != 0);
  }
  return 0;
}
