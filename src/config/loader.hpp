#pragma once
// YAML → validated Config. Strict: unknown keys, wrong types, duplicate names, dangling backend
// references, bad durations/sizes/addresses are all errors, all reported, each with its position.
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace weir::config {

struct Diagnostic {
  SourcePos pos;
  std::string message;
  bool warning = false;
  std::string format()
      const;  // "FILE:LINE:COL: message" (warnings: "FILE:LINE:COL: warning: message")
};

struct LoadResult {
  ConfigPtr config;                     // null when there are errors
  std::vector<Diagnostic> diagnostics;  // errors (and warnings), in file order
  bool ok() const { return config != nullptr; }
};

LoadResult load_config_file(const std::string& path);
// `name` is used as FILE in diagnostics.
LoadResult load_config_string(std::string_view yaml, const std::string& name);

}  // namespace weir::config
